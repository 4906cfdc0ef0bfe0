-- mart_audit: magnesium-check audit counts in hypokalemia episodes (docs/definitions.md section 5,
-- Measures), for quality teams. Grain: one row per (grouping, group): grouping 'overall' (one row),
-- 'month' (month of episode start), 'severity' (mild / moderate / severe) and 'care_unit' (where
-- the input has one). Measures: mg_checked / episodes; mg_repleted / low_mg_episodes;
-- refractory_mg_checked / refractory_episodes. Rates and intervals are added in analyse.py.
-- Care units are free text: a unit appears under its own name only where it holds episodes of at
-- least params.min_cell_size distinct patients; rarer units are grouped as 'other' (docs/definitions.md section 7),
-- so a rare unit's name (which could identify someone) never reaches a shared output. With
-- min_cell_size = 0 nothing is grouped.
with

episodes as (
    select * from int_hypokalemia_episodes
),

unit_patients as (
    select care_unit, count(distinct patient_id) as patients
    from episodes
    where care_unit is not null
    group by care_unit
),

unit_episodes as (
    select
        case when u.patients >= p.min_cell_size then e.care_unit else 'other' end as shown_unit,
        e.mg_checked, e.low_mg, e.mg_repleted, e.refractory
    from episodes as e
    join unit_patients as u on u.care_unit = e.care_unit
    cross join params as p
),

grouped as (
    select 'overall' as grouping, 'all' as group_value, mg_checked, low_mg, mg_repleted, refractory from episodes
    union all
    select 'month', start_month, mg_checked, low_mg, mg_repleted, refractory from episodes
    union all
    select 'severity', severity, mg_checked, low_mg, mg_repleted, refractory from episodes
    union all
    select 'care_unit', shown_unit, mg_checked, low_mg, mg_repleted, refractory from unit_episodes
),

final as (
    select
        grouping,
        group_value,
        count(*) as episodes,
        sum(case when mg_checked then 1 else 0 end) as mg_checked,
        sum(case when low_mg then 1 else 0 end) as low_mg_episodes,
        sum(case when low_mg and mg_repleted then 1 else 0 end) as mg_repleted,
        sum(case when refractory then 1 else 0 end) as refractory_episodes,
        sum(case when refractory and mg_checked then 1 else 0 end) as refractory_mg_checked
    from grouped
    group by grouping, group_value
)

select
    grouping,
    group_value,
    cast(episodes as bigint) as episodes,
    cast(mg_checked as bigint) as mg_checked,
    cast(low_mg_episodes as bigint) as low_mg_episodes,
    cast(mg_repleted as bigint) as mg_repleted,
    cast(refractory_episodes as bigint) as refractory_episodes,
    cast(refractory_mg_checked as bigint) as refractory_mg_checked
from final
