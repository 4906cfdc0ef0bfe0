-- mart_audit_reflex: the counts behind the reflex-testing simulator (docs/definitions.md section 5,
-- Reflex testing), by potassium value, so that any candidate threshold X sums the rows below it.
-- Grain: one row per distinct low potassium value (mmol/L) found as a low K result or as an
-- episode's lowest K. k_results: low K results of that value; k_results_without_mg: those with no
-- valid MG of the same patient within +/- the same-draw window (a reflex rule would add a test to
-- each); episodes: episodes whose lowest K is that value, with their severity; episodes_checked:
-- of those, Mg checked; episodes_checked_low_mg: checked and low Mg found. The same-draw test uses
-- running extremes over a time-ordered union of K and MG results (MG first at equal times), never
-- a range join.
with

low_k_patients as (
    select distinct patient_id from int_lab_flags where is_hypokalemia
),

timeline as (
    select patient_id, epoch(collected_at) as at_s, 1 as is_k, value_canonical as k_value
    from int_lab_flags
    where is_hypokalemia
    union all
    select f.patient_id, epoch(f.collected_at), 0, cast(null as double)
    from int_lab_flags as f
    join low_k_patients as lp on lp.patient_id = f.patient_id
    where f.analyte = 'MG'
),

nearest as (
    select
        t.k_value,
        t.at_s,
        t.is_k,
        max(case when t.is_k = 0 then t.at_s end) over (
            partition by t.patient_id order by t.at_s, t.is_k rows between unbounded preceding and current row
        ) as previous_mg_s,
        min(case when t.is_k = 0 then t.at_s end) over (
            partition by t.patient_id order by t.at_s, t.is_k rows between current row and unbounded following
        ) as next_mg_s
    from timeline as t
),

results as (
    select
        n.k_value,
        count(*) as k_results,
        sum(case
            when n.previous_mg_s >= n.at_s - p.same_draw_seconds then 0
            when n.next_mg_s <= n.at_s + p.same_draw_seconds then 0
            else 1
        end) as k_results_without_mg
    from nearest as n
    cross join params as p
    where n.is_k = 1
    group by n.k_value
),

episodes as (
    select
        lowest_k_mmol_l as k_value,
        min(severity) as severity,
        count(*) as episodes,
        sum(case when mg_checked then 1 else 0 end) as episodes_checked,
        sum(case when mg_checked and low_mg then 1 else 0 end) as episodes_checked_low_mg
    from int_hypokalemia_episodes
    group by lowest_k_mmol_l
),

values_ as (
    select k_value from results
    union
    select k_value from episodes
)

select
    v.k_value as k_value_mmol_l,
    e.severity,
    cast(coalesce(r.k_results, 0) as bigint) as k_results,
    cast(coalesce(r.k_results_without_mg, 0) as bigint) as k_results_without_mg,
    cast(coalesce(e.episodes, 0) as bigint) as episodes,
    cast(coalesce(e.episodes_checked, 0) as bigint) as episodes_checked,
    cast(coalesce(e.episodes_checked_low_mg, 0) as bigint) as episodes_checked_low_mg
from values_ as v
left join results as r on r.k_value = v.k_value
left join episodes as e on e.k_value = v.k_value
