-- mart_attrition: rows and patients at each step from input to analysis (STYLE.md: an attrition
-- table at each step; docs/definitions.md sections 2 and 4). Grain: one row per step, in step order.
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
    from int_partner_windows as pw
    cross join params as p
    where pw.pair_direction = 'from_mg' and pw.abnormality = 'hypokalemia' and pw.is_hypomagnesemia
        and pw.nearest_partner_s <= p.cooccurrence_seconds
)

select step_order, step, cast(row_count as bigint) as row_count, cast(patient_count as bigint) as patient_count
from steps
