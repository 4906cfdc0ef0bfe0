"""Drug classes of analysis plan section 6: names as written, abbreviations and British spellings,
ATC codes, and the exclusions that win over both (magnesium citrate by name or by its ATC code,
obstetric magnesium sulfate, ophthalmic/otic/topical forms by name or by route)."""
from __future__ import annotations

import pytest

from builder import lab, make_db, med

AT = "2024-03-10 08:00:00"


def classes_of(tmp_path, drug: str, atc: str = "", route: str = "") -> set[str]:
    con = make_db(tmp_path, meds=[med("p", AT, drug, atc_code=atc, route=route)],
                  labs=[lab("p", AT, "MG", "2.0", "mg/dL")])
    return {r[0] for r in con.execute("SELECT drug_class FROM int_medication_classes").fetchall()}


@pytest.mark.parametrize("drug,atc,route,expected", [
    # issue 16: magnesium citrate identified by its ATC code alone is not magnesium repletion
    ("Citroma", "A12CC04", "PO", set()),
    ("Magnesium Oxide", "A12CC02", "PO", {"mg_supplement"}),
    ("Brand Y", "A12CC", "PO", {"mg_supplement"}),
    # British spellings, salts and abbreviations of the plan's generic names
    ("Magnesium Sulphate", "", "IV", {"mg_supplement"}),
    ("Mag Sulfate", "", "IV", {"mg_supplement"}),
    ("Ethacrynate Sodium", "", "IV", {"loop_diuretic"}),
    ("KCl", "", "PO", {"k_supplement"}),
    ("Potassium Chl 20 mEq / 1000 mL NS", "", "IV", {"k_supplement"}),
    ("Chlorothiazide", "", "IV", {"thiazide"}),
    # ophthalmic, otic and topical forms belong to no class, by name or by route
    ("Gentamicin 0.3% Ophth. Soln", "", "", set()),
    ("Gentamicin", "", "BOTH EYES", set()),
    ("Tobramycin", "J01GB01", "LEFT EAR", set()),
    ("Gentamicin Sulfate Cream", "", "", set()),
    ("Gentamicin", "", "TP", set()),
    ("Gentamicin", "", "IV", {"aminoglycoside"}),
    # 'otic' inside another word (antibiotic) is not an otic form
    ("Antibiotic lock: gentamicin", "", "IV", {"aminoglycoside"}),
])
def test_drug_classes_by_name_code_and_route(tmp_path, drug, atc, route, expected):
    assert classes_of(tmp_path, drug, atc, route) == expected


def test_citrate_by_atc_is_not_repletion_in_the_audit(tmp_path):
    """A low-K episode with low Mg and only magnesium citrate (by ATC) given is not repleted."""
    con = make_db(tmp_path, labs=[lab("p", AT, "K", "3.0", "mmol/L"), lab("p", AT, "MG", "1.2", "mg/dL")],
                  meds=[med("p", AT, "Citroma", atc_code="A12CC04", route="PO")])
    assert con.execute("SELECT low_mg, mg_repleted FROM int_hypokalemia_episodes").fetchall() == [(True, False)]
