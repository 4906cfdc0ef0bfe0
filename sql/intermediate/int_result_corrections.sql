-- int_result_corrections: every lab result replaced by a later extract (incremental loads; analysis
-- docs/definitions.md section 2, Row accounting: nothing is lost, a correction is recorded beside what it replaced).
-- Grain: one row per superseded input row, beside the row that replaced it (the last row, in load
-- order, with the same source result_id). Row-level: restricted/corrections.parquet only.
-- Only a given result id supersedes anything (stg_lab_rows), so given_result_id is the result's id here.
with

superseded as (
    select * from stg_lab_rows where status = 'superseded'
),

final as (
    select
        s.given_result_id as result_id,
        n.patient_id,
        coalesce(n.analyte, s.analyte) as analyte,
        s.source_file as old_source_file,
        s.source_row as old_source_row,
        s.value_text as old_value,
        s.unit as old_unit,
        n.source_file as new_source_file,
        n.source_row as new_source_row,
        n.value_text as new_value,
        n.unit as new_unit,
        n.status as new_status
    from superseded as s
    join stg_lab_rows as n on n.row_id = s.latest_row_id
)

select
    result_id, patient_id, analyte, old_source_file, old_source_row, old_value, old_unit,
    new_source_file, new_source_row, new_value, new_unit, new_status
from final
