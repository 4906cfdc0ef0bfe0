-- mart_sensitivity: the sensitivity grid at result level, both directions
-- (docs/definitions.md section 4, Sensitivity grid). Grain: one row per direction x abnormality x MG threshold x window,
-- and for hypocalcemia per definition too (total, corrected, ionized); others carry a null definition.
-- Definitions, thresholds and windows are the rows of param_abnormality_definitions,
-- param_mg_thresholds and param_windows (seeds and config).
-- abnormality_given_hypomg: index = MG results below threshold_mg_dl x 0.4114 (their own grid_bit);
-- denominator = those with X measured in the window; numerator = those with X abnormal in it.
-- hypomg_given_abnormality: index = results abnormal for X; denominator = those with MG measured in
-- the window; numerator = those with an MG result below the threshold in it (its grid_bit).
-- Counted from int_index_patterns (index rows grouped by their flag bits).
with

counted as (
    select 'abnormality_given_hypomg' as direction, d.abnormality, d.hypocalcemia_definition, t.threshold_mg_dl,
        pt.window_id,
        sum(case when (pt.partner_bits & d.measured_bit) <> 0 then pt.row_count else 0 end) as denominator,
        sum(case when (pt.partner_bits & d.abnormal_bit) <> 0 then pt.row_count else 0 end) as numerator
    from int_index_patterns as pt
    cross join param_abnormality_definitions as d
    inner join param_mg_thresholds as t on (pt.own_bits & t.grid_bit) <> 0
    where pt.index_class <> 'abnormal'
    group by d.abnormality, d.hypocalcemia_definition, t.threshold_mg_dl, pt.window_id
    union all
    select 'hypomg_given_abnormality', d.abnormality, d.hypocalcemia_definition, t.threshold_mg_dl, pt.window_id,
        sum(case when (pt.partner_bits & b.mg_measured_bit) <> 0 then pt.row_count else 0 end),
        sum(case when (pt.partner_bits & t.grid_bit) <> 0 then pt.row_count else 0 end)
    from int_index_patterns as pt
    inner join param_abnormality_definitions as d on (pt.own_bits & d.abnormal_bit) <> 0
    cross join param_mg_thresholds as t
    cross join param_bits as b
    where pt.index_class = 'abnormal'
    group by d.abnormality, d.hypocalcemia_definition, t.threshold_mg_dl, pt.window_id
),

skeleton as (
    select d.direction, a.abnormality, a.hypocalcemia_definition, t.threshold_mg_dl, w.window_id,
        w.window_name
    from ref_cooccurrence_directions as d
    cross join param_abnormality_definitions as a
    cross join param_mg_thresholds as t
    cross join param_windows as w
    where d.direction in ('abnormality_given_hypomg', 'hypomg_given_abnormality')
),

final as (
    select
        s.direction,
        s.abnormality,
        s.hypocalcemia_definition,
        s.threshold_mg_dl,
        s.window_name,
        cast(coalesce(c.numerator, 0) as bigint) as numerator,
        cast(coalesce(c.denominator, 0) as bigint) as denominator
    from skeleton as s
    left join counted as c
        on c.direction = s.direction and c.abnormality = s.abnormality
        and coalesce(c.hypocalcemia_definition, '') = coalesce(s.hypocalcemia_definition, '')
        and c.threshold_mg_dl = s.threshold_mg_dl and c.window_id = s.window_id
)

select direction, abnormality, hypocalcemia_definition, threshold_mg_dl, window_name, numerator, denominator
from final
