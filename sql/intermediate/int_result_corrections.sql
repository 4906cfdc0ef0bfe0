-- int_result_corrections: every lab result replaced by a later extract (incremental loads; analysis
-- docs/definitions.md section 2, Row accounting: nothing is lost, a correction is recorded beside what it replaced).
-- Grain: one row per superseded input row, beside the row that replaced it (the last row, in load
-- order, with the same source result_id). Row-level: restricted/corrections.parquet only.
-- Only a given result id supersedes anything (stg_lab_rows), so given_result_id is the result's id here.
-- Values and units as given (trimmed) come from stg_lab_fields by row_id.
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
        st.value_text as old_value,
        st.unit as old_unit,
        n.source_file as new_source_file,
        n.source_row as new_source_row,
        nt.value_text as new_value,
        nt.unit as new_unit,
        n.status as new_status
    from superseded as s
    join stg_lab_rows as n on n.row_id = s.latest_row_id
    join stg_lab_fields as st on st.row_id = s.row_id
    join stg_lab_fields as nt on nt.row_id = n.row_id
)

select
    result_id, patient_id, analyte, old_source_file, old_source_row, old_value, old_unit,
    new_source_file, new_source_row, new_value, new_unit, new_status
from final
