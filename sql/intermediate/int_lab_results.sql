-- int_lab_results: loaded lab results in canonical units (docs/definitions.md section 2).
-- Grain: one row per loaded lab result (stg_lab_rows with status 'loaded'); row_id is unique.
-- Only what the analysis reads: each result's provenance stays under the same row_id, as read (file,
-- row, unit factor, fluid) in stg_lab_rows and as written (value text, unit, trimmed) in
-- stg_lab_fields. A view: a stored copy of every loaded row cost more to write than its readers'
-- filter on stg_lab_rows.status costs them.
-- result_id is the id the file gave, else the row position (stg_lab_rows, Result id).
-- result_id_num holds the result id as a number only when every loaded result id is numeric
-- (int_result_id_kind), so that tie-breaks compare ids "as numbers when all are numeric"
-- (docs/definitions.md section 4, Levels).
with

loaded as (
    select
        s.*,
        coalesce(s.given_result_id, cast(s.source_row as varchar)) as result_id
    from stg_lab_rows as s
    where s.status = 'loaded'
),

final as (
    select
        l.row_id,
        l.patient_id,
        l.collected_at,
        l.analyte,
        l.value_canonical,
        l.censored,
        l.result_id,
        case when k.all_numeric then try_cast(l.result_id as double) end as result_id_num,
        l.specimen_id,
        l.encounter_id,
        l.care_unit
    from loaded as l
    cross join int_result_id_kind as k
)

select * from final
