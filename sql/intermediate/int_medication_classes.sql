-- int_medication_classes: loaded medication orders and the drug classes they belong to
-- (docs/definitions.md section 6). Grain: one row per (medication order, drug class); an order in no
-- class is absent, an order in two classes appears twice.
-- Matching (seed drug_classes, which lists every generic name, spelling and abbreviation): the
-- name, case-insensitively, as a whole word or phrase in the drug name as written (salts and
-- strengths around it are ignored: "Pantoprazole Sodium", "Magnesium Oxide 400 mg"), or the ATC
-- code by prefix. Exclusions (seed drug_exclusions) win over both, whatever identified the class:
-- by a name starting a word ("magnesium citrate", "ob-gyn", "ophth"), by ATC prefix (A12CC04,
-- magnesium citrate) or by route ("both eyes", "tp"); class `any` excludes the order from every
-- class (ophthalmic, otic and topical forms are not systemic exposures).
-- Exposure window in epoch seconds: [start_s, exposure_end_s], where a missing stop_at means
-- start_at + exposure_default_hours (docs/definitions.md section 6).
with

medications as (
    select
        row_id, patient_id, start_at, stop_at, drug, lower(drug) as drug_lower, atc_code, route,
        coalesce(lower(route), '') as route_key
    from stg_medication_rows
    where status = 'loaded'
),

drug_names as (
    -- classify each distinct name, code and route once (a regular expression per name and
    -- pattern), not each order
    select distinct drug_lower from medications
),

atc_codes as (
    select distinct atc_code from medications where atc_code is not null
),

route_keys as (
    select distinct route_key from medications
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

matches as (
    select m.row_id, n.drug_class
    from medications as m
    join name_classes as n on n.drug_lower = m.drug_lower
    union
    select m.row_id, a.drug_class
    from medications as m
    join atc_classes as a on a.atc_code = m.atc_code
),

excluded_names as (
    select n.drug_lower, e.drug_class
    from drug_names as n
    join ref_drug_exclusions as e
        on e.match_type = 'name' and regexp_matches(n.drug_lower, concat('(^|[^a-z])', e.pattern))
),

excluded_codes as (
    select a.atc_code, e.drug_class
    from atc_codes as a
    join ref_drug_exclusions as e on e.match_type = 'atc' and a.atc_code like concat(e.pattern, '%')
),

excluded_routes as (
    select r.route_key, e.drug_class
    from route_keys as r
    join ref_drug_exclusions as e on e.match_type = 'route' and r.route_key = e.pattern
),

exclusions as (
    select m.row_id, x.drug_class
    from medications as m
    join excluded_names as x on x.drug_lower = m.drug_lower
    union
    select m.row_id, x.drug_class
    from medications as m
    join excluded_codes as x on x.atc_code = m.atc_code
    union
    select m.row_id, x.drug_class
    from medications as m
    join excluded_routes as x on x.route_key = m.route_key
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
    left join exclusions as e
        on e.row_id = x.row_id and (e.drug_class = x.drug_class or e.drug_class = 'any')
    where e.row_id is null
)

select row_id, patient_id, drug_class, drug, route, start_at, stop_at, start_s, exposure_end_s from final
