"""A Spark standalone cluster on this machine: one master and one worker, each its own JVM, started from
the pyspark installation's `bin/spark-class` on 127.0.0.1 and stopped by their process ids. For the
parity test (tests/test_spark_parity.py) and the benchmark (benchmarks/spark_engines.py); not used by
a run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


@dataclass
class Cluster:
    """A running master and worker: `master` is the URL to give spark_master."""

    master: str
    ui_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        """The master's JSON status page (workers, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return json.loads(response.read())

    def alive_workers(self) -> int:
        try:
            return sum(1 for w in self.state().get("workers", []) if w.get("state") == "ALIVE")
        except (OSError, ValueError):
            return 0

    def stop(self) -> None:
        """Stop the worker, then the master, each by its process id (SIGTERM, then SIGKILL)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=20)


def start(logs: Path, cores: int = 1, memory: str = "1g", timeout_s: float = 120) -> Cluster:
    """Start a master (port 7077 when free) and one worker with `cores` and `memory`; wait until the
    worker has registered. Logs go to `logs`. On failure both are stopped."""
    import pyspark

    home = Path(pyspark.__file__).parent
    spark_class = home / "bin" / "spark-class"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(logs),
           "SPARK_WORKER_DIR": str(logs / "work")}
    port, ui_port, worker_ui = free_port(7077), free_port(), free_port()
    cluster = Cluster(master=f"spark://127.0.0.1:{port}", ui_port=ui_port)
    commands = {
        "master": [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                   "--port", str(port), "--webui-port", str(ui_port)],
        "worker": [str(spark_class), "org.apache.spark.deploy.worker.Worker", cluster.master, "--host", "127.0.0.1",
                   "--cores", str(cores), "--memory", memory, "--webui-port", str(worker_ui),
                   "--work-dir", str(logs / "work")],
    }
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "w") as log:
                cluster.processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                          stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout_s
        while cluster.alive_workers() < 1:
            dead = [p.args[1] for p in cluster.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the standalone cluster did not start ({', '.join(dead) or 'timeout'}); "
                                   f"see {logs}")
            time.sleep(1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def driver_settings() -> dict[str, str]:
    """Spark settings for a driver on this machine talking to the cluster (one executor, 1 GB)."""
    return {"spark.executor.memory": "1g", "spark.cores.max": "1", "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1"}
