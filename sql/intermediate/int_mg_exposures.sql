-- int_mg_exposures: for every magnesium result and drug class, whether the patient was exposed at
-- the result's collection time t (docs/definitions.md section 6): an order of the class with
-- start_at <= t <= coalesce(stop_at, start_at + exposure_default_hours).
-- Grain: one row per (magnesium result, drug class of seed drug_classes).
-- Linear and portable (docs/portable-sql.md rule 10): per class and patient, one time-ordered union of
-- order starts and magnesium results; a result is exposed when the running maximum of the
-- exposure ends of the orders started at or before t reaches t (orders sort before results at
-- equal times, so a start at exactly t counts).
with

mg as (
    select row_id, patient_id, collected_at, epoch(collected_at) as at_s, is_hypomagnesemia
    from int_lab_flags where analyte = 'MG'
),

classes as (
    select distinct drug_class from ref_drug_classes
),

timeline as (
    select c.drug_class, m.patient_id, m.at_s, 1 as is_result, m.row_id, m.is_hypomagnesemia,
        cast(null as double) as exposure_end_s
    from mg as m cross join classes as c
    union all
    select o.drug_class, o.patient_id, o.start_s, 0, o.row_id, false, o.exposure_end_s
    from int_medication_classes as o
),

running as (
    select
        t.*,
        max(t.exposure_end_s) over (
            partition by t.drug_class, t.patient_id
            order by t.at_s, t.is_result, t.row_id
            rows between unbounded preceding and current row
        ) as latest_exposure_end_s
    from timeline as t
),

final as (
    select
        r.row_id,
        r.patient_id,
        r.drug_class,
        r.is_hypomagnesemia,
        coalesce(r.latest_exposure_end_s >= r.at_s, false) as is_exposed
    from running as r
    where r.is_result = 1
)

select row_id, patient_id, drug_class, is_hypomagnesemia, is_exposed from final
