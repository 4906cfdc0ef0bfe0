-- mart_audit_times: time from a hypokalemia episode's start to the first magnesium check and to
-- magnesium repletion (docs/definitions.md section 5, Audit charts), for quality teams.
-- Grain: one row per (measure, grouping, group_value): measure 'mg_check' (every episode; the time
-- to the first valid MG in [start - 24 h, end + 24 h]) or 'mg_repletion' (low-Mg episodes; the time
-- to the first mg_supplement order in the same span); grouping 'overall', 'month', 'quarter',
-- 'year' (of the episode's start) or 'severity'. Times are seconds from the start (negative: before
-- it). episodes = the measure's denominator; with_time = those with a time (the others were never
-- checked / repleted in the span). q1, median, q3: linear interpolation between order statistics at
-- position (n - 1) * q + 1 (numpy's default, Python's statistics.quantiles method 'inclusive'),
-- from row numbers, since percentile functions are outside the portable subset.
with

episodes as (
    select
        start_month,
        strftime(start_at, '%Y') as start_year,
        strftime(start_at, '%Y') || '-Q' || case
            when cast(strftime(start_at, '%m') as integer) <= 3 then '1'
            when cast(strftime(start_at, '%m') as integer) <= 6 then '2'
            when cast(strftime(start_at, '%m') as integer) <= 9 then '3'
            else '4'
        end as start_quarter,
        severity,
        low_mg,
        epoch(first_mg_in_span_at) - epoch(start_at) as check_seconds,
        epoch(mg_repleted_at) - epoch(start_at) as repletion_seconds
    from int_hypokalemia_episodes
),

measured as (
    select 'mg_check' as measure, start_month, start_quarter, start_year, severity, check_seconds as seconds
    from episodes
    union all
    select 'mg_repletion', start_month, start_quarter, start_year, severity, repletion_seconds
    from episodes
    where low_mg
),

grouped as (
    select measure, 'overall' as grouping, 'all' as group_value, seconds from measured
    union all
    select measure, 'month', start_month, seconds from measured
    union all
    select measure, 'quarter', start_quarter, seconds from measured
    union all
    select measure, 'year', start_year, seconds from measured
    union all
    select measure, 'severity', severity, seconds from measured
),

ranked as (
    select
        measure, grouping, group_value, seconds,
        row_number() over (partition by measure, grouping, group_value order by seconds) as rn,
        count(*) over (partition by measure, grouping, group_value) as n
    from grouped
    where seconds is not null
),

positions as (
    select
        r.*,
        (r.n - 1) * 0.25 + 1 as h1,
        (r.n - 1) * 0.5 + 1 as h2,
        (r.n - 1) * 0.75 + 1 as h3
    from ranked as r
),

quartiles as (
    select
        measure, grouping, group_value,
        max(case when rn = floor(h1) then seconds end) as q1_low,
        max(case when rn = ceil(h1) then seconds end) as q1_high,
        max(h1 - floor(h1)) as q1_frac,
        max(case when rn = floor(h2) then seconds end) as q2_low,
        max(case when rn = ceil(h2) then seconds end) as q2_high,
        max(h2 - floor(h2)) as q2_frac,
        max(case when rn = floor(h3) then seconds end) as q3_low,
        max(case when rn = ceil(h3) then seconds end) as q3_high,
        max(h3 - floor(h3)) as q3_frac
    from positions
    group by measure, grouping, group_value
),

totals as (
    select measure, grouping, group_value, count(*) as episodes, count(seconds) as with_time
    from grouped
    group by measure, grouping, group_value
)

select
    t.measure,
    t.grouping,
    t.group_value,
    cast(t.episodes as bigint) as episodes,
    cast(t.with_time as bigint) as with_time,
    cast(t.episodes - t.with_time as bigint) as without_time,
    q.q1_low + q.q1_frac * (q.q1_high - q.q1_low) as q1_seconds,
    q.q2_low + q.q2_frac * (q.q2_high - q.q2_low) as median_seconds,
    q.q3_low + q.q3_frac * (q.q3_high - q.q3_low) as q3_seconds
from totals as t
left join quartiles as q
    on q.measure = t.measure and q.grouping = t.grouping and q.group_value = t.group_value
