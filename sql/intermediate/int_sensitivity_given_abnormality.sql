-- int_sensitivity_given_abnormality: counts of the sensitivity grid's hypomg_given_abnormality
-- direction at result level (docs/definitions.md section 4, Sensitivity grid); mart_sensitivity
-- puts them beside the other direction on one skeleton. Grain: one row per abnormality x
-- definition x MG threshold x window that has index results.
-- Index = results abnormal for X (int_partner_windows pair_direction 'to_mg', each definition's threshold);
-- denominator = those with MG measured in the window (as mart_cooccurrence counts it);
-- numerator = those with an MG result below threshold_mg_dl x 0.4114 (threshold_mmol_l) in the window:
-- the nearest such MG before or after within window_seconds, or, where uses_specimen, one in the same specimen.
-- Linear, portable (docs/portable-sql.md rule 10): the MG results are crossed with the thresholds they
-- lie below, and each (threshold, patient) is one time-ordered union with the index results, running max/min.
with

index_results as (
    select
        pw.abnormality,
        pw.hypocalcemia_definition,
        pw.patient_id,
        pw.row_id,
        epoch(pw.collected_at) as at_s,
        f.specimen_id,
        pw.nearest_partner_s,
        pw.specimen_partner
    from int_partner_windows as pw
    inner join int_lab_flags as f on f.row_id = pw.row_id
    where pw.pair_direction = 'to_mg'
),

low_mg as (
    -- each MG result once per grid threshold it lies below
    select t.threshold_mg_dl, f.patient_id, f.row_id, epoch(f.collected_at) as at_s, f.specimen_id
    from int_lab_flags as f
    cross join param_mg_thresholds as t
    where f.analyte = 'MG' and f.value_canonical < t.threshold_mmol_l
),

low_mg_specimens as (
    select threshold_mg_dl, patient_id, specimen_id
    from low_mg
    where specimen_id is not null
    group by threshold_mg_dl, patient_id, specimen_id
),

events as (
    select t.threshold_mg_dl, i.patient_id, i.row_id, i.at_s, 0 as is_mg,
        i.abnormality, i.hypocalcemia_definition, i.specimen_id, i.nearest_partner_s, i.specimen_partner
    from index_results as i
    cross join param_mg_thresholds as t
    union all
    select m.threshold_mg_dl, m.patient_id, m.row_id, m.at_s, 1,
        cast(null as varchar), cast(null as varchar), cast(null as varchar), cast(null as double), false
    from low_mg as m
),

windowed as (
    select
        e.*,
        max(case when e.is_mg = 1 then e.at_s end) over w_before as low_mg_before_s,
        min(case when e.is_mg = 1 then e.at_s end) over w_after as low_mg_after_s
    from events as e
    window
        w_before as (
            partition by e.threshold_mg_dl, e.patient_id
            order by e.at_s, e.row_id
            rows between unbounded preceding and current row
        ),
        w_after as (
            partition by e.threshold_mg_dl, e.patient_id
            order by e.at_s, e.row_id
            rows between current row and unbounded following
        )
),

indexed as (
    select
        w.abnormality,
        w.hypocalcemia_definition,
        w.threshold_mg_dl,
        w.nearest_partner_s,
        w.specimen_partner,
        least(w.at_s - w.low_mg_before_s, w.low_mg_after_s - w.at_s) as nearest_low_mg_s,
        s.specimen_id is not null as specimen_low_mg
    from windowed as w
    left join low_mg_specimens as s
        on s.threshold_mg_dl = w.threshold_mg_dl and s.patient_id = w.patient_id and s.specimen_id = w.specimen_id
    where w.is_mg = 0
),

in_windows as (
    select
        i.abnormality,
        i.hypocalcemia_definition,
        i.threshold_mg_dl,
        w.window_id,
        (w.uses_specimen and i.specimen_partner)
            or coalesce(i.nearest_partner_s <= w.window_seconds, false) as is_measured,
        (w.uses_specimen and i.specimen_low_mg)
            or coalesce(i.nearest_low_mg_s <= w.window_seconds, false) as is_low
    from indexed as i
    cross join param_windows as w
),

counted as (
    select abnormality, hypocalcemia_definition, threshold_mg_dl, window_id,
        sum(case when is_measured then 1 else 0 end) as denominator,
        sum(case when is_measured and is_low then 1 else 0 end) as numerator
    from in_windows
    group by abnormality, hypocalcemia_definition, threshold_mg_dl, window_id
)

select abnormality, hypocalcemia_definition, threshold_mg_dl, window_id, numerator, denominator
from counted
