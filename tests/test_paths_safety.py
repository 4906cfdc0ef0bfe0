"""Path safety (issue 15): hypomag writes only into what it created.

Each unsafe case runs the real `hypomag` command and asserts exit 2, one line on stderr naming
the path, and the victim byte-identical afterwards (these fail before Prefect starts, in about a
second each). The slow tests publish real runs: odd characters in the paths, a second run over a
published pair, and the published layout (links through the store's one commit point).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import duckdb
import pytest

from builder import hypomag, lab, write_generic
from pipelines.errors import PathError
from pipelines.paths_guard import check_free_space, check_paths

T = "2024-03-01 08:00"


def tree(path: Path) -> dict[str, str]:
    """Every entry under path (or the file itself) -> its bytes' sha256, its link text, or 'dir'."""
    if path.is_file() and not path.is_symlink():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    found = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(path))
            found[rel] = (f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir()
                          else hashlib.sha256(p.read_bytes()).hexdigest())
    return found


def inputs(folder: Path) -> Path:
    return write_generic(folder, labs=[lab("p1", T, "MG", "1.5", "mg/dL"), lab("p1", T, "K", "3.0", "mmol/L")])


def run_args(inp: Path, out: Path, db: Path, *extra: str) -> list[str]:
    return ["run", "--source", "generic", "--input", str(inp), "--out", str(out), "--db", str(db), *extra]


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr (no Prefect log, no traceback), naming what it must."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hypomag: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_input_as_out_is_refused_and_the_input_is_untouched(tmp_path):
    inp = inputs(tmp_path / "in")
    before = tree(inp)
    proc = hypomag(*run_args(inp, inp, tmp_path / "hm.duckdb"), cwd=tmp_path)
    assert_refused(proc, f"--input {inp} and --out {inp} are the same path")
    assert tree(inp) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no lock, no store, no db


@pytest.mark.parametrize("case", ["db_inside_out", "out_inside_input", "input_inside_out", "db_inside_input"])
@pytest.mark.slow
def test_paths_that_contain_one_another_are_refused(tmp_path, case):
    inp = inputs(tmp_path / "in")
    out, db = tmp_path / "o", tmp_path / "hm.duckdb"
    if case == "db_inside_out":
        db = out / "hm.duckdb"
        expected = f"--db {db} is inside --out {out}"
    elif case == "out_inside_input":
        out = inp / "o"
        expected = f"--out {out} is inside --input {inp}"
    elif case == "input_inside_out":
        out = tmp_path
        expected = f"--input {inp} is inside --out {out}"
    else:
        db = inp / "hm.duckdb"
        expected = f"--db {db} is inside --input {inp}"
    before = tree(tmp_path)
    proc = hypomag(*run_args(inp, out, db), cwd=tmp_path)
    assert_refused(proc, expected)
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_out_holding_unrelated_files_is_refused_and_kept(tmp_path):
    inp = inputs(tmp_path / "in")
    out = tmp_path / "shared"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("the ward's notes\n")
    (out / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = tree(out)
    proc = hypomag(*run_args(inp, out, tmp_path / "hm.duckdb"), cwd=tmp_path)
    assert_refused(proc, f"--out {out}: exists and holds files hypomag did not publish (notes.txt, sub)")
    assert tree(out) == before


@pytest.mark.slow
def test_db_naming_an_existing_csv_is_refused_without_opening_it_for_writing(tmp_path):
    inp = inputs(tmp_path / "in")
    csv = tmp_path / "patients.csv"
    csv.write_text("patient_id,name\n1,someone\n")
    before, mtime_ns = tree(csv), csv.stat().st_mtime_ns
    proc = hypomag(*run_args(inp, tmp_path / "o", csv), cwd=tmp_path)
    assert_refused(proc, f"--db {csv}: exists and is not a DuckDB database")
    assert tree(csv) == before and csv.stat().st_mtime_ns == mtime_ns
    assert not (tmp_path / "o").exists() and not (tmp_path / "patients.csv.hypomag").exists()


@pytest.mark.slow
def test_db_naming_a_duckdb_database_hypomag_did_not_write_is_refused(tmp_path):
    inp = inputs(tmp_path / "in")
    db = tmp_path / "other.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE visits AS SELECT 1 AS id")
    before = tree(db)
    proc = hypomag(*run_args(inp, tmp_path / "o", db), cwd=tmp_path)
    assert_refused(proc, f"--db {db}: exists and is a DuckDB database not written by hypomag")
    assert tree(db) == before


@pytest.mark.slow
def test_out_under_a_file_is_a_path_error(tmp_path):
    inp = inputs(tmp_path / "in")
    (tmp_path / "afile").write_text("x")
    proc = hypomag(*run_args(inp, tmp_path / "afile" / "out", tmp_path / "hm.duckdb"), cwd=tmp_path)
    assert_refused(proc, f"{tmp_path / 'afile'}: is a file, not a folder")


@pytest.mark.slow
def test_dated_root_holding_unrelated_files_is_refused(tmp_path):
    inp = inputs(tmp_path / "in")
    root = tmp_path / "published"
    root.mkdir()
    (root / "index.html").write_text("<p>the hospital's intranet page</p>")
    before = tree(root)
    proc = hypomag(*run_args(inp, root, tmp_path / "hm.duckdb", "--incremental"), cwd=tmp_path)
    assert_refused(proc, f"--out {root}: exists and holds files hypomag did not publish (index.html)")
    assert tree(root) == before


def test_symlinks_hypomag_did_not_make_are_refused(tmp_path):
    inp = inputs(tmp_path / "in")
    (tmp_path / "precious.duckdb").write_bytes(b"not a database")
    (tmp_path / "hm.duckdb").symlink_to("precious.duckdb")
    with pytest.raises(PathError, match="a symlink hypomag did not make"):
        check_paths(inp, tmp_path / "hm.duckdb", tmp_path / "o", False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "o").symlink_to("elsewhere")
    with pytest.raises(PathError, match=r"--out .*/o: a symlink hypomag did not make \(-> elsewhere\)"):
        check_paths(inp, tmp_path / "new.duckdb", tmp_path / "o", False)


def test_a_foreign_store_folder_or_lock_file_is_refused(tmp_path):
    inp = inputs(tmp_path / "in")
    (tmp_path / "hm.duckdb.hypomag").mkdir()
    (tmp_path / "hm.duckdb.hypomag" / "mine.txt").write_text("x")
    with pytest.raises(PathError, match="is not a hypomag store"):
        check_paths(inp, tmp_path / "hm.duckdb", tmp_path / "o", False)
    (tmp_path / "b.duckdb.lock").write_text("a diary, not a pid")
    with pytest.raises(PathError, match="b.duckdb.lock: exists and is not a hypomag lock file"):
        check_paths(inp, tmp_path / "b.duckdb", tmp_path / "o", False)


def test_free_space_needs_twice_the_input_plus_100_mb(tmp_path):
    check_free_space(tmp_path, 0)
    import shutil

    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(PathError) as raised:
        check_free_space(tmp_path, free // 2)  # 2 x (free / 2) + 100 MB > free
    message = str(raised.value)
    assert message.startswith(f"{tmp_path}: {free // 2**20:,} MB free") and "twice the input plus 100 MB" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_a_path_error(tmp_path):
    inp = inputs(tmp_path / "in")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PathError, match="no permission to write in this folder"):
            check_paths(inp, locked / "hm.duckdb", tmp_path / "o", False)
    finally:
        locked.chmod(0o700)


def published_run_id(db: Path, out: Path) -> str:
    """The run id of the published pair, asserting the database and the outputs are one run's."""
    manifest = json.loads((out / "manifest.json").read_text())
    with duckdb.connect(str(db), read_only=True) as con:
        meta = dict(con.execute("SELECT key, value FROM hypomag_meta").fetchall())
    assert meta["created_by"] == "hypomag"
    assert manifest["run_id"] == meta["run_id"]
    return meta["run_id"]


@pytest.mark.slow
def test_odd_characters_publish_and_a_second_run_replaces_the_pair(tmp_path):
    inp = inputs(tmp_path / "in")
    out, db = tmp_path / "it's a \"ward\" run; $x", tmp_path / "o'brien's db.duckdb"
    first = hypomag(*run_args(inp, out, db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Report:  {out / 'report.html'}" in " ".join(first.stdout.split()).replace("Report: ", "Report:  ")
    first_id = published_run_id(db, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(i["table"], i["rows_read"]) for i in manifest["inputs"]] == [("labs", 2), ("medications", 0)]
    with duckdb.connect() as con:  # the restricted Parquet is a real file at the odd path
        assert con.execute("SELECT count(*) FROM read_parquet(?)",
                           [str(out / "restricted" / "flags.parquet")]).fetchone()[0] == 2
    # owner-only: the database (and its folder) and restricted/
    assert stat.S_IMODE(db.resolve().stat().st_mode) == 0o600
    assert stat.S_IMODE(db.resolve().parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "restricted").stat().st_mode) == 0o700
    assert db.is_symlink() and out.is_symlink()  # links into the store, through its one commit point
    store = tmp_path / (db.name + ".hypomag")
    assert os.readlink(store / "current") == f"runs/{first_id}"

    second = hypomag(*run_args(inp, out, db), cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    second_id = published_run_id(db, out)
    assert second_id != first_id
    assert os.readlink(store / "current") == f"runs/{second_id}"
    assert os.readlink(store / "previous") == f"runs/{first_id}"  # kept for readers until the next commit
    assert sorted(p.name for p in (store / "runs").iterdir()) == sorted([first_id, second_id])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["in", out.name, db.name, db.name + ".hypomag", db.name + ".lock"])


def test_databases_of_earlier_hypomag_versions_are_accepted_others_refused(tmp_path):
    inp = inputs(tmp_path / "in")
    legacy = tmp_path / "legacy.duckdb"
    with duckdb.connect(str(legacy)) as con:  # the marker tables every earlier hypomag database has
        con.execute("CREATE TABLE loaded_files (sha256 VARCHAR)")
        con.execute("CREATE TABLE params (x DOUBLE)")
    check_paths(inp, legacy, tmp_path / "o", False)
    impostor = tmp_path / "impostor.duckdb"
    with duckdb.connect(str(impostor)) as con:
        con.execute("CREATE TABLE hypomag_meta (key VARCHAR, value VARCHAR)")
        con.execute("INSERT INTO hypomag_meta VALUES ('created_by', 'someone else')")
    with pytest.raises(PathError, match="its hypomag_meta table does not name hypomag"):
        check_paths(inp, impostor, tmp_path / "o", False)


def test_leftovers_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    from pipelines.publish import remove_leftovers

    db, out = tmp_path / "hm.duckdb", tmp_path / "out"
    leftovers = [tmp_path / ".out.partial-123", tmp_path / ".out.previous-456", tmp_path / "hm.duckdb.building",
                 tmp_path / "hm.duckdb.building.wal", tmp_path / ".hm.duckdb.tmp-77"]
    kept = [tmp_path / ".out.partial-abc", tmp_path / ".other.partial-123", tmp_path / "notes.txt"]
    for path in leftovers[:2]:
        (path / "restricted").mkdir(parents=True)
        (path / "restricted" / "flags.parquet").write_bytes(b"row-level")
    for path in leftovers[2:] + kept:
        path.write_text("x")
    remove_leftovers(db, out, tmp_path / "hm.duckdb.hypomag", incremental=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_every_error_becomes_its_exit_code_and_one_line():
    import errno
    import signal

    from pipelines.errors import InputError, Stopped, ValidationFailed, classify

    def raised_inside(inner: BaseException) -> BaseException:
        """`inner` re-raised wrapped in another exception, as a framework would."""
        try:
            try:
                raise inner
            except BaseException as exc:
                raise RuntimeError("Flow run encountered an exception") from exc
        except RuntimeError as outer:
            return outer

    full = OSError(errno.ENOSPC, "No space left on device", "/data/hm.duckdb.hypomag/runs/x/out/report.html")
    assert classify(raised_inside(full)) == (
        2, "/data/hm.duckdb.hypomag/runs/x/out/report.html: no space left on device "
           "(free some space or choose another --db/--out)")
    assert classify(PermissionError(errno.EACCES, "Permission denied", "/srv/out")) == (2, "/srv/out: Permission denied")
    assert classify(raised_inside(ValidationFailed("blocking"))) == (1, "blocking")
    assert classify(raised_inside(InputError("labs.csv: bad"))) == (2, "labs.csv: bad")
    assert classify(raised_inside(Stopped(signal.SIGTERM)))[0] == 143
    assert classify(KeyboardInterrupt())[0] == 130
    code, line = classify(raised_inside(ZeroDivisionError("division by zero")))
    assert code == 70 and "\n" not in line and "--debug" in line


def test_paths_inside_a_store_are_refused(tmp_path):
    from pipelines.publish import Store

    inp = inputs(tmp_path / "in")
    store = Store(tmp_path / "hm.duckdb.hypomag")
    store.ensure()
    inside = store.runs / "r1" / "db" / "hypomag.duckdb"
    with pytest.raises(PathError, match=rf"--db {inside} is inside hypomag's store {store.root}"):
        check_paths(inp, inside, tmp_path / "o", False)
    with pytest.raises(PathError, match="--out .* is inside hypomag's store"):
        check_paths(inp, tmp_path / "new.duckdb", store.runs / "r1" / "out", False)
