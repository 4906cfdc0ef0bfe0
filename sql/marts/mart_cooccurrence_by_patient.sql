-- mart_cooccurrence_by_patient: each patient's result-level numerator and denominator of every
-- co-occurrence row (docs/definitions.md section 8, Repeated measures). Row-level by patient: never
-- published; pipelines/clustered.py reads only its sums (per row: patients, sum n, sum y, sum y^2,
-- sum y n, sum n^2) to compute the patient-clustered variance.
-- Grain: one row per abnormality x direction x window x patient with the partner measured at least once
-- (denominator > 0). Summed over patients, numerator and denominator equal mart_cooccurrence's
-- result-level row: the same answers (int_index_answers).
with

counted as (
    select
        direction, abnormality, window_id, patient_id,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from int_index_answers
    where is_measured
    group by direction, abnormality, window_id, patient_id
),

final as (
    select
        c.abnormality,
        c.direction,
        w.window_name,
        c.patient_id,
        cast(c.numerator as bigint) as numerator,
        cast(c.denominator as bigint) as denominator
    from counted as c
    inner join param_windows as w on w.window_id = c.window_id
)

select abnormality, direction, window_name, patient_id, numerator, denominator from final
