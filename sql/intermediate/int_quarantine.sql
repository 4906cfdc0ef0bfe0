-- int_quarantine: every quarantined input row, labs and medications, with its one reason
-- (docs/definitions.md section 2). Grain: one row per quarantined input row, malformed lines of a text
-- file included (reason malformed_row, with ingest's parse_error; their other fields are null).
-- Row-level: exported only to the run's restricted/quarantine.parquet, never into shared outputs.
-- A lab row's texts (time, code, value, unit, trimmed) come from stg_lab_fields by row_id.
with

final as (
    select 'labs' as input_table, s.source_file, s.source_row, s.reason, s.patient_id,
        t.collected_at_text as time_text, t.analyte_code as item, t.value_text, t.unit, s.parse_error
    from stg_lab_rows as s
    inner join stg_lab_fields as t on t.row_id = s.row_id
    where s.status = 'quarantined'
    union all
    select 'medications', source_file, source_row, reason, patient_id,
        start_at_text, drug, cast(null as varchar), cast(null as varchar), parse_error
    from stg_medication_rows where status = 'quarantined'
)

select input_table, source_file, source_row, reason, patient_id, time_text, item, value_text, unit, parse_error
from final
