"""Prefect's temporary local API, started early so that it boots while the run imports.

With no Prefect server configured (no PREFECT_API_URL), a flow run starts a temporary API itself,
and waits for it: on this machine about 8 s of booting after 4 s of importing its server module,
before the first task runs (benchmarks/startup.py). `hypomag run` instead launches the same server
(Prefect's own app, `prefect.server.api.server:create_app`, the way Prefect launches it) as the
very first thing, without importing Prefect, so it boots on the other core while the pipeline
imports Prefect, Great Expectations and DuckDB; the flow then runs against it. One server per
process, stopped at exit, and killed by the kernel when its parent dies, even by SIGKILL
(Linux: PR_SET_PDEATHSIG), so no orphaned server outlives a killed run. It starts nothing the run
does not use: no UI, no telemetry, no automations, and its flow runs send no heartbeats. With
PREFECT_API_URL set (a real server, `hypomag serve`) nothing is started.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterator, Optional

from pipelines.errors import EnvironmentFailure

STARTUP_TIMEOUT_SECONDS = 120  # a fresh machine's first start migrates Prefect's database
# Prefect's own settings for its temporary API (those SubprocessASGIServer sets), plus: no telemetry,
# and no automations (the triggers and actions services): the API lives for one run, which uses
# flow and task runs, logs, artifacts and events, never an automation.
TEMPORARY_API_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent_pid: int):
    """A preexec_fn: the child gets SIGTERM when the parent dies (or exits now if it already has)."""
    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)
    return arm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryApi:
    """One Prefect API server process on a free local port."""

    _current: Optional["TemporaryApi"] = None

    def __init__(self) -> None:
        self.port = _free_port()
        self.process = self._launch()
        self.ready = False
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _launch(self) -> subprocess.Popen:
        env = {**os.environ, **TEMPORARY_API_ENV}
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(os.getpid()) if sys.platform.startswith("linux") else None,
        )

    @classmethod
    def launch(cls) -> Optional["TemporaryApi"]:
        """Start (once per process) unless a Prefect API is configured; returns at once."""
        if os.environ.get("PREFECT_API_URL"):
            return None
        if cls._current is None or cls._current.process is None:
            cls._current = cls()
        return cls._current

    def wait(self) -> None:
        """Block until the API answers /health; relaunch on another port if the port was taken."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        launches = 1
        while not self.ready:
            if self.process.poll() is not None:
                if launches == 3:
                    raise EnvironmentFailure(f"Prefect's temporary API exited with code {self.process.returncode} "
                                             "(set PREFECT_API_URL to use a running Prefect server)")
                launches += 1
                self.port = _free_port()
                self.process = self._launch()
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    self.ready = response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not self.ready:
                if time.monotonic() > deadline:
                    raise EnvironmentFailure(f"Prefect's temporary API did not start within {STARTUP_TIMEOUT_SECONDS} s "
                                             "(set PREFECT_API_URL to use a running Prefect server)")
                time.sleep(0.1)

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Flows run in this block talk to this server, without flow-run heartbeats.

        Heartbeats exist for a server's automations to mark runs that stopped reporting as crashed
        (Prefect's "detect zombie flows"); this API lives and dies with the run and runs no
        automations, and the heartbeat thread costs up to a second at the end of every flow run
        (the engine joins it, and it sleeps in 1 s steps). Against a standing server they stay on.
        """
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        self.wait()
        with temporary_settings(updates={PREFECT_API_URL: self.url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        TemporaryApi._current = None


@contextmanager
def prefect_api(api: Optional[TemporaryApi]) -> Iterator[None]:
    """Run flows against `api` (from TemporaryApi.launch()), or the configured server if None."""
    if api is None:
        yield
    else:
        with api.serving():
            yield
