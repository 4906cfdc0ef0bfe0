-- mart_cooccurrence: numerators and denominators of every co-occurrence row of the contract
-- (analysis plan section 4; contract.md results.json `cooccurrence`).
-- Grain: one row per abnormality x direction x window x level (4 x 3 x 2 x 2 = 48 rows, always all
-- present: a skeleton of the seeds, zero where nothing was found).
--   abnormality_given_hypomg / _given_normomg: index = hypo-/normomagnesemia results; denominator =
--     those with X measured in the window; numerator = those with X abnormal in it.
--   hypomg_given_abnormality: index = results abnormal for X; denominator = those with MG measured;
--     numerator = those with hypomagnesemia in the window. index_count / denominator gives
--     mg_tested_fraction (share of index results, or patients, with magnesium measured).
--   result level: every index result; patient level: each patient once, by the earliest index
--     result with the partner measured (ties: smallest result id, numerically if all numeric).
-- Index results come from int_cooccurrence_index (configured hypocalcemia definition).
-- Bounded memory at 100M rows: both windows are counted in one grouping per patient, and each
-- patient's first index result is found by joining back on its earliest time (a row_number only
-- over the rows at that time, about one per patient and window), not by numbering every index
-- result.
with

by_patient as (
    select
        direction, abnormality, patient_id,
        count(*) as index_count,
        sum(case when measured_same_draw then 1 else 0 end) as same_draw_denominator,
        sum(case when measured_same_draw and abnormal_same_draw then 1 else 0 end) as same_draw_numerator,
        sum(case when measured_24h then 1 else 0 end) as h24_denominator,
        sum(case when measured_24h and abnormal_24h then 1 else 0 end) as h24_numerator,
        min(case when measured_same_draw then collected_at end) as same_draw_first_at,
        min(case when measured_24h then collected_at end) as h24_first_at
    from int_cooccurrence_index
    group by direction, abnormality, patient_id
),

by_group as (
    select
        direction, abnormality,
        count(*) as patient_index_count,
        sum(index_count) as index_count,
        sum(same_draw_denominator) as same_draw_denominator,
        sum(same_draw_numerator) as same_draw_numerator,
        sum(h24_denominator) as h24_denominator,
        sum(h24_numerator) as h24_numerator
    from by_patient
    group by direction, abnormality
),

result_level as (
    select g.direction, g.abnormality, w.window_name, 'result' as level,
        g.index_count,
        case when w.window_name = 'same_draw' then g.same_draw_denominator else g.h24_denominator end
            as denominator,
        case when w.window_name = 'same_draw' then g.same_draw_numerator else g.h24_numerator end
            as numerator
    from by_group as g
    cross join ref_cooccurrence_windows as w
),

first_times as (
    -- each patient's earliest index time with the partner measured, per window
    select b.direction, b.abnormality, w.window_name, b.patient_id,
        case when w.window_name = 'same_draw' then b.same_draw_first_at else b.h24_first_at end as first_at
    from by_patient as b
    cross join ref_cooccurrence_windows as w
),

at_first_time as (
    select f.direction, f.abnormality, f.window_name, f.patient_id,
        i.result_id_num, i.result_id, i.row_id,
        case when f.window_name = 'same_draw' then i.abnormal_same_draw else i.abnormal_24h end as is_abnormal
    from int_cooccurrence_index as i
    inner join first_times as f
        on f.direction = i.direction and f.abnormality = i.abnormality
        and f.patient_id = i.patient_id and f.first_at = i.collected_at
    where case when f.window_name = 'same_draw' then i.measured_same_draw else i.measured_24h end
),

patient_first as (
    -- ties at the earliest time: smallest result id (numerically when all ids are numeric)
    select a.*,
        row_number() over (
            partition by a.direction, a.abnormality, a.window_name, a.patient_id
            order by a.result_id_num, a.result_id, a.row_id
        ) as index_order
    from at_first_time as a
),

patient_counts as (
    select direction, abnormality, window_name,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from patient_first
    where index_order = 1
    group by direction, abnormality, window_name
),

patient_level as (
    select g.direction, g.abnormality, w.window_name, 'patient' as level,
        g.patient_index_count as index_count,
        coalesce(pc.denominator, 0) as denominator,
        coalesce(pc.numerator, 0) as numerator
    from by_group as g
    cross join ref_cooccurrence_windows as w
    left join patient_counts as pc
        on pc.direction = g.direction and pc.abnormality = g.abnormality
        and pc.window_name = w.window_name
),

counted as (
    select * from result_level
    union all
    select * from patient_level
),

skeleton as (
    select distinct a.abnormality, d.direction, w.window_name, l.level
    from ref_abnormality_definitions as a
    cross join ref_cooccurrence_directions as d
    cross join ref_cooccurrence_windows as w
    cross join ref_analysis_levels as l
),

final as (
    select
        s.abnormality,
        s.direction,
        s.window_name,
        s.level,
        cast(coalesce(c.numerator, 0) as bigint) as numerator,
        cast(coalesce(c.denominator, 0) as bigint) as denominator,
        cast(coalesce(c.index_count, 0) as bigint) as index_count
    from skeleton as s
    left join counted as c
        on c.abnormality = s.abnormality and c.direction = s.direction
        and c.window_name = s.window_name and c.level = s.level
)

select abnormality, direction, window_name, level, numerator, denominator, index_count from final
