"""Hostile CSV files, generated: every malformed line is quarantined where it stands, every other
line is read as written, and the accounting identity is exact (issue 15, item 9).

Hypothesis writes generic lab files byte by byte, mixing good rows with rows that are wrong the
way real extracts are wrong: stray quotes, ragged rows, invalid UTF-8, digit separators, NaN/Inf
text, odd whitespace (tabs, no-break spaces, whitespace-only ids), absurd dates, empty and quoted
empty fields; with a shuffled header, an extra unmapped column, LF or CRLF line ends and with or
without a final line end. Each file goes through the real ingest and every SQL model on an
in-memory DuckDB. Every row's fate is known from how it was generated, so the test asserts it
row by row, at its 1-based data-row position:

- good rows are loaded, with every field read back as written after the plan's trimming;
- rows that are wrong in one value are quarantined for that reason (non_numeric_value,
  bad_timestamp, missing_patient_id) or out of scope, never loaded;
- malformed lines (ragged, invalid UTF-8, an unterminated quote) are quarantined as malformed_row;
- rows read = loaded + out of scope + quarantined, and rows read = records written;
- no loaded value is NaN or infinite;
- or the load stops with a one-line error: the malformed-fraction gate (exit 1) exactly when the
  file's malformed share is above `validation.max_malformed_fraction`, naming the first bad row.

What is well defined about a stray quote (pipelines/ingest/csv_reader.py): a field that opens a
quote and never closes it runs on into the following lines until a quote ends it with an error
(a quote followed by anything but the delimiter or a line end) or the file ends; the reader then
cuts the record back to its first line, which is the malformed row, and reads on from the next
line. A stray quote that a later quote closes *cleanly* (a quote followed by the delimiter or a
line end) is indistinguishable from a legitimate quoted line break, so the generator never writes
one: a quoted field's content never starts with a quote, the delimiter or a line break, and a
literal quote inside an unquoted field is always followed by a letter (it is read literally).
Nor does the line of a stray quote hold a quoted line break: reading resumes on the next physical
line, which would then start inside that field.
Blank lines are not rows (csv_reader.py) and are not generated.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import Config
from pipelines.db import WHITESPACE_CHARS, connect, create_parameter_tables
from pipelines.errors import HypomagError, InputError, ValidationFailed
from pipelines.ingest import LAB_OPTIONAL, LAB_REQUIRED, ingest_generic
from pipelines.models import build_models

LAB_COLUMNS = (*LAB_REQUIRED, *LAB_OPTIONAL)
EXTRA_COLUMN = "comment"  # an unmapped column: read, scanned by the identifier guard, never used
MEDICATIONS = b"patient_id,start_at,drug\n"

# (analyte as written, unit as written, values as written that are numbers in the plausible range)
IN_SCOPE = (
    ("MG", "mmol/L", ("0.8", "+0.8", ".8", "8e-1", "8E-1", "0.80", "1", "<0.5", ">= 1.2")),
    ("mg", "mg/dL", ("1.9", "2", "1.9e0", "+1.5")),
    ("19123-9", "MG/DL", ("2.1",)),
    ("2601-3", "mmol/l", ("0.7",)),
    ("K", "mmol/L", ("3.2", "4", "3.")),
    ("k", "mEq/L", ("3.9",)),
    ("NA", "mmol/L", ("138", "1.38e2", "1.38E+2")),
    ("2951-2", "mmol/L", ("140",)),
    ("PHOS", "mg/dL", ("2.4",)),
    ("CA", "mg/dL", ("8.1",)),
)
SERUM_FLUIDS = (None, "serum", "Plasma", "SERUM", "serum/plasma")
# ionized calcium is in scope in whole blood too; 1994-3 is whole blood when the fluid is blank
IONIZED = (("ICA", "mmol/L", ("1.1", "1.25")), ("1994-3", "mmol/L", ("1.05",)))
BLOOD_FLUIDS = (None, "blood", "Whole Blood", "serum")
# spellings that are not numbers by the plan's grammar (the engine's cast reads several of them)
NON_NUMERIC = ("NaN", "nan", "-nan", "inf", "-inf", "+Inf", "Infinity", "-Infinity", "INFINITY", "1_38",
               "1_000.5", "1,7", "0.8.1", "1e", "e5", "--1", "+-1", "0x1A", "1 000", "abc", "\u0663",
               "\u00bd", "<NaN", "> inf", "NaN\t", None)
ABSURD_TIMES = ("9999-99-99 25:61:00", "2024-02-30 08:00:00", "2024-13-01 08:00:00", "2024-01-01 08:60:00",
                "2024-01-01 25:00:00", "01/02/2024 08:00", "2024-01-01 08:00:00+02:00", "NaT",
                "2024-1-1 8:00", None)
MISSING_IDS = (None, "\t", "\u00a0", " \t\u3000 ", "\u200b", "\ufeff", "   ")
OUT_OF_SCOPE_ANALYTES = ("GLU", "glucose", "2345-7", "HbA1c")
OUT_OF_SCOPE_FLUIDS = ("urine", "CSF", "Urine", "blood")
CARE_UNITS = (None, "ICU", "MICU", "Ward B", "cardiology", "R\u00e9animation", "Intensivstation S\u00fcd",
              'IC"U', "a,b", 'ward "B"', "x\ny", "two\r\nlines", "  padded  ", "\u00a0nbsp\u00a0", "\ttab",
              "\u65e5\u672c", "lab \U0001f9ea")
COMMENTS = (None, "ok", "re-run", "h\u00e4molyse", "a,b", 'said "no"')
PADDING = ("",) * 6 + (" ", "\t", "\u00a0", "\u2003", " \u3000")
INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf",
                b"\xf5\x80\x80\x80", b"\xf0\x9f\x98")
MALFORMED = ("ragged", "bad_utf8", "stray_quote")
# kind -> (status, reason) in stg_lab_rows
FATES = {
    "good": ("loaded", None),
    "non_numeric": ("quarantined", "non_numeric_value"),
    "bad_timestamp": ("quarantined", "bad_timestamp"),
    "missing_patient": ("quarantined", "missing_patient_id"),
    "out_of_scope": ("out_of_scope", None),
    **{kind: ("quarantined", "malformed_row") for kind in MALFORMED},
}
# words the parse_error of each malformed kind holds
PARSE_ERROR_WORDS = {"ragged": "fields", "bad_utf8": "invalid encoding", "stray_quote": "quote"}
KINDS = ("good",) * 5 + ("non_numeric", "bad_timestamp", "missing_patient", "out_of_scope") + MALFORMED * 2


@dataclass(frozen=True)
class Row:
    """One generated data record: its kind, its bytes (no line end) and, for a parsed kind, the
    text of every column as written (quotes removed; None for an empty field)."""

    kind: str
    data: bytes
    fields: dict[str, str | None]


@dataclass(frozen=True)
class HostileFile:
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    eol: bytes
    final_eol: bool
    max_malformed_fraction: float

    def labs_csv(self) -> bytes:
        lines = [",".join(self.columns).encode(), *(r.data for r in self.rows)]
        return self.eol.join(lines) + (self.eol if self.final_eol else b"")


# -- writing fields ------------------------------------------------------------------------------

def can_be_plain(text: str) -> bool:
    """Unquoted: no delimiter or line break, and a quote only inside, followed by a letter (read
    literally; it can end a stray quote's run-on only with an error)."""
    if any(ch in text for ch in ",\r\n"):
        return False
    return all(k > 0 and text[k + 1:k + 2].isalpha() for k, ch in enumerate(text) if ch == '"')


def can_be_quoted(text: str) -> bool:
    """Quoted: the content must not start with a quote, the delimiter or a line break (the opening
    quote would then close a stray quote's run-on cleanly)."""
    return text[0] not in '",\r\n'


@st.composite
def encoded(draw, text: str | None) -> bytes:
    """A field's bytes: empty as nothing or as a quoted empty field; text plain or quoted."""
    if not text:
        return draw(st.sampled_from([b"", b'""']))
    ways = [way for way, ok in (("plain", can_be_plain(text)), ("quoted", can_be_quoted(text))) if ok]
    assert ways, f"the generator has no safe way to write {text!r}"
    raw = text.encode("utf-8")
    return raw if draw(st.sampled_from(ways)) == "plain" else b'"' + raw.replace(b'"', b'""') + b'"'


@st.composite
def padded(draw, text: str) -> str:
    return draw(st.sampled_from(PADDING)) + text + draw(st.sampled_from(PADDING))


# -- rows --------------------------------------------------------------------------------------

def timestamp(position: int, style: int) -> str:
    """A valid, unique collection time per position (no two rows can be duplicates)."""
    at = datetime(2024, 1, 1, 6) + timedelta(hours=position)
    return (at.strftime("%Y-%m-%d %H:%M:%S"), at.strftime("%Y-%m-%dT%H:%M:%S"), at.strftime("%Y-%m-%d %H:%M"),
            at.strftime("%Y-%m-%d %H:%M:%S") + ".250")[style]


@st.composite
def good_fields(draw, position: int) -> dict[str, str | None]:
    """The fields of a row that must be loaded."""
    ionized = draw(st.integers(0, 5)) == 0
    analyte, unit, values = draw(st.sampled_from(IONIZED if ionized else IN_SCOPE))
    fluid = draw(st.sampled_from(BLOOD_FLUIDS if ionized else SERUM_FLUIDS))
    if analyte == "1994-3" and fluid == "serum":
        fluid = None
    optional = st.booleans()
    return {
        "patient_id": draw(padded(f"P{position:03d}")),
        "collected_at": draw(padded(timestamp(position, draw(st.integers(0, 3))))),
        "analyte": draw(padded(analyte)),
        "value": draw(padded(draw(st.sampled_from(values)))),
        "unit": draw(padded(unit)),
        "result_id": f"R{position}" if draw(optional) else None,
        "specimen_id": draw(padded(f"S{position}")) if draw(optional) else None,
        "encounter_id": f"E{position}" if draw(optional) else None,
        "fluid": None if fluid is None else draw(padded(fluid)),
        "care_unit": draw(st.sampled_from(CARE_UNITS)),
        EXTRA_COLUMN: draw(st.sampled_from(COMMENTS)),
    }


@st.composite
def row_fields(draw, kind: str, position: int) -> dict[str, str | None]:
    """A parsed row of `kind`: a good row with one thing wrong."""
    fields = draw(good_fields(position))
    if kind == "non_numeric":
        fields["value"] = draw(st.sampled_from(NON_NUMERIC))
    elif kind == "bad_timestamp":
        fields["collected_at"] = draw(st.sampled_from(ABSURD_TIMES))
    elif kind == "missing_patient":
        fields["patient_id"] = draw(st.sampled_from(MISSING_IDS))
    elif kind == "out_of_scope":
        # scope is decided first: whatever else is wrong, an unused analyte or fluid is out of scope
        how = draw(st.sampled_from(["analyte", "fluid", "code"]))
        if how == "analyte":
            fields["analyte"] = draw(st.sampled_from(OUT_OF_SCOPE_ANALYTES))
        elif how == "fluid":
            fields["analyte"], fields["fluid"] = "MG", draw(padded(draw(st.sampled_from(OUT_OF_SCOPE_FLUIDS))))
        else:  # potassium by its blood-gas code, fluid blank: whole blood
            fields["analyte"], fields["fluid"] = "6298-4", None
        if draw(st.booleans()):
            fields["value"] = draw(st.sampled_from(NON_NUMERIC))
        if draw(st.booleans()):
            fields["patient_id"] = draw(st.sampled_from(MISSING_IDS))
    return fields


@st.composite
def malformed(draw, kind: str, columns: tuple[str, ...], fields: dict[str, str | None],
              parts: list[bytes]) -> bytes:
    """The bytes of a malformed line made from a good row's encoded fields."""
    if kind == "ragged":
        how = draw(st.sampled_from(["few", "many", "whitespace"]))
        if how == "few":
            data = b",".join(parts[:draw(st.integers(1, len(parts) - 1))])
            return data or b" "  # an empty line would be a blank line (skipped), not a row
        if how == "many":
            extra = draw(st.lists(st.sampled_from([b"x", b"", b'"y"', b"0.8", b'""']), max_size=2))
            # the last extra field is not empty (trailing empty fields: test_trailing_empty_fields_...)
            return b",".join([*parts, *extra, draw(st.sampled_from([b"x", b'"y"', b"9"]))])
        return draw(st.sampled_from([b" ", b"\t", b" \t ", b"\xc2\xa0"]))
    j = draw(st.integers(0, len(columns) - 1))
    text = fields[columns[j]] or ""
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(text)))
        raw = text[:at].encode() + draw(st.sampled_from(INVALID_UTF8)) + text[at:].encode()
        quoted = not can_be_plain(text) or draw(st.booleans())
        parts[j] = b'"' + raw.replace(b'"', b'""') + b'"' if quoted else raw
    else:  # stray_quote: the field opens a quote and never closes it
        if not text or '"' in text or not can_be_plain(text) or not can_be_quoted(text):
            text = "x"  # a quote followed by the delimiter or a line end would close an earlier one
        parts[j] = b'"' + text.encode()
    data = b",".join(parts)
    assert kind != "bad_utf8" or not is_utf8(data), data
    return data


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def row_at(draw, position: int, columns: tuple[str, ...]) -> Row:
    kind = draw(st.sampled_from(KINDS))
    fields = draw(row_fields("good" if kind in MALFORMED else kind, position))
    if kind == "stray_quote":  # reading resumes on the next physical line: no quoted line break here
        fields = {c: "ICU" if v and ("\n" in v or "\r" in v) else v for c, v in fields.items()}
    parts = [draw(encoded(fields[c])) for c in columns]
    if kind in MALFORMED:
        return Row(kind, draw(malformed(kind, columns, fields, parts)), {})
    return Row(kind, b",".join(parts), {c: fields[c] for c in columns})


@st.composite
def hostile_files(draw) -> HostileFile:
    columns = tuple(draw(st.permutations([*LAB_COLUMNS, *([EXTRA_COLUMN] if draw(st.booleans()) else [])])))
    count = draw(st.integers(1, 25))
    rows = tuple(draw(row_at(position, columns)) for position in range(1, count + 1))
    return HostileFile(columns, rows, eol=draw(st.sampled_from([b"\n", b"\r\n"])), final_eol=draw(st.booleans()),
                       max_malformed_fraction=draw(st.sampled_from([1.0, 1.0, 1.0, 0.25, 0.01])))


# -- running and checking ----------------------------------------------------------------------

def config_with(max_malformed_fraction: float) -> Config:
    base = Config()
    return dataclasses.replace(base, validation=dataclasses.replace(
        base.validation, max_malformed_fraction=max_malformed_fraction))


def load(folder: Path, labs: bytes, config: Config):
    """Write the files, run the real ingest and every model on an in-memory DuckDB."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labs.csv").write_bytes(labs)
    (folder / "medications.csv").write_bytes(MEDICATIONS)
    con = connect(":memory:", config)
    create_parameter_tables(con, config)
    files = ingest_generic(con, folder, config.columns, config)
    build_models(con)
    return con, files


def trimmed(text: str | None) -> str | None:
    """The plan's trimming: every whitespace character at both ends (an empty field is NULL)."""
    return None if not text else text.strip(WHITESPACE_CHARS)


def blank_is_null(text: str | None) -> str | None:
    return trimmed(text) or None


def expected_fields(fields: dict[str, str | None], position: int) -> tuple:
    """A parsed row's (patient_id, collected_at_text, analyte_code, value_text, unit, result_id,
    specimen_id, encounter_id, care_unit), from its fields as written: the texts are stg_lab_fields',
    the rest stg_lab_rows' (STG_COLUMNS)."""
    analyte = trimmed(fields["analyte"])
    return (
        blank_is_null(fields["patient_id"]),
        trimmed(fields["collected_at"]),
        None if analyte is None else analyte.upper(),
        trimmed(fields["value"]),
        trimmed(fields["unit"]),
        blank_is_null(fields["result_id"]) or str(position),
        blank_is_null(fields["specimen_id"]),
        blank_is_null(fields["encounter_id"]),
        blank_is_null(fields["care_unit"]),
    )


# a row's fate (stg_lab_rows) beside its trimmed texts (stg_lab_fields), by row_id
STG_COLUMNS = ("s.source_row, s.status, s.reason, s.patient_id, t.collected_at_text, t.analyte_code, t.value_text, "
               "t.unit, coalesce(s.given_result_id, CAST(s.source_row AS VARCHAR)) AS result_id, "
               "s.specimen_id, s.encounter_id, s.care_unit, s.parse_error, s.value_num")
STG_FROM = "stg_lab_rows AS s JOIN stg_lab_fields AS t ON t.row_id = s.row_id"


def number_in(value_text: str) -> float:
    """The number of a good value as written (a censor sign dropped)."""
    return float(value_text.lstrip("<>=").strip(WHITESPACE_CHARS))


def check_row(row: Row, got: tuple, position: int) -> None:
    source_row, status, reason, *fields, parse_error, value_num = got
    where = f"row {position} ({row.kind}, written as {row.data!r})"
    assert source_row == position, where
    assert (status, reason) == FATES[row.kind], where
    if row.kind in MALFORMED:
        # every field is NULL; the result id defaults to the row's position
        assert fields == [None] * 5 + [str(position)] + [None] * 3, f"{where}: a malformed row keeps no field"
        assert PARSE_ERROR_WORDS[row.kind] in parse_error, f"{where}: parse_error {parse_error!r}"
        return
    assert parse_error is None, where
    assert tuple(fields) == expected_fields(row.fields, position), f"{where}: not read as written"
    if row.kind == "good":
        assert value_num == number_in(trimmed(row.fields["value"])), where


def check_loaded(con, hostile: HostileFile, files) -> None:
    """Properties (a) to (e) of a load that succeeded."""
    count = len(hostile.rows)
    labs = next(f for f in files if f.table == "raw_labs")
    assert labs.rows_read == count, "rows read = data records written"
    read, loaded, out_of_scope, quarantined, superseded = con.execute(
        "SELECT rows_read, rows_loaded, rows_out_of_scope, rows_quarantined, rows_superseded "
        "FROM mart_row_accounting WHERE input_table = 'labs'").fetchone()
    assert (read, superseded) == (count, 0)
    assert read == loaded + out_of_scope + quarantined, "the accounting identity"
    kinds = Counter(FATES[r.kind][0] for r in hostile.rows)
    assert (loaded, out_of_scope, quarantined) == (kinds["loaded"], kinds["out_of_scope"], kinds["quarantined"])
    got = con.execute(f"SELECT {STG_COLUMNS} FROM {STG_FROM} ORDER BY s.source_row").fetchall()
    assert [g[0] for g in got] == list(range(1, count + 1)), "one row per position, no more, no less"
    for position, (row, found) in enumerate(zip(hostile.rows, got), start=1):
        check_row(row, found, position)
    not_finite = con.execute(
        "SELECT count(*) FROM stg_lab_rows "
        "WHERE status = 'loaded' AND NOT (isfinite(value_num) AND isfinite(value_canonical))"
    ).fetchone()[0]
    assert not_finite == 0, "a loaded value is NaN or infinite"


def check_refused(exc: HypomagError, hostile: HostileFile) -> None:
    """A refusal is one line, exit 2 (input) or 1 (the malformed-fraction gate), and never quotes a row."""
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert all(f"P{position:03d}" not in message for position in range(1, len(hostile.rows) + 1)), message
    if isinstance(exc, ValidationFailed):
        assert exc.exit_code == 1
        assert "rows are malformed" in message, message
    else:
        assert isinstance(exc, InputError) and exc.exit_code == 2, message


def malformed_positions(hostile: HostileFile) -> list[int]:
    return [p for p, r in enumerate(hostile.rows, start=1) if r.kind in MALFORMED]


def test_hostile_files_are_read_row_by_row_or_refused_in_one_line():
    outcomes: Counter = Counter()

    @settings(max_examples=120, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile_files())
    def check(hostile: HostileFile) -> None:
        bad = malformed_positions(hostile)
        gate_closes = len(bad) / len(hostile.rows) > hostile.max_malformed_fraction
        with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
            try:
                con, files = load(Path(scratch) / "in", hostile.labs_csv(),
                                  config_with(hostile.max_malformed_fraction))
            except HypomagError as exc:
                check_refused(exc, hostile)
                if isinstance(exc, ValidationFailed):
                    assert gate_closes, f"the malformed-fraction gate closed on {len(bad)} of {len(hostile.rows)}"
                    assert f"the first is row {bad[0]}:" in str(exc), str(exc)
                outcomes[type(exc).__name__] += 1
                return
            try:
                assert not gate_closes, f"{len(bad)} of {len(hostile.rows)} rows malformed, above the gate"
                check_loaded(con, hostile, files)
            finally:
                con.close()
        outcomes["loaded"] += 1

    check()
    # the generated files are all readable: a refusal other than the gate is the exception
    assert outcomes["InputError"] <= outcomes["loaded"] // 10, outcomes
    assert outcomes["loaded"] >= 60, outcomes


# -- fixed examples --------------------------------------------------------------------------------

HEADER = b"patient_id,collected_at,analyte,value,unit,result_id,specimen_id,encounter_id,fluid,care_unit"
ANALYTES = ((b"MG", b"0.6", b"mmol/L"), (b"K", b"3.1", b"mmol/L"), (b"NA", b"131", b"mmol/L"),
            (b"MG", b"1.9", b"mg/dL"))


def issue_rows(count: int) -> list[bytes]:
    """Good rows with quoted empty fields (specimen, encounter, fluid) and some quoted care units."""
    rows = []
    for i in range(1, count + 1):
        analyte, value, unit = ANALYTES[i % len(ANALYTES)]
        at = (datetime(2024, 3, 1) + timedelta(minutes=37 * i)).strftime("%Y-%m-%d %H:%M:%S").encode()
        care_unit = b'"ICU"' if i % 3 == 0 else b'""'
        rows.append(b",".join([b"P%d" % (i % 40), at, analyte, value, unit, b"%d" % i, b'""', b'""', b'""',
                               care_unit]))
    return rows


def stg_rows(con) -> dict[int, tuple]:
    return {r[0]: r[1:] for r in con.execute(f"SELECT {STG_COLUMNS} FROM {STG_FROM}").fetchall()}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_issue_case_one_unterminated_quote_among_quoted_empty_fields(tmp_path, eol):
    # the issue's case with the default configuration: row 148 of 400 opens a quote it never
    # closes; every other row has quoted empty fields. Before: quoting off for the whole file.
    rows = issue_rows(400)
    clean_con, clean_files = load(tmp_path / "clean", eol.join([HEADER, *rows]) + eol, Config())
    rows[147] = rows[147].replace(b",0.6,", b',"0.6,')
    assert rows[147].count(b'"0.6') == 1
    con, files = load(tmp_path / "stray", eol.join([HEADER, *rows]) + eol, Config())
    assert files[0].rows_read == clean_files[0].rows_read == 400
    clean, got = stg_rows(clean_con), stg_rows(con)
    assert got[148][:2] == ("quarantined", "malformed_row")
    assert {p: r for p, r in got.items() if p != 148} == {p: r for p, r in clean.items() if p != 148}, \
        "every row but the one with the stray quote is read as in the file without it"
    assert con.execute("SELECT count(*) FROM stg_lab_rows WHERE patient_id LIKE '%\"%' OR care_unit LIKE '%\"%'"
                       ).fetchone()[0] == 0, "a quoted empty field read as the text \"\""
    magnesium = "SELECT count(*) FROM int_lab_results WHERE analyte = 'MG'"
    assert con.execute(magnesium).fetchone()[0] == clean_con.execute(magnesium).fetchone()[0] - 1  # row 148 is MG
    assert con.execute("SELECT count(*) FROM stg_lab_rows WHERE status = 'out_of_scope'").fetchone()[0] == 0


@pytest.mark.parametrize("eol, line_break", [(b"\r\n", b"\n"), (b"\n", b"\r\n")], ids=["crlf-file", "lf-file"])
def test_stray_quote_then_a_quoted_line_break_of_the_other_kind(tmp_path, eol, line_break):
    # A CRLF file (as Excel writes it) whose cells hold a bare line feed (Alt+Enter), or an LF file
    # whose cells hold CR LF. Row 2 opens a quote it never closes; row 3's care unit is a quoted
    # two-line text. Row 3 must be read as written (without the stray quote it is).
    rows = [b"P1,2024-01-01 08:00:00,MG,0.8,mmol/L,R1,,,,ICU",
            b'P2,2024-01-01 09:00:00,MG,"0.9,mmol/L,R2,,,,ICU',
            b'P3,2024-01-01 10:00:00,MG,0.7,mmol/L,R3,,,,"x' + line_break + b'y"',
            b"P4,2024-01-01 11:00:00,MG,0.6,mmol/L,R4,,,,ICU"]
    con, files = load(tmp_path / "in", eol.join([HEADER, *rows]) + eol, config_with(1.0))
    got = {p: (r[0], r[1], r[2]) for p, r in sorted(stg_rows(con).items())}
    assert files[0].rows_read == 4 and got == {
        1: ("loaded", None, "P1"),
        2: ("quarantined", "malformed_row", None),
        3: ("loaded", None, "P3"),
        4: ("loaded", None, "P4"),
    }, (f"after a stray quote, a quoted line break of the other kind loses its row: {files[0].rows_read} read, "
        f"{got} (DuckDB detects new_line on the resumed segment's first line, inside the quoted field)")


def test_two_stray_quotes_in_a_row_lose_no_row(tmp_path):
    # Row 1 opens a quote it never closes; row 2 has a properly quoted time, then opens a quote of
    # its own. DuckDB rejects rows 1 to 3 as one record whose csv_line it reports empty, so the
    # reader cannot see that the record spans lines and does not resume: rows 2 and 3 vanish.
    rows = [b'"P001,2024-01-01 07:00:00,MG,1.1,mmol/L,,,,,',
            b'P002,"2024-01-01 08:00:00","MG,1.1,mmol/L,,,,,',
            b'P003,2024-01-01 09:00:00,MG,1.1,"mmol/L",,,,,']
    con, files = load(tmp_path / "in", b"\n".join([HEADER, *rows]) + b"\n", config_with(1.0))
    got = {p: (r[0], r[1], r[2]) for p, r in sorted(stg_rows(con).items())}
    assert files[0].rows_read == 3 and got == {
        1: ("quarantined", "malformed_row", None),
        2: ("quarantined", "malformed_row", None),
        3: ("loaded", None, "P003"),
    }, f"two stray quotes in a row: 3 records written, {files[0].rows_read} read: {got}"


@pytest.mark.parametrize("line, shifted", [
    # one field too many in the middle (a unit written twice) and the care unit left empty: read
    # shifted, it loads 0.8 mg/dL with result id "mmol/L"
    (b"P2,2024-01-01 09:00:00,MG,0.8,mg/dL,mmol/L,R2,,,,", "unit written twice"),
    # a trailing delimiter: one empty field too many
    (b"P2,2024-01-01 09:00:00,MG,0.8,mmol/L,R2,,,,ICU,", "trailing delimiter"),
], ids=["extra-field-inside", "trailing-delimiter"])
def test_trailing_empty_fields_do_not_hide_a_ragged_row(tmp_path, line, shifted):
    # A row with more fields than the header is malformed even when its extra fields are empty:
    # DuckDB drops trailing empty fields, so a field too many inside the row is read shifted.
    rows = [b"P1,2024-01-01 08:00:00,MG,0.8,mmol/L,R1,,,,ICU", line, b"P3,2024-01-01 10:00:00,MG,0.7,mmol/L,R3,,,,ICU"]
    assert line.count(b",") == HEADER.count(b",") + 1
    con, files = load(tmp_path / "in", b"\n".join([HEADER, *rows]) + b"\n", config_with(1.0))
    got = con.execute(f"SELECT s.status, s.reason, t.value_text, t.unit, s.given_result_id FROM {STG_FROM} "
                      "WHERE s.source_row = 2").fetchone()
    assert got[:2] == ("quarantined", "malformed_row"), \
        f"a row with {HEADER.count(b',') + 2} fields for {HEADER.count(b',') + 1} columns ({shifted}) was read as {got}"


def test_non_numeric_spellings_are_never_loaded(tmp_path):
    # one row per spelling, otherwise valid: each is non_numeric_value (the engine's cast reads
    # 1_38, NaN, inf and Infinity as numbers; the plan's grammar does not)
    spellings = [s for s in NON_NUMERIC if s is not None and "," not in s] + ['"1,7"', "", '""']
    rows = [b"P%d,2024-01-01 %02d:00:00,NA,%s,mmol/L" % (i, i % 24, s.encode() if isinstance(s, str) else s)
            for i, s in enumerate(spellings, start=1)]
    con, _ = load(tmp_path / "in", b"\n".join([b"patient_id,collected_at,analyte,value,unit", *rows]) + b"\n",
                  config_with(1.0))
    fates = con.execute("SELECT source_row, status, reason FROM stg_lab_rows ORDER BY source_row").fetchall()
    assert fates == [(i, "quarantined", "non_numeric_value") for i in range(1, len(rows) + 1)]


def test_whitespace_only_patient_ids_are_missing_and_padded_values_load(tmp_path):
    rows = [b"\t,2024-01-01 08:00:00,MG,0.8,mmol/L", "\u00a0,2024-01-01 09:00:00,MG,0.8,mmol/L".encode(),
            '"\u3000\t",2024-01-01 10:00:00,MG,0.8,mmol/L'.encode(),
            "\u00a0P4\t,\t2024-01-01 11:00:00\u00a0, mg ,\u20030.8\t,\tmmol/L\u00a0".encode()]
    con, _ = load(tmp_path / "in", b"\n".join([b"patient_id,collected_at,analyte,value,unit", *rows]) + b"\n",
                  config_with(1.0))
    got = con.execute("SELECT source_row, status, reason, patient_id, value_num FROM stg_lab_rows ORDER BY 1"
                      ).fetchall()
    assert got == [(1, "quarantined", "missing_patient_id", None, 0.8),
                   (2, "quarantined", "missing_patient_id", None, 0.8),
                   (3, "quarantined", "missing_patient_id", None, 0.8),
                   (4, "loaded", None, "P4", 0.8)]


def test_absurd_dates_are_bad_timestamps(tmp_path):
    rows = [b"P%d,%s,MG,0.8,mmol/L" % (i, t.encode()) for i, t in enumerate(ABSURD_TIMES[:-1], start=1)]
    con, _ = load(tmp_path / "in", b"\n".join([b"patient_id,collected_at,analyte,value,unit", *rows]) + b"\n",
                  config_with(1.0))
    fates = con.execute("SELECT source_row, status, reason FROM stg_lab_rows ORDER BY source_row").fetchall()
    assert fates == [(i, "quarantined", "bad_timestamp") for i in range(1, len(rows) + 1)]


def test_no_loaded_value_is_nan_or_infinite_even_in_exponent_form(tmp_path):
    # 1e999 overflows to infinity in the engine's cast: a number by the grammar, but never loadable
    rows = [b"P1,2024-01-01 08:00:00,MG,1e999,mmol/L", b"P2,2024-01-01 09:00:00,MG,-1e999,mmol/L",
            b"P3,2024-01-01 10:00:00,MG,1e-999,mmol/L", b"P4,2024-01-01 11:00:00,MG,0.8,mmol/L"]
    con, files = load(tmp_path / "in", b"\n".join([b"patient_id,collected_at,analyte,value,unit", *rows]) + b"\n",
                      config_with(1.0))
    values = [r[0] for r in con.execute("SELECT value_num FROM stg_lab_rows WHERE status = 'loaded'").fetchall()]
    assert values == [0.8] and all(math.isfinite(v) for v in values)
    assert con.execute("SELECT count(*) FROM stg_lab_rows WHERE status = 'quarantined'").fetchone()[0] == 3
