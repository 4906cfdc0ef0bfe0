-- mart_cooccurrence: numerators and denominators of every co-occurrence row of the contract
-- (docs/definitions.md section 4; docs/contract.md results.json `cooccurrence`).
-- Grain: one row per abnormality x direction x window x level (with the seeds' 4 abnormalities and
-- 2 windows: 4 x 3 x 2 x 2 = 48 rows), always all present: a skeleton of the seed and parameter
-- tables (param_abnormality_definitions, ref_cooccurrence_directions, param_windows,
-- ref_analysis_levels), zero where nothing was found.
--   abnormality_given_hypomg / _given_normomg: index = hypo-/normomagnesemia results; denominator =
--     those with X measured in the window; numerator = those with X abnormal in it.
--   hypomg_given_abnormality: index = results abnormal for X; denominator = those with MG measured;
--     numerator = those with hypomagnesemia in the window. index_count / denominator gives
--     mg_tested_fraction (share of index results, or patients, with magnesium measured).
--   result level: every index result; patient level: each patient once, by the earliest index
--     result with the partner measured (ties: smallest result id, numerically if all numeric).
-- Index results come from int_cooccurrence_index (configured hypocalcemia definition, one row per window).
-- Bounded memory: each patient's first index result is joined back on its earliest time, not numbered.
with

by_patient as (
    select
        direction, abnormality, window_id, patient_id,
        count(*) as index_count,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then 1 else 0 end) as numerator,
        min(case when is_measured then collected_at end) as first_at
    from int_cooccurrence_index
    group by direction, abnormality, window_id, patient_id
),

by_group as (
    select
        direction, abnormality, window_id,
        count(*) as patient_index_count,
        sum(index_count) as index_count,
        sum(denominator) as denominator,
        sum(numerator) as numerator
    from by_patient
    group by direction, abnormality, window_id
),

result_level as (
    select direction, abnormality, window_id, 'result' as level, index_count, denominator, numerator
    from by_group
),

at_first_time as (
    -- each patient's index results at its earliest time with the partner measured, per window
    select b.direction, b.abnormality, b.window_id, b.patient_id,
        i.result_id_num, i.result_id, i.row_id, i.is_abnormal
    from int_cooccurrence_index as i
    inner join by_patient as b
        on b.direction = i.direction and b.abnormality = i.abnormality and b.window_id = i.window_id
        and b.patient_id = i.patient_id and b.first_at = i.collected_at
    where i.is_measured
),

patient_first as (
    -- ties at the earliest time: smallest result id (numerically when all ids are numeric)
    select a.*,
        row_number() over (
            partition by a.direction, a.abnormality, a.window_id, a.patient_id
            order by a.result_id_num, a.result_id, a.row_id
        ) as index_order
    from at_first_time as a
),

patient_counts as (
    select direction, abnormality, window_id,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from patient_first
    where index_order = 1
    group by direction, abnormality, window_id
),

patient_level as (
    select g.direction, g.abnormality, g.window_id, 'patient' as level,
        g.patient_index_count as index_count,
        coalesce(pc.denominator, 0) as denominator,
        coalesce(pc.numerator, 0) as numerator
    from by_group as g
    left join patient_counts as pc
        on pc.direction = g.direction and pc.abnormality = g.abnormality and pc.window_id = g.window_id
),

counted as (
    select * from result_level
    union all
    select * from patient_level
),

skeleton as (
    select distinct a.abnormality, d.direction, w.window_id, w.window_name, l.level
    from param_abnormality_definitions as a
    cross join ref_cooccurrence_directions as d
    cross join param_windows as w
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
        and c.window_id = s.window_id and c.level = s.level
)

select abnormality, direction, window_name, level, numerator, denominator, index_count from final
