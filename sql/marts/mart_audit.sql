-- mart_audit: magnesium-check audit counts in hypokalemia episodes (analysis plan section 5,
-- Measures), for quality teams. Grain: one row per (grouping, group): grouping 'overall' (one row),
-- 'month' (month of episode start), 'severity' (mild / moderate / severe) and 'care_unit' (where
-- the input has one). Measures: mg_checked / episodes; mg_repleted / low_mg_episodes;
-- refractory_mg_checked / refractory_episodes. Rates and intervals are added in analyse.py.
with

episodes as (
    select * from int_hypokalemia_episodes
),

grouped as (
    select 'overall' as grouping, 'all' as group_value, * from episodes
    union all
    select 'month', start_month, * from episodes
    union all
    select 'severity', severity, * from episodes
    union all
    select 'care_unit', care_unit, * from episodes where care_unit is not null
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
