-- mart_sensitivity: the sensitivity grid at result level, both directions
-- (docs/definitions.md section 4, Sensitivity grid). Grain: one row per direction x abnormality x MG threshold x window,
-- and for hypocalcemia per definition too (total, corrected, ionized); others carry a null definition.
-- Definitions, thresholds and windows are the rows of param_abnormality_definitions,
-- param_mg_thresholds and param_windows (seeds and config).
-- abnormality_given_hypomg: index = MG results below threshold_mg_dl x 0.4114 (param_mg_thresholds,
-- computed like values); denominator = those with X measured in the window; numerator = those with
-- X abnormal in it (nearest partner within window_seconds, or, where uses_specimen, in the same
-- specimen). hypomg_given_abnormality: counted by int_sensitivity_given_abnormality.
with

indexed as (
    select
        f.abnormality,
        f.hypocalcemia_definition,
        t.threshold_mg_dl,
        w.window_id,
        (w.uses_specimen and f.specimen_partner)
            or coalesce(f.nearest_partner_s <= w.window_seconds, false) as is_measured,
        (w.uses_specimen and f.specimen_abnormal_partner)
            or coalesce(f.nearest_abnormal_partner_s <= w.window_seconds, false) as is_abnormal
    from int_partner_windows as f
    cross join param_mg_thresholds as t
    cross join param_windows as w
    where f.pair_direction = 'from_mg' and f.index_mg_mmol_l < t.threshold_mmol_l
),

counted as (
    select 'abnormality_given_hypomg' as direction, abnormality, hypocalcemia_definition, threshold_mg_dl,
        window_id,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then 1 else 0 end) as numerator
    from indexed
    group by abnormality, hypocalcemia_definition, threshold_mg_dl, window_id
    union all
    select 'hypomg_given_abnormality', abnormality, hypocalcemia_definition, threshold_mg_dl, window_id,
        denominator, numerator
    from int_sensitivity_given_abnormality
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
