-- mart_sweep: the sensitivity sweep's counts, result level, both directions (docs/definitions.md section 8,
-- Sweep; pipelines/sweep.py publishes them with intervals and suppression as results.json `sweep`).
-- Grain: one row per direction x definition x swept threshold x swept window with an index result
-- measured; absent rows are zero. The swept windows and thresholds are the rows of param_sweep_windows
-- and param_sweep_thresholds ([sweep] and the run's own window and thresholds, in canonical units).
-- For every index result and partner: the distance in time to the nearest partner that answers each
-- question (measured, below each swept threshold); a cell counts the distances within its window.
-- Windows are time windows only (+/- seconds, inclusive; a shared specimen does not count); results of
-- a patient at the same time are partners as in section 4, so the cell at the run's window and
-- thresholds repeats mart_cooccurrence's result-level row of the co-occurrence window.
--   abnormality_given_hypomg: index = hypomagnesemia results; denominator = those with the partner
--     measured in the window; numerator = those with it below the threshold in the window.
--   hypomg_given_abnormality: index = partner results below the threshold; denominator = those with
--     MG measured in the window; numerator = those with hypomagnesemia in it.
with
defs as (
    select d.definition_id, d.abnormality, d.partner_analyte, d.value_source
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),
reach as (select max(window_seconds) as max_s from param_sweep_windows),
partners as (
    select f.row_id, f.patient_id, epoch(f.collected_at) as at_s, d.definition_id, f.value_canonical as v
    from int_lab_flags as f inner join defs as d on d.partner_analyte = f.analyte
    where d.value_source = 'result'
    union all
    select f.row_id, f.patient_id, epoch(f.collected_at), d.definition_id, c.corrected_calcium_mmol_l
    from int_lab_flags as f
    inner join int_calcium_corrected as c on c.row_id = f.row_id
    inner join defs as d on d.partner_analyte = f.analyte
    where d.value_source = 'corrected_calcium'
),
mg as (
    select row_id, patient_id, epoch(collected_at) as at_s, is_hypomagnesemia as hypo
    from int_lab_flags where analyte = 'MG'
),
a_pairs as (
    select m.row_id, p.definition_id, abs(p.at_s - m.at_s) as dist, p.v
    from mg as m
    cross join reach as r
    inner join partners as p on p.patient_id = m.patient_id and p.at_s between m.at_s - r.max_s and m.at_s + r.max_s
    where m.hypo
),
a_measured as (
    select row_id, definition_id, min(dist) as d_measured from a_pairs group by row_id, definition_id
),
a_abnormal as (
    select a.row_id, a.definition_id, t.threshold_canonical, min(a.dist) as d_abnormal
    from a_pairs as a
    inner join param_sweep_thresholds as t on t.definition_id = a.definition_id and a.v < t.threshold_canonical
    group by a.row_id, a.definition_id, t.threshold_canonical
),
a_cells as (
    select m.definition_id, t.threshold_canonical, m.d_measured, ab.d_abnormal
    from a_measured as m
    inner join param_sweep_thresholds as t on t.definition_id = m.definition_id
    left join a_abnormal as ab on ab.row_id = m.row_id and ab.definition_id = m.definition_id
        and ab.threshold_canonical = t.threshold_canonical
),
b_index as (
    -- this direction's index results are partners below a swept threshold: only those below the
    -- highest of their definition are searched for magnesium
    select p.row_id, p.patient_id, p.at_s, p.definition_id, p.v
    from partners as p
    inner join (
        select definition_id, max(threshold_canonical) as max_threshold
        from param_sweep_thresholds
        group by definition_id
    ) as t on t.definition_id = p.definition_id and p.v < t.max_threshold
),
b_near as (
    select p.row_id, p.definition_id, p.v, min(abs(m.at_s - p.at_s)) as d_mg,
        min(case when m.hypo then abs(m.at_s - p.at_s) end) as d_hypo
    from b_index as p
    cross join reach as r
    left join mg as m on m.patient_id = p.patient_id and m.at_s between p.at_s - r.max_s and p.at_s + r.max_s
    group by p.row_id, p.definition_id, p.v
),
counted as (
    select 'abnormality_given_hypomg' as direction, a.definition_id, a.threshold_canonical, w.window_seconds,
        sum(case when a.d_measured <= w.window_seconds then 1 else 0 end) as denominator,
        sum(case when a.d_abnormal <= w.window_seconds then 1 else 0 end) as numerator
    from a_cells as a cross join param_sweep_windows as w
    group by a.definition_id, a.threshold_canonical, w.window_seconds
    union all
    select 'hypomg_given_abnormality', b.definition_id, t.threshold_canonical, w.window_seconds,
        sum(case when b.d_mg <= w.window_seconds then 1 else 0 end),
        sum(case when b.d_hypo <= w.window_seconds then 1 else 0 end)
    from b_near as b
    inner join param_sweep_thresholds as t on t.definition_id = b.definition_id and b.v < t.threshold_canonical
    cross join param_sweep_windows as w
    group by b.definition_id, t.threshold_canonical, w.window_seconds
),

final as (
    select c.direction, d.abnormality, c.definition_id, c.threshold_canonical, c.window_seconds,
        cast(c.numerator as bigint) as numerator, cast(c.denominator as bigint) as denominator
    from counted as c inner join defs as d on d.definition_id = c.definition_id
    where c.numerator > 0 or c.denominator > 0
)

select direction, abnormality, definition_id, threshold_canonical, window_seconds, numerator, denominator
from final
