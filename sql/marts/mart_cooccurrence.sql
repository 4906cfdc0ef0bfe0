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
-- Counted from int_index_patterns (index rows grouped by their flag bits) at the configured
-- hypocalcemia definition: a definition's question is a test of its bits (measured_bit, abnormal_bit).
with

definitions as (
    select d.definition_id, d.abnormality, d.measured_bit, d.abnormal_bit
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),

answered as (
    -- each pattern's answer to each definition's question; `own` = the index row's own definition bit
    select
        case pt.index_class
            when 'hypo' then 'abnormality_given_hypomg'
            when 'normo' then 'abnormality_given_normomg'
            else 'hypomg_given_abnormality'
        end as direction,
        d.abnormality,
        pt.window_id,
        pt.row_count,
        case when pt.index_class = 'abnormal' then (pt.own_bits & d.abnormal_bit) <> 0 else true end as is_index,
        case
            when pt.index_class = 'abnormal'
                then (pt.own_bits & d.abnormal_bit) <> 0 and (pt.partner_bits & b.mg_measured_bit) <> 0
            else (pt.partner_bits & d.measured_bit) <> 0
        end as is_measured,
        case
            when pt.index_class = 'abnormal' then (pt.partner_bits & b.hypomg_bit) <> 0
            else (pt.partner_bits & d.abnormal_bit) <> 0
        end as is_abnormal,
        case
            when pt.index_class = 'abnormal' then (pt.first_index_bits & d.abnormal_bit) <> 0
            else pt.first_index_bits <> 0
        end as is_first_index,
        case
            when pt.index_class = 'abnormal' then (pt.first_eligible_bits & d.abnormal_bit) <> 0
            else (pt.first_eligible_bits & d.measured_bit) <> 0
        end as is_first_measured
    from int_index_patterns as pt
    cross join definitions as d
    cross join param_bits as b
    where pt.index_class in ('hypo', 'normo', 'abnormal')
),

counted as (
    select direction, abnormality, window_id, 'result' as level,
        sum(case when is_index then row_count else 0 end) as index_count,
        sum(case when is_measured then row_count else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then row_count else 0 end) as numerator
    from answered
    group by direction, abnormality, window_id
    union all
    select direction, abnormality, window_id, 'patient',
        sum(case when is_first_index then row_count else 0 end),
        sum(case when is_first_measured then row_count else 0 end),
        sum(case when is_first_measured and is_abnormal then row_count else 0 end)
    from answered
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
