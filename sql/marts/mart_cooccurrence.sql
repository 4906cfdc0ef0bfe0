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
-- Hypocalcemia uses the configured definition (params.hypocalcemia_definition).
with

directed as (
    select 'abnormality_given_hypomg' as direction, pw.*
    from int_partner_windows as pw where pw.pair_direction = 'from_mg' and pw.is_hypomagnesemia
    union all
    select 'abnormality_given_normomg' as direction, pw.*
    from int_partner_windows as pw where pw.pair_direction = 'from_mg' and pw.is_normomagnesemia
    union all
    select 'hypomg_given_abnormality' as direction, pw.*
    from int_partner_windows as pw where pw.pair_direction = 'to_mg'
),

indexed as (
    select
        d.direction,
        d.abnormality,
        w.window_name,
        d.patient_id,
        d.row_id,
        d.collected_at,
        d.result_id_num,
        d.result_id,
        case when w.window_name = 'same_draw' then d.measured_same_draw else d.measured_24h end as is_measured,
        case when w.window_name = 'same_draw' then d.abnormal_same_draw else d.abnormal_24h end as is_abnormal
    from directed as d
    cross join ref_cooccurrence_windows as w
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),

by_patient as (
    -- index results, measured and abnormal partners, per patient: the result level and the count
    -- of index patients both come from it (two plain grouping steps, no count(distinct), which
    -- held 100M-row inputs in memory)
    select
        direction, abnormality, window_name, patient_id,
        count(*) as index_count,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then 1 else 0 end) as numerator
    from indexed
    group by direction, abnormality, window_name, patient_id
),

result_level as (
    select
        direction, abnormality, window_name, 'result' as level,
        sum(index_count) as index_count,
        sum(denominator) as denominator,
        sum(numerator) as numerator
    from by_patient
    group by direction, abnormality, window_name
),

patient_first as (
    select
        i.*,
        row_number() over (
            partition by i.direction, i.abnormality, i.window_name, i.patient_id
            order by i.collected_at, i.result_id_num, i.result_id, i.row_id
        ) as index_order
    from indexed as i
    where i.is_measured
),

patient_counts as (
    select direction, abnormality, window_name,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from patient_first
    where index_order = 1
    group by direction, abnormality, window_name
),

patient_index as (
    select direction, abnormality, window_name, count(*) as index_count
    from by_patient
    group by direction, abnormality, window_name
),

patient_level as (
    select pi.direction, pi.abnormality, pi.window_name, 'patient' as level,
        pi.index_count,
        coalesce(pc.denominator, 0) as denominator,
        coalesce(pc.numerator, 0) as numerator
    from patient_index as pi
    left join patient_counts as pc
        on pc.direction = pi.direction and pc.abnormality = pi.abnormality
        and pc.window_name = pi.window_name
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
