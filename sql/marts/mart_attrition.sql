-- mart_attrition: rows and patients at each step from input to analysis (STYLE.md: an attrition
-- table at each step; docs/definitions.md sections 2 and 4). Grain: one row per step, in step order.
-- Step 6 reads the co-occurrence window (the last of param_windows) without the specimen rule.
with

steps as (
    select 1 as step_order, 'lab rows read' as step, count(*) as row_count,
        count(distinct nullif(trim(patient_id), '')) as patient_count
    from raw_labs
    union all
    select 2, 'in scope (analyte and fluid used by the analysis)', count(*), count(distinct patient_id)
    from stg_lab_rows where status <> 'out_of_scope'
    union all
    select 3, 'loaded (not quarantined)', count(*), count(distinct patient_id)
    from int_lab_results
    union all
    select 4, 'magnesium results', count(*), count(distinct patient_id)
    from int_lab_flags where analyte = 'MG'
    union all
    select 5, 'hypomagnesemia results', count(*), count(distinct patient_id)
    from int_lab_flags where is_hypomagnesemia
    union all
    select 6, 'hypomagnesemia results with potassium measured within the co-occurrence window',
        count(*), count(distinct patient_id)
    from int_index_windows as i
    inner join (select max(window_id) as window_id from param_windows) as w on w.window_id = i.window_id
    inner join param_abnormality_definitions as d on d.abnormality = 'hypokalemia'
    where i.index_class = 'hypo' and (i.window_bits & d.measured_bit) <> 0
)

select step_order, step, cast(row_count as bigint) as row_count, cast(patient_count as bigint) as patient_count
from steps
