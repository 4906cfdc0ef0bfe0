-- mart_cooccurrence_clusters: the sums of every result-level co-occurrence row over its patients, for the
-- patient-clustered (robust) variance (docs/definitions.md section 8, Repeated measures; pipelines/stats.py
-- ClusterSums). With y_i and n_i a patient's numerator and denominator (the same answers as
-- mart_cooccurrence, int_index_answers): clusters (patients with n_i > 0), sum n_i, sum y_i, sum y_i^2,
-- sum y_i n_i and sum n_i^2. No patient's own counts are kept.
-- Grain: one row per abnormality x direction x window with at least one patient measured; its n and y
-- equal mart_cooccurrence's result-level denominator and numerator.
with

by_patient as (
    select
        direction, abnormality, window_id, patient_id,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from int_index_answers
    where is_measured
    group by direction, abnormality, window_id, patient_id
),

summed as (
    select
        direction, abnormality, window_id,
        count(*) as clusters,
        sum(cast(denominator as double)) as n,
        sum(cast(numerator as double)) as y,
        sum(cast(numerator as double) * numerator) as yy,
        sum(cast(numerator as double) * denominator) as yn,
        sum(cast(denominator as double) * denominator) as nn
    from by_patient
    group by direction, abnormality, window_id
),

final as (
    select s.abnormality, s.direction, w.window_name, s.clusters, s.n, s.y, s.yy, s.yn, s.nn
    from summed as s
    inner join param_windows as w on w.window_id = s.window_id
)

select abnormality, direction, window_name, clusters, n, y, yy, yn, nn from final
