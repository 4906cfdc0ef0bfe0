-- int_medication_classes: loaded medication orders and the drug classes they belong to
-- (analysis plan section 6). Grain: one row per (medication order, drug class); an order in no
-- class is absent, an order in two classes appears twice.
-- Matching (seed drug_classes): the generic name, case-insensitively, as a whole word or phrase in
-- the drug name as written (salts and strengths around it are ignored: "Pantoprazole Sodium",
-- "Magnesium Oxide 400 mg", "Potassium Chloride Replacement (Critical Care and Oncology)"), or the
-- ATC code by prefix. Exclusions (seed drug_exclusions) win over both: magnesium citrate (a bowel
-- preparation) and obstetric magnesium sulfate ("Magnesium Sulfate (OB-GYN)") are not mg_supplement.
-- Exposure window in epoch seconds: [start_s, exposure_end_s], where a missing stop_at means
-- start_at + exposure_default_hours (plan section 6).
with

medications as (
    select row_id, patient_id, start_at, stop_at, drug, lower(drug) as drug_lower, atc_code, route
    from stg_medication_rows
    where status = 'loaded'
),

drug_names as (
    -- classify each distinct name once (a regular expression per name and pattern), not each order
    select distinct drug_lower from medications
),

atc_codes as (
    select distinct atc_code from medications where atc_code is not null
),

name_classes as (
    select n.drug_lower, c.drug_class
    from drug_names as n
    join ref_drug_classes as c
        on c.match_type = 'name'
        and regexp_matches(n.drug_lower, concat('(^|[^a-z])', c.pattern, '([^a-z]|$)'))
),

atc_classes as (
    select a.atc_code, c.drug_class
    from atc_codes as a
    join ref_drug_classes as c
        on c.match_type = 'atc' and a.atc_code like concat(c.pattern, '%')
),

excluded_names as (
    select distinct n.drug_lower, e.drug_class
    from drug_names as n
    join ref_drug_exclusions as e on strpos(n.drug_lower, e.pattern) > 0
),

matches as (
    select m.row_id, n.drug_class, m.drug_lower
    from medications as m
    join name_classes as n on n.drug_lower = m.drug_lower
    union
    select m.row_id, a.drug_class, m.drug_lower
    from medications as m
    join atc_classes as a on a.atc_code = m.atc_code
),

final as (
    select
        m.row_id,
        m.patient_id,
        x.drug_class,
        m.drug,
        m.route,
        m.start_at,
        m.stop_at,
        epoch(m.start_at) as start_s,
        coalesce(epoch(m.stop_at), epoch(m.start_at) + p.exposure_default_seconds) as exposure_end_s
    from matches as x
    join medications as m on m.row_id = x.row_id
    cross join params as p
    left join excluded_names as e on e.drug_lower = x.drug_lower and e.drug_class = x.drug_class
    where e.drug_lower is null
)

select row_id, patient_id, drug_class, drug, route, start_at, stop_at, start_s, exposure_end_s from final
