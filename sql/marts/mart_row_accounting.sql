-- mart_row_accounting: what happened to every input row, per source file (docs/definitions.md section 2,
-- Row accounting). Grain: one row per (table, source file). Invariant, checked by validation:
-- rows_read = rows_loaded + rows_out_of_scope + rows_quarantined + rows_superseded (the last is
-- non-zero only where a later extract corrected a result of this file). rows_read counts every
-- row of raw_labs / raw_medications, malformed lines of a text file included (quarantined as
-- malformed_row by the staging models).
with

lab_files as (
    select source_file, count(*) as rows_read from raw_labs group by source_file
),

lab_fates as (
    select source_file,
        sum(case when status = 'loaded' then 1 else 0 end) as rows_loaded,
        sum(case when status = 'out_of_scope' then 1 else 0 end) as rows_out_of_scope,
        sum(case when status = 'quarantined' then 1 else 0 end) as rows_quarantined,
        sum(case when status = 'superseded' then 1 else 0 end) as rows_superseded
    from stg_lab_rows group by source_file
),

med_files as (
    select source_file, count(*) as rows_read from raw_medications group by source_file
),

med_fates as (
    select source_file,
        sum(case when status = 'loaded' then 1 else 0 end) as rows_loaded,
        0 as rows_out_of_scope,
        sum(case when status = 'quarantined' then 1 else 0 end) as rows_quarantined,
        0 as rows_superseded
    from stg_medication_rows group by source_file
),

final as (
    select 'labs' as input_table, f.source_file, f.rows_read,
        coalesce(s.rows_loaded, 0) as rows_loaded,
        coalesce(s.rows_out_of_scope, 0) as rows_out_of_scope,
        coalesce(s.rows_quarantined, 0) as rows_quarantined,
        coalesce(s.rows_superseded, 0) as rows_superseded
    from lab_files as f left join lab_fates as s on s.source_file = f.source_file
    union all
    select 'medications', f.source_file, f.rows_read,
        coalesce(s.rows_loaded, 0), coalesce(s.rows_out_of_scope, 0), coalesce(s.rows_quarantined, 0),
        coalesce(s.rows_superseded, 0)
    from med_files as f left join med_fates as s on s.source_file = f.source_file
)

select
    input_table,
    source_file,
    cast(rows_read as bigint) as rows_read,
    cast(rows_loaded as bigint) as rows_loaded,
    cast(rows_out_of_scope as bigint) as rows_out_of_scope,
    cast(rows_quarantined as bigint) as rows_quarantined,
    cast(rows_superseded as bigint) as rows_superseded
from final
