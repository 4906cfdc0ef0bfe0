"""The identifier guard: inputs must be de-identified (docs/definitions.md section 7).

A load refuses, before anything is written, a file that has a column whose *name* says it holds a
direct identifier, or a value that *looks like* one. Both rules are data kept here so that a reader
can check them; `config.privacy.allow_columns` (verified columns) exempts named columns from both.

Column names
    A name is normalised to tokens: camelCase and letter/digit boundaries split ("PhoneNumber" ->
    phone number, "Address1" -> address 1), every character that is not a letter or digit is a
    separator (space, '-', '_', '.', ...), case is folded, and a token glued from known words is
    split into them ("dateofbirth" -> date of birth, "patientname" -> patient name, but "hotel"
    stays hotel: "ho" is no known word).
    The name is refused when its tokens contain one of `IDENTIFIER_TERMS` as a whole run of
    tokens ("tel" matches tel_no, never hotel). The generic words of `ALONE_TERMS` ("name", "cell")
    are refused only as the whole name: a column literally named `name` is a person's name, and
    `<person word>_name` (first, last, given, family, full, middle, maiden, patient, pt, person)
    is in the terms, while any other `<word>_name` (drug_name, unit_name, test_name) names a thing
    and is accepted.

Values
    Every scanned column (by default every column except the numbers and times of `NOT_SCANNED`)
    is searched for the patterns of `VALUE_PATTERNS` *anywhere* in the value: an e-mail address,
    a US social security number (123-45-6789), a phone number with separators (555-123-4567,
    (555) 123-4567, 555 123 4567, +1 555.123.4567, +44 20 7946 0958), a long bare number
    (9 or 10 digits, or 11 starting with 1, standing alone: an SSN, phone or NHS number written
    without separators), a street address (a house number, one to three words, a street-type word:
    "12 Main Street", "12 Main St") and a personal name (a title Mr/Mrs/Ms/Miss/Mx/Dr/Prof and a
    capitalised word; a common given name from `GIVEN_NAMES` and a capitalised word, in title or
    upper case; or "Surname, Given"). Key and code columns (a name whose last token is one of
    `KEY_WORDS`: patient_id, encounter_id, hadm_id, atc_code, ndc, formulary_drug_cd, ...) are
    exempt from the long-bare-number pattern only: record keys and drug codes are long numbers by
    nature (MIMIC-IV hadm_id has 8 digits, OMOP ids are often 10, an NDC 11), keys never reach a
    shared output (validation examples and results omit them), and an identifier written with
    separators, an e-mail, an address or a name in a key is still refused. Every other scanned
    column (care_unit, drug, route, fluid, any extra column) refuses a long bare number.

    Given names that are also ordinary words in clinical text (Mark, Will, Grace, Hope, Joy, Rose,
    May, June, April, Dawn, Bill, Pat, Sue, Ray, Max, Dean, Frank, Art, Guy, Iris, Ruby, Amber)
    are deliberately absent, as are upper-case titles (MS is morphine sulfate, DR delayed release).
    On the MIMIC-IV demo (care units, drug names, routes, units) and data_samples/ nothing is
    refused, with no special case. A ward named after a person ("Mary Jones Unit") is refused:
    once a column's values are verified, `allow_columns` is the way to load it.

Cost: one SQL scan per file. Each column is one `min(row)` aggregate: the union of its patterns
(one RE2 pass, linear time) guarded by the OR of the patterns' cheap necessary conditions (a byte
length, a character), so short codes and numbers never reach the regular expression; the pattern
is named afterwards from the first matching value alone. Patterns are bound parameters, never SQL
text. Measured on 2M generated rows (2 threads): a care-unit column costs about 0.5 s, a short
key column under 0.1 s.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import duckdb

from pipelines.errors import InputError

# Identifier terms matched as whole token runs in a normalised column name (docs/definitions.md section 7).
IDENTIFIER_TERMS: tuple[str, ...] = (
    # names of people
    "first name", "last name", "given name", "family name", "full name", "middle name", "maiden name",
    "patient name", "pt name", "person name", "surname", "forename", "forenames", "nickname",
    # record numbers
    "mrn", "medical record", "ssn", "social security", "nhs number", "nhs no", "nhs num",
    # dates of birth
    "dob", "date of birth", "birth date", "birthdate", "birthday",
    # addresses
    "address", "addr", "street", "zip", "zipcode", "postcode", "post code", "postal code",
    # telephone and e-mail
    "phone", "telephone", "tel", "mobile", "fax", "cell phone", "cell number", "cell no",
    "email", "e mail",
)
# Generic words refused only when they are the whole column name.
ALONE_TERMS: tuple[str, ...] = ("name", "cell")
# Words that may be glued to an identifier term inside one token ("phonenumber", "patientdob").
FILLER_WORDS: tuple[str, ...] = ("number", "no", "num", "nr", "id", "code", "home", "work", "contact",
                                 "primary", "patient", "pt", "person", "of")

# Columns never scanned for identifier-like values: numbers and times only.
NOT_SCANNED = frozenset({"collected_at", "value", "start_at", "stop_at", "dose"})

# Common given names (US and UK registers) that are not also ordinary words in clinical text.
GIVEN_NAMES: tuple[str, ...] = (
    "Aaron", "Adam", "Aiden", "Alan", "Albert", "Alexander", "Alice", "Alison", "Amanda", "Amelia",
    "Amy", "Andrea", "Andrew", "Angela", "Ann", "Anna", "Anne", "Anthony", "Arthur", "Ashley",
    "Barbara", "Benjamin", "Betty", "Brandon", "Brenda", "Brian", "Carl", "Carol", "Caroline",
    "Catherine", "Charles", "Charlotte", "Cheryl", "Christine", "Christopher", "Claire", "Cynthia",
    "Daniel", "David", "Deborah", "Debra", "Dennis", "Diana", "Diane", "Donald", "Donna", "Dorothy",
    "Douglas", "Edward", "Elizabeth", "Ellen", "Emily", "Emma", "Eric", "Ethan", "Evelyn", "Fiona",
    "Gary", "George", "Gerald", "Gloria", "Gregory", "Hannah", "Harold", "Harry", "Heather", "Helen",
    "Henry", "Isabella", "Jack", "Jacob", "James", "Jane", "Janet", "Janice", "Jason", "Jeffrey",
    "Jennifer", "Jeremy", "Jessica", "Joan", "John", "Jonathan", "Joseph", "Joshua", "Joyce", "Judith",
    "Julia", "Julie", "Justin", "Karen", "Katherine", "Kathleen", "Kelly", "Kenneth", "Kevin",
    "Kimberly", "Larry", "Laura", "Lauren", "Linda", "Lisa", "Liam", "Lucy", "Margaret", "Maria",
    "Marie", "Martha", "Mary", "Matthew", "Megan", "Melissa", "Michael", "Michelle", "Nancy", "Nathan",
    "Nicholas", "Nicole", "Noah", "Oliver", "Olivia", "Pamela", "Patricia", "Patrick", "Paul", "Peter",
    "Philip", "Rachel", "Raymond", "Rebecca", "Richard", "Robert", "Roger", "Ronald", "Ruth", "Ryan",
    "Samantha", "Samuel", "Sandra", "Sarah", "Scott", "Sharon", "Shirley", "Sophia", "Sophie",
    "Stephanie", "Stephen", "Steven", "Susan", "Teresa", "Thomas", "Timothy", "Victoria", "Virginia",
    "Walter", "William", "Zachary",
)
STREET_WORDS: tuple[str, ...] = ("Street", "Avenue", "Road", "Boulevard", "Lane", "Drive", "Court", "Place",
                                 "Terrace", "Highway", "Parkway", "Square", "Crescent", "Close", "Way")
STREET_ABBREVIATIONS: tuple[str, ...] = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Hwy", "Pkwy")
TITLES: tuple[str, ...] = ("Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof")


def _alternatives(words) -> str:
    return "|".join(words)


def _case_variants(words) -> tuple[str, ...]:
    """Title, upper and lower case of each word (street types are written every way)."""
    return tuple(dict.fromkeys(v for w in words for v in (w, w.upper(), w.lower())))


# RE2 has no look-around: "standing alone" is a non-digit (or start/end) on both sides.
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_SSN = r"(^|[^0-9])[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}($|[^0-9])"
_PHONE = (r"(^|[^0-9])((\+?1[ .-]?)?(\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
          r"|\+[0-9]{1,3}([ .-]?[0-9]{2,5}){3,5})($|[^0-9])")
_BARE_NUMBER = r"(^|[^0-9.,])(1?[0-9]{10}|[0-9]{9})($|[^0-9.,])"
_STREET = (r"(^|[^0-9A-Za-z])[0-9]{1,5}[A-Za-z]? ([A-Za-z0-9][A-Za-z0-9'-]* ){1,3}"
           rf"({_alternatives(_case_variants(STREET_WORDS))}|{_alternatives(STREET_ABBREVIATIONS)})\.?($|[^A-Za-z])")
_GIVEN_UPPER = tuple(n.upper() for n in GIVEN_NAMES)
_NAME = (rf"(^|[^A-Za-z])(({_alternatives(TITLES)})\.? [A-Z][a-z'-]+"
         rf"|({_alternatives(GIVEN_NAMES)})( [A-Z]\.?)? [A-Z][a-z'-]+"
         rf"|({_alternatives(_GIVEN_UPPER)})( [A-Z]\.?)? [A-Z][A-Z'-]+"
         rf"|[A-Z][a-z'-]+, ({_alternatives(GIVEN_NAMES)}))($|[^A-Za-z])")

# pattern name -> (RE2 pattern searched anywhere in the value, cheap necessary condition on {v}).
# strlen counts bytes, never fewer than characters, so a minimum byte length is a necessary condition.
VALUE_PATTERNS: dict[str, tuple[str, str]] = {
    "an e-mail address": (_EMAIL, "contains({v}, '@')"),
    "a social security number": (_SSN, "strlen({v}) >= 11"),
    "a phone number": (_PHONE, "strlen({v}) >= 10"),
    "a long bare number": (_BARE_NUMBER, "strlen({v}) >= 9"),
    "a street address": (_STREET, "strlen({v}) >= 6 AND contains({v}, ' ')"),
    "a personal name": (_NAME, "strlen({v}) >= 5 AND contains({v}, ' ')"),
}
# Patterns not applied to key and code columns (see the module docstring).
NOT_FOR_KEYS = frozenset({"a long bare number"})
# The last name token of a key or code column.
KEY_WORDS = frozenset({"id", "code", "cd", "ndc", "gsn"})


def name_tokens(column: str) -> list[str]:
    """A column name as lower-case tokens: camelCase and letter/digit boundaries split, any
    non-alphanumeric a separator, and a token glued from known words split into them
    ("PatientDOB" -> patient, dob; "address1" -> address, 1)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])",
                    " ", column)
    tokens = re.split(r"[^0-9a-z]+", spaced.casefold())
    return [piece for token in tokens if token for piece in _split_glued(token)]


@lru_cache(maxsize=None)
def _vocabulary() -> frozenset[str]:
    words = {w for term in (*IDENTIFIER_TERMS, *ALONE_TERMS) for w in term.split()}
    return frozenset(words | set(FILLER_WORDS))


@lru_cache(maxsize=4096)
def _split_glued(token: str) -> tuple[str, ...]:
    """`token` as a sequence of vocabulary words if it is made of them only, else itself."""
    vocabulary = _vocabulary()
    best: list[tuple[str, ...] | None] = [()] + [None] * len(token)
    for end in range(1, len(token) + 1):
        for start in range(end):
            if best[start] is not None and token[start:end] in vocabulary:
                best[end] = (*best[start], token[start:end])
                break
    return best[-1] if best[-1] and len(best[-1]) > 1 else (token,)


def identifier_term(column: str) -> str | None:
    """The identifier term a column name matches, or None (the rule is in the module docstring)."""
    tokens = name_tokens(column)
    if tokens in ([t] for t in ALONE_TERMS):
        return tokens[0]
    joined = f" {' '.join(tokens)} "
    for term in IDENTIFIER_TERMS:
        if f" {term} " in joined:
            return term
    return None


def is_key_column(column: str) -> bool:
    """A record key or code (patient_id, hadm_id, atc_code, ndc): its last name token is a KEY_WORD."""
    tokens = name_tokens(column)
    return bool(tokens) and tokens[-1] in KEY_WORDS


def allowed_columns(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """config.privacy.allow_columns, case folded, from the run's `param_allow_columns` table.

    Without the table (no parameters written yet) nothing is exempt, the strict default.
    """
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'param_allow_columns'"
    ).fetchone()[0]
    if not exists:
        return frozenset()
    return frozenset(r[0].strip().casefold() for r in con.execute("SELECT column_name FROM param_allow_columns")
                     .fetchall())


def check_column_names(path: Path, columns: list[str], allow: frozenset[str] = frozenset()) -> None:
    """Refuse the first column (file order) whose name matches an identifier term."""
    for col in columns:
        if col.strip().casefold() in allow:
            continue
        term = identifier_term(col)
        if term is not None:
            raise InputError(
                f"{path}: column {col!r} looks like a direct identifier (matches {term!r}); inputs must be "
                "de-identified (nothing was loaded)"
            )


def column_patterns(column: str) -> dict[str, tuple[str, str]]:
    """The value patterns applied to one column (key and code columns skip NOT_FOR_KEYS)."""
    key = is_key_column(column)
    return {what: rule for what, rule in VALUE_PATTERNS.items() if not (key and what in NOT_FOR_KEYS)}


def check_values(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, scanned: list[str],
    row: str = "source_row", params: list | None = None,
) -> None:
    """Refuse the first scanned column (file order) holding a value that matches a pattern.

    One scan evaluates, per column, the union of its patterns once per row (RE2 runs one
    alternation in a single pass; six separate searches cost about four times as much), behind the
    OR of their cheap conditions, and keeps the first matching row and its value. The error names
    the first column with a match, that row, and the first pattern (VALUE_PATTERNS order) the
    value matches, found by testing that one value.
    """
    if not scanned:
        return
    aggregates, bound = [], []
    for col in scanned:
        rules = column_patterns(col)
        value = f'CAST("{col}" AS VARCHAR)'
        cheap = " OR ".join(f"({candidate.format(v=value)})" for _, candidate in rules.values())
        union = "|".join(f"({pattern})" for pattern, _ in rules.values())
        hit = f"({cheap}) AND regexp_matches({value}, ?)"
        # a struct orders by its first field: the minimum is the first matching row, with its value
        aggregates.append(f"min(CASE WHEN {hit} THEN {{'r': CAST({row} AS BIGINT), 'v': {value}}} END)")
        bound.append(union)
    found = con.execute(f"SELECT {', '.join(aggregates)} FROM {table}", [*bound, *(params or [])]).fetchone()
    for col, first in zip(scanned, found):
        if first is None:
            continue
        first_row, first_value = first["r"], first["v"]
        what = next(what for what, (pattern, _) in column_patterns(col).items()
                    if con.execute("SELECT regexp_matches(?, ?)", [first_value, pattern]).fetchone()[0])
        raise InputError(
            f"{path}: row {first_row}, column {col!r} holds what looks like {what}; inputs "
            "must be de-identified (nothing was loaded)"
        )


def check_identifiers(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, columns: list[str], scan: list[str] | None = None,
    row: str = "source_row", params: list | None = None, allow: frozenset[str] | None = None,
) -> None:
    """Refuse a file whose column names or values look like direct identifiers (docs/definitions.md section 7).

    `columns` are the file's columns (all name-checked); `scan` names the columns whose values are
    searched (default: every column but the numbers and times of NOT_SCANNED). `table` is a table
    name or a table function (`read_parquet(?, ...)` with `params`), `row` the expression of the
    1-based row number in it. `allow` (default: the run's config.privacy.allow_columns) exempts
    columns from both checks.
    """
    allow = allowed_columns(con) if allow is None else frozenset(c.strip().casefold() for c in allow)
    check_column_names(path, columns, allow)
    scanned = scan if scan is not None else [c for c in columns if c.strip().casefold() not in NOT_SCANNED]
    check_values(con, path, table, [c for c in scanned if c.strip().casefold() not in allow], row, params)
