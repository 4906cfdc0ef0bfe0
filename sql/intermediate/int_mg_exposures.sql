-- int_mg_exposures: for every magnesium result and drug class, whether the patient was exposed at
-- the result's collection time t (docs/definitions.md section 6): an order of the class with
-- start_at <= t <= coalesce(stop_at, start_at + exposure_default_hours).
-- Grain: one row per (magnesium result, drug class of seed drug_classes).
-- Linear and portable (docs/portable-sql.md rule 10): per class and patient with orders of that class,
-- one time-ordered union of order starts and magnesium results; a result is exposed when the running
-- maximum of the exposure ends of the orders started at or before t reaches t (orders sort before
-- results at equal times, so a start at exactly t counts). A patient without orders of a class is
-- unexposed to it without a sort.
with

mg as (
    select row_id, patient_id, collected_at, epoch(collected_at) as at_s, is_hypomagnesemia
    from int_lab_flags where analyte = 'MG'
),

classes as (
    select distinct drug_class from ref_drug_classes
),

ordered_classes as (
    select distinct drug_class, patient_id from int_medication_classes
),

timeline as (
    select c.drug_class, m.patient_id, m.at_s, 1 as is_result, m.row_id, cast(null as double) as exposure_end_s
    from mg as m
    inner join ordered_classes as c on c.patient_id = m.patient_id
    union all
    select o.drug_class, o.patient_id, o.start_s, 0, o.row_id, o.exposure_end_s
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

exposed as (
    select row_id, drug_class
    from running
    where is_result = 1 and latest_exposure_end_s >= at_s
),

final as (
    select
        m.row_id,
        m.patient_id,
        c.drug_class,
        m.is_hypomagnesemia,
        e.row_id is not null as is_exposed
    from mg as m
    cross join classes as c
    left join exposed as e on e.row_id = m.row_id and e.drug_class = c.drug_class
)

select row_id, patient_id, drug_class, is_hypomagnesemia, is_exposed from final
