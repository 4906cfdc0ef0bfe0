-- int_lab_results: loaded lab results in canonical units (docs/definitions.md section 2).
-- Grain: one row per loaded lab result (stg_lab_rows with status 'loaded'); row_id is unique.
-- result_id_num holds the result id as a number only when every loaded result id is numeric
-- (int_result_id_kind), so that tie-breaks compare ids "as numbers when all are numeric"
-- (docs/definitions.md section 4, Levels).
with

loaded as (
    select * from stg_lab_rows where status = 'loaded'
),

final as (
    select
        l.row_id,
        l.source_file,
        l.source_row,
        l.patient_id,
        l.collected_at,
        l.analyte,
        l.fluid_class,
        l.value_text,
        l.value_num,
        l.censored,
        l.unit,
        l.unit_factor,
        l.value_canonical,
        l.result_id,
        case when k.all_numeric then try_cast(l.result_id as double) end as result_id_num,
        l.specimen_id,
        l.encounter_id,
        l.care_unit
    from loaded as l
    cross join int_result_id_kind as k
)

select * from final
