"""The leak scan (issue 15, item 9): identifying text planted in every free-text column never
reaches a shared output.

One generic data set of 40 patients, built by hand: common care units and drugs used by 20
patients each (above `min_cell_size` 11, so that breakdowns are published), and identifiers
planted in every free-text column that can reach an output: care_unit, drug, route, encounter_id,
fluid, specimen_id, result_id and an extra, unmapped column in both files.

1. `hypomag run` on it exits 2 with one line naming the file, column, row and pattern of the first
   planted value, and writes nothing.
2. The same data with every planted column in `[privacy] allow_columns` (a user who wrongly
   vouched for them) runs through, and no shared output (everything in the output folder but
   restricted/; the database lies outside it) holds a planted string, its digits, a patient id or
   an exact collection time of the input.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from builder import LAB_COLUMNS, MED_COLUMNS, lab, med, write_csv
from pipelines.config import Config
from pipelines.db import connect, create_parameter_tables
from pipelines.errors import InputError
from pipelines.ingest import ingest_generic

NOTE = "note"  # an extra column the generic source does not map
PATIENTS = [f"PX{n:04d}Q" for n in range(1, 41)]  # distinctive: a hit is never a coincidence
COMMON_CARE_UNITS = ("MICU", "SICU")
COMMON_DRUGS = ("Furosemide", "Magnesium sulfate")

# column -> planted values; each planted value sits on one row of its own (a rare value, as a
# person's identifier is)
PLANTED_LABS = {
    "care_unit": ("John Smith", "12 Main Street", "ICU 555-123-4567", "SSN 123-45-6789", "123456789"),
    "result_id": ("12 Main Street",),
    "specimen_id": ("SSN 123-45-6789",),
    "encounter_id": ("Jane Roe 555-123-4567",),
    "fluid": ("serum John Smith",),
    NOTE: ("Call Jane Roe at 555-123-4567",),
}
PLANTED_MEDS = {
    "drug": ("Furosemide for Jane Roe 555 123 4567",),
    "route": ("PO per John Smith",),
    "encounter_id": ("Jane Roe 555-123-4567",),
    NOTE: ("Call Jane Roe at 555-123-4567",),
}
PLANTED_COLUMNS = sorted({*PLANTED_LABS, *PLANTED_MEDS})
# some planted rows are also faulty, so that validation.json has examples to show: (column, value)
# -> the fields that make the row fail an expectation (quarantined or a warning)
FAULTY_LABS = {
    ("care_unit", "John Smith"): {"patient_id": ""},  # labs_patient_id_present (quarantined)
    ("care_unit", "ICU 555-123-4567"): {"value": "NaN"},  # non_numeric_value (quarantined)
    ("care_unit", "SSN 123-45-6789"): {"collected_at": "2031-01-02 03:04:05"},  # results_not_in_future
}
# what must never appear in a shared output (case-insensitive): the planted texts, the names and
# the street in them, and every planted number of 9 or more digits, with any separators or none
PLANTED_TEXTS = sorted({v for values in (*PLANTED_LABS.values(), *PLANTED_MEDS.values()) for v in values})
NAME_PARTS = ("John Smith", "Jane Roe", "Smith", "Main Street")
PLANTED_NUMBERS = sorted({m.group() for v in PLANTED_TEXTS for m in re.finditer(r"\d+(?:[ -]\d+)*", v)
                          if len(re.sub(r"\D", "", m.group())) >= 9})
DIGIT_PATTERNS = {number: re.compile(r"(?<!\d)" + r"\D?".join(re.findall(r"\d+", number)) + r"(?!\d)")
                  for number in PLANTED_NUMBERS}


def collected_at(patient: int, draw: int) -> str:
    """A distinct time to the second per draw: two days apart per patient, March to May 2024."""
    at = datetime(2024, 3, 1, 7, 0, 0) + timedelta(days=2 * patient + draw, minutes=7 * patient, seconds=patient + 11)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def panel(n: int, draw: int, care_unit: str, **extra) -> list[dict]:
    """One draw of patient n: magnesium low for even n, potassium low for every third draw."""
    at = collected_at(n, draw)
    mg = "1.4" if n % 2 == 0 else "2.0"
    k = "3.1" if (n + draw) % 3 == 0 else "4.2"
    common = {"care_unit": care_unit, "encounter_id": f"E{n}", **extra}
    return [lab(PATIENTS[n - 1], at, "MG", mg, "mg/dL", **common),
            lab(PATIENTS[n - 1], at, "K", k, "mmol/L", **common),
            lab(PATIENTS[n - 1], at, "NA", "131" if n % 4 == 0 else "140", "mmol/L", **common)]


def planted_labs() -> list[dict]:
    """Three ordinary draws per patient, then one extra magnesium row per planted value."""
    rows = [row for n in range(1, 41) for draw in range(3)
            for row in panel(n, draw, COMMON_CARE_UNITS[n % 2])]
    n = 1
    for column, values in PLANTED_LABS.items():
        for value in values:
            at = collected_at(n, 5)
            fields = {"care_unit": COMMON_CARE_UNITS[n % 2], column: value}
            row = lab(PATIENTS[n - 1], at, "MG", "1.5", "mg/dL", **fields)
            rows.append({**row, **FAULTY_LABS.get((column, value), {})})
            n += 1
    return rows


def planted_meds() -> list[dict]:
    rows = []
    for n in range(1, 41):
        start = collected_at(n, 0)
        rows.append(med(PATIENTS[n - 1], start, COMMON_DRUGS[n % 2], route="IV", encounter_id=f"E{n}"))
    n = 2
    for column, values in PLANTED_MEDS.items():
        for value in values:
            fields = {"drug": COMMON_DRUGS[0], "route": "PO", column: value}
            # the planted drug stops before it starts: a meds_start_before_stop example
            stop = collected_at(n, 0) if column == "drug" else collected_at(n, 2)
            rows.append(med(PATIENTS[n - 1], collected_at(n, 1), stop=stop, **fields))
            n += 1
    return rows


def write_planted(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "labs.csv", (*LAB_COLUMNS, NOTE), planted_labs())
    write_csv(folder / "medications.csv", (*MED_COLUMNS, NOTE), planted_meds())
    return folder


def first_planted_lab() -> tuple[int, str]:
    """(row, column) of the first planted lab value the guard meets: columns in file order."""
    rows = planted_labs()
    for column in (*LAB_COLUMNS, NOTE):
        for position, row in enumerate(rows, start=1):
            if column in PLANTED_LABS and row.get(column) in PLANTED_LABS[column]:
                return position, column
    raise AssertionError("nothing planted")


def hypomag(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def run_args(folder: Path, tmp_path: Path, name: str) -> list[str]:
    return ["run", "--source", "generic", "--input", str(folder), "--db", str(tmp_path / f"{name}.duckdb"),
            "--out", str(tmp_path / name)]


# -- the guard ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_planted_identifiers_stop_the_run_with_one_line_and_nothing_written(tmp_path):
    folder = write_planted(tmp_path / "in")
    proc = hypomag(*run_args(folder, tmp_path, "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hypomag: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    row, column = first_planted_lab()
    assert f"{folder / 'labs.csv'}: row {row}, column {column!r} holds what looks like a street address" \
        in errors[0], errors[0]
    assert not leaks_in(proc.stderr, folder), f"the error or the log quotes the input: {leaks_in(proc.stderr, folder)}"
    # nothing written: no output folder, no database, no run store (a lock file may stay)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "in" and not p.name.endswith(".lock"))
    assert left == [], f"written by a refused run: {left}"


def single_planted(folder: Path, table: str, column: str, value: str) -> tuple[Path, int]:
    """The planted data set's ordinary rows with one planted value; returns the file and its row."""
    folder.mkdir(parents=True, exist_ok=True)
    labs = [row for n in range(1, 41) for draw in range(3) for row in panel(n, draw, COMMON_CARE_UNITS[n % 2])]
    meds = [med(PATIENTS[n - 1], collected_at(n, 0), COMMON_DRUGS[n % 2], route="IV") for n in range(1, 41)]
    rows = labs if table == "labs" else meds
    row = 17
    rows[row - 1] = {**rows[row - 1], column: value}
    write_csv(folder / "labs.csv", (*LAB_COLUMNS, NOTE), labs)
    write_csv(folder / "medications.csv", (*MED_COLUMNS, NOTE), meds)
    return folder / f"{'labs' if table == 'labs' else 'medications'}.csv", row


@pytest.mark.parametrize("table, column, value", [
    *(("labs", c, v) for c, values in PLANTED_LABS.items() for v in values),
    *(("medications", c, v) for c, values in PLANTED_MEDS.items() for v in values),
])
def test_each_planted_value_is_refused_naming_file_column_and_row(tmp_path, table, column, value):
    folder = tmp_path / "in"
    path, row = single_planted(folder, table, column, value)
    config = Config()
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    with pytest.raises(InputError) as refused:
        ingest_generic(con, folder, config.columns, config)
    message = str(refused.value)
    assert message.startswith(f"{path}: row {row}, column {column!r} holds what looks like "), message
    assert "\n" not in message and value.lower() not in message.lower()


# -- the scan ----------------------------------------------------------------------------------

PLOTLY_BUNDLE = re.compile(r"<script[^>]*>(?:(?!</script>).)*?plotly\.js v(?:(?!</script>).)*</script>", re.S)


def shared_files(out: Path) -> list[Path]:
    """Every file of the output folder but the restricted/ folder (and a database, if any)."""
    return sorted(p for p in out.rglob("*") if p.is_file() and "restricted" not in p.relative_to(out).parts
                  and not p.name.endswith((".duckdb", ".duckdb.wal")))


def shared_text(path: Path) -> str:
    """A shared output as text: Parquet and CSV by their values, HTML without the plotly.js bundle
    (its minified code holds digit runs such as 0123456789 of its own), others as UTF-8."""
    if path.suffix == ".parquet":
        import duckdb

        with duckdb.connect() as con:
            return "\n".join(" ".join(map(str, r)) for r in con.execute("SELECT * FROM read_parquet(?)",
                                                                        [str(path)]).fetchall())
    text = path.read_bytes().decode("utf-8", errors="replace")
    return PLOTLY_BUNDLE.sub("<script>[plotly.js]</script>", text) if path.suffix == ".html" else text


def input_timestamps(folder: Path) -> set[str]:
    """Every exact collection/start/stop time of the input (to the second)."""
    text = (folder / "labs.csv").read_text() + (folder / "medications.csv").read_text()
    return set(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text))


def leaks_in(text: str, folder: Path) -> list[str]:
    """What of the input's identifying text `text` holds, each as 'kind: value'."""
    lower = text.lower()
    found = [f"planted text: {t!r}" for t in PLANTED_TEXTS if t.lower() in lower]
    found += [f"name or street: {t!r}" for t in NAME_PARTS if t.lower() in lower]
    found += [f"planted number: {n}" for n, pattern in DIGIT_PATTERNS.items() if pattern.search(text)]
    found += [f"patient id: {p}" for p in PATIENTS if p.lower() in lower]
    for at in sorted(input_timestamps(folder)):
        if at in text or at.replace(" ", "T") in text:
            found.append(f"collection time: {at}")
    return found


def test_the_scan_finds_what_the_input_holds(tmp_path):
    # the scanner itself: on the inputs it finds every planted text, patient id and time
    folder = write_planted(tmp_path / "in")
    found = set(leaks_in((folder / "labs.csv").read_text() + (folder / "medications.csv").read_text(), folder))
    assert {f"planted text: {t!r}" for t in PLANTED_TEXTS} <= found
    assert {f"patient id: {p}" for p in PATIENTS} <= found
    assert PLANTED_NUMBERS == ["123-45-6789", "123456789", "555 123 4567", "555-123-4567"]
    assert {f"planted number: {n}" for n in PLANTED_NUMBERS} <= found
    assert leaks_in("a 5551234567; b 555.123.4567", folder) == ["planted number: 555 123 4567",
                                                                "planted number: 555-123-4567"]
    assert "collection time: 2031-01-02 03:04:05" in found and len(input_timestamps(folder)) > 120
    # and the report's own script is left out only when it is the plotly.js bundle
    page = "<p>x</p><script>/*! plotly.js v3 */ 0123456789</script><script>var a = 'PX0001Q';</script>"
    assert leaks_in(PLOTLY_BUNDLE.sub("", page), folder) == ["patient id: PX0001Q"]


@pytest.fixture(scope="module")
def vouched_run(tmp_path_factory):
    """`hypomag run` with every planted column in [privacy] allow_columns."""
    tmp_path = tmp_path_factory.mktemp("leak")
    folder = write_planted(tmp_path / "in")
    config = tmp_path / "hypomag.toml"
    config.write_text("[privacy]\nallow_columns = [" + ", ".join(f'"{c}"' for c in PLANTED_COLUMNS) + "]\n")
    proc = hypomag(*run_args(folder, tmp_path, "out"), "--config", str(config), cwd=tmp_path)
    return tmp_path, folder, proc


@pytest.mark.slow
def test_vouched_columns_run_through(vouched_run):
    tmp_path, _, proc = vouched_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.relative_to(tmp_path / "out").as_posix() for p in shared_files(tmp_path / "out")}
    assert {"report.html", "results.json", "manifest.json", "validation.json"} <= names, names


@pytest.mark.slow
def test_the_data_set_publishes_breakdowns(vouched_run):
    # the scan means something only if care units and drug classes reach the outputs at all
    tmp_path, _, proc = vouched_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (tmp_path / "out" / "results.json").read_text()
    json.loads(results)
    assert all(unit in results for unit in COMMON_CARE_UNITS), "no care unit is published: the scan proves little"


@pytest.mark.slow
def test_no_shared_output_holds_identifying_text(vouched_run):
    tmp_path, folder, proc = vouched_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    leaks = {p.relative_to(out).as_posix(): leaks_in(shared_text(p), folder) for p in shared_files(out)}
    leaks = {name: found for name, found in leaks.items() if found}
    assert not leaks, "identifying text of the input in shared outputs (file: what):\n" + "\n".join(
        f"  {name}: {', '.join(found)}" for name, found in sorted(leaks.items()))
