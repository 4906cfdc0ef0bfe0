-- int_hypokalemia_episodes: hypokalemia episodes and the magnesium-check audit flags
-- (docs/definitions.md section 5). Grain: one row per episode. Row-level (restricted/episodes.parquet), never in HTML.
-- Episode: a patient's low K results (int_lab_flags.is_hypokalemia) where consecutive results
-- <= episode_gap_hours apart share an episode; start = first low K, end = last low K.
-- Severity by the lowest K: severe < 2.5, moderate 2.5 - < 3.0, mild 3.0 - < 3.5 (params).
-- mg_checked: any valid MG in [start - 24 h, start + 24 h]; low_mg: any hypomagnesemia result in
-- [start - 24 h, end + 24 h]; mg_repleted: an mg_supplement order starting in [start - 24 h,
-- end + 24 h]; refractory: a k_supplement started in [start, end] and a low K >= 24 h after the
-- first such start, within the episode (i.e. end >= first start + 24 h). All bounds inclusive.
-- The times that justify each flag are kept (first_mg_at, ...) so any episode can be audited.
-- For the review worklist and the time-to-check measures (docs/definitions.md section 5, Audit
-- charts): encounter_id of the first low K; first_mg_in_span_at, the first valid MG in
-- [start - 24 h, end + 24 h] (checked or not); k_supplement_at, the first k_supplement order
-- starting in [start - 24 h, end + 24 h] (k_supplement_given).
-- Linear: the "first event at or after an anchor" comes from running minima over a time-ordered
-- union of anchors and events (anchors sort first at equal times), never from a range join.
with

low_k as (
    select patient_id, row_id, collected_at, epoch(collected_at) as at_s, value_canonical, care_unit,
        result_id_num, result_id
    from int_lab_flags
    where is_hypokalemia
),

gaps as (
    select
        l.*,
        case
            when lag(l.at_s) over (partition by l.patient_id order by l.at_s, l.row_id) is null then 1
            when l.at_s - lag(l.at_s) over (partition by l.patient_id order by l.at_s, l.row_id)
                > p.episode_gap_seconds then 1
            else 0
        end as starts_episode
    from low_k as l
    cross join params as p
),

numbered as (
    select
        g.*,
        sum(g.starts_episode) over (
            partition by g.patient_id order by g.at_s, g.row_id rows between unbounded preceding and current row
        ) as episode_number,
        row_number() over (partition by g.patient_id order by g.at_s, g.row_id) as k_order
    from gaps as g
),

episodes as (
    select
        n.patient_id,
        n.episode_number,
        min(n.collected_at) as start_at,
        max(n.collected_at) as end_at,
        min(n.value_canonical) as lowest_k_mmol_l,
        count(*) as low_k_results,
        min(n.k_order) as first_k_order
    from numbered as n
    group by n.patient_id, n.episode_number
),

episode_units as (
    select e.*, n.care_unit, r.encounter_id
    from episodes as e
    join numbered as n on n.patient_id = e.patient_id and n.k_order = e.first_k_order
    left join int_lab_results as r on r.row_id = n.row_id
),

episode_patients as (
    select distinct patient_id from episodes
),

events as (
    -- only patients with an episode: nobody else's results can fall in an episode's window
    select v.patient_id, v.at, v.kind
    from (
        select patient_id, collected_at as at, 'mg' as kind from int_lab_flags where analyte = 'MG'
        union all
        select patient_id, collected_at, 'hypomg' from int_lab_flags where is_hypomagnesemia
        union all
        select patient_id, start_at, drug_class from int_medication_classes
        where drug_class in ('mg_supplement', 'k_supplement')
    ) as v
    join episode_patients as ep on ep.patient_id = v.patient_id
),

anchors as (
    -- window anchor at start - 24 h (Mg checks, low Mg, repletion) and at start (K supplements)
    select e.patient_id, e.episode_number, e.start_at - p.mg_check_seconds * interval 1 second as at,
        'before_start' as anchor
    from episodes as e cross join params as p
    union all
    select e.patient_id, e.episode_number, e.start_at, 'start'
    from episodes as e
),

timeline as (
    select a.patient_id, a.at, 0 as is_event, a.episode_number, a.anchor, cast(null as varchar) as kind
    from anchors as a
    union all
    select v.patient_id, v.at, 1, cast(null as bigint), cast(null as varchar), v.kind
    from events as v
),

firsts as (
    select
        t.patient_id,
        t.episode_number,
        t.anchor,
        min(case when t.kind = 'mg' then t.at end) over w_after as first_mg_at,
        min(case when t.kind = 'hypomg' then t.at end) over w_after as first_hypomg_at,
        min(case when t.kind = 'mg_supplement' then t.at end) over w_after as first_mg_supplement_at,
        min(case when t.kind = 'k_supplement' then t.at end) over w_after as first_k_supplement_at,
        t.is_event
    from timeline as t
    window w_after as (
        partition by t.patient_id order by t.at, t.is_event
        rows between current row and unbounded following
    )
),

anchored as (
    -- each episode has one anchor row of each kind: fold them into one row (no self-join)
    select
        f.patient_id,
        f.episode_number,
        max(case when f.anchor = 'before_start' then f.first_mg_at end) as first_mg_at,
        max(case when f.anchor = 'before_start' then f.first_hypomg_at end) as first_hypomg_at,
        max(case when f.anchor = 'before_start' then f.first_mg_supplement_at end) as first_mg_supplement_at,
        max(case when f.anchor = 'start' then f.first_k_supplement_at end) as first_k_supplement_at,
        max(case when f.anchor = 'before_start' then f.first_k_supplement_at end) as k_supplement_near_at
    from firsts as f
    where f.is_event = 0
    group by f.patient_id, f.episode_number
),

final as (
    select
        e.patient_id,
        e.episode_number,
        e.start_at,
        e.end_at,
        strftime(e.start_at, '%Y-%m') as start_month,
        e.lowest_k_mmol_l,
        case
            when e.lowest_k_mmol_l < p.severe_hypokalemia_mmol_l then 'severe'
            when e.lowest_k_mmol_l < p.moderate_hypokalemia_mmol_l then 'moderate'
            else 'mild'
        end as severity,
        e.low_k_results,
        e.care_unit,
        case when a.first_mg_at <= e.start_at + w.mg_check then a.first_mg_at end as mg_checked_at,
        case when a.first_hypomg_at <= e.end_at + w.mg_check then a.first_hypomg_at end as low_mg_at,
        case when a.first_mg_supplement_at <= e.end_at + w.mg_check then a.first_mg_supplement_at end
            as mg_repleted_at,
        case when a.first_k_supplement_at <= e.end_at then a.first_k_supplement_at end as first_k_supplement_at,
        e.encounter_id,
        case when a.first_mg_at <= e.end_at + w.mg_check then a.first_mg_at end as first_mg_in_span_at,
        case when a.k_supplement_near_at <= e.end_at + w.mg_check then a.k_supplement_near_at end as k_supplement_at,
        w.refractory_after
    from episode_units as e
    join anchored as a on a.patient_id = e.patient_id and a.episode_number = e.episode_number
    cross join params as p
    cross join (
        select p2.mg_check_seconds * interval 1 second as mg_check,
            p2.refractory_after_seconds * interval 1 second as refractory_after
        from params as p2
    ) as w
)

select
    patient_id, episode_number, start_at, end_at, start_month, lowest_k_mmol_l, severity, low_k_results,
    care_unit,
    mg_checked_at is not null as mg_checked, mg_checked_at,
    low_mg_at is not null as low_mg, low_mg_at,
    mg_repleted_at is not null as mg_repleted, mg_repleted_at,
    first_k_supplement_at,
    coalesce(first_k_supplement_at is not null and end_at >= first_k_supplement_at + refractory_after, false)
        as refractory,
    encounter_id,
    first_mg_in_span_at,
    k_supplement_at,
    k_supplement_at is not null as k_supplement_given
from final
