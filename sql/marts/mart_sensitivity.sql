-- mart_sensitivity: the sensitivity grid of abnormality_given_hypomg at result level (analysis plan
-- section 4, Sensitivity grid). Grain: one row per abnormality x MG threshold x window, and for
-- hypocalcemia per definition too (total, corrected, ionized); others carry a null definition.
-- Index = MG results below threshold_mg_dl x 0.4114 (param_mg_thresholds, computed like values);
-- denominator = those with X measured in the window; numerator = those with X abnormal in it.
with

from_mg as (
    select * from int_partner_windows where pair_direction = 'from_mg'
),

indexed as (
    select
        f.abnormality,
        f.hypocalcemia_definition,
        t.threshold_mg_dl,
        w.window_name,
        case when w.window_name = 'same_draw' then f.measured_same_draw else f.measured_24h end as is_measured,
        case when w.window_name = 'same_draw' then f.abnormal_same_draw else f.abnormal_24h end as is_abnormal
    from from_mg as f
    cross join param_mg_thresholds as t
    cross join ref_cooccurrence_windows as w
    where f.index_mg_mmol_l < t.threshold_mmol_l
),

counted as (
    select abnormality, hypocalcemia_definition, threshold_mg_dl, window_name,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_abnormal then 1 else 0 end) as numerator
    from indexed
    group by abnormality, hypocalcemia_definition, threshold_mg_dl, window_name
),

skeleton as (
    select a.abnormality, nullif(a.hypocalcemia_definition, '') as hypocalcemia_definition,
        t.threshold_mg_dl, w.window_name
    from ref_abnormality_definitions as a
    cross join param_mg_thresholds as t
    cross join ref_cooccurrence_windows as w
),

final as (
    select
        s.abnormality,
        s.hypocalcemia_definition,
        s.threshold_mg_dl,
        s.window_name,
        cast(coalesce(c.numerator, 0) as bigint) as numerator,
        cast(coalesce(c.denominator, 0) as bigint) as denominator
    from skeleton as s
    left join counted as c
        on c.abnormality = s.abnormality
        and coalesce(c.hypocalcemia_definition, '') = coalesce(s.hypocalcemia_definition, '')
        and c.threshold_mg_dl = s.threshold_mg_dl and c.window_name = s.window_name
)

select abnormality, hypocalcemia_definition, threshold_mg_dl, window_name, numerator, denominator
from final
