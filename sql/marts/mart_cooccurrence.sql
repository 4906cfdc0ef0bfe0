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
-- Counted from int_index_answers (each index row's answers at the configured hypocalcemia definition).
with

counted as (
    select direction, abnormality, window_id, 'result' as level,
        sum(case when is_index then 1 else 0 end) as index_count,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then 1 else 0 end) as numerator
    from int_index_answers
    group by direction, abnormality, window_id
    union all
    select direction, abnormality, window_id, 'patient',
        sum(case when is_first_index then 1 else 0 end),
        sum(case when is_first_measured then 1 else 0 end),
        sum(case when is_first_measured and is_abnormal then 1 else 0 end)
    from int_index_answers
    group by direction, abnormality, window_id
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
