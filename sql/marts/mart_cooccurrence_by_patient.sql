-- mart_cooccurrence_by_patient: each patient's result-level numerator and denominator of every
-- co-occurrence row (docs/definitions.md section 8, Repeated measures). Row-level by patient: never
-- published; pipelines/clustered.py reads only its sums (per row: patients, sum n, sum y, sum y^2,
-- sum y n, sum n^2) to compute the patient-clustered variance.
-- Grain: one row per abnormality x direction x window x patient with the partner measured at least once
-- (denominator > 0). Summed over patients, numerator and denominator equal mart_cooccurrence's
-- result-level row: the same bit tests on the same index rows (int_index_windows), at the configured
-- hypocalcemia definition.
with

definitions as (
    select d.definition_id, d.abnormality, d.measured_bit, d.abnormal_bit
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),

answered as (
    select
        case iw.index_class
            when 'hypo' then 'abnormality_given_hypomg'
            when 'normo' then 'abnormality_given_normomg'
            else 'hypomg_given_abnormality'
        end as direction,
        d.abnormality,
        iw.window_id,
        iw.patient_id,
        case
            when iw.index_class = 'abnormal' then (iw.partner_bits & b.hypomg_bit) <> 0
            else (iw.partner_bits & d.abnormal_bit) <> 0
        end as is_abnormal
    from int_index_windows as iw
    cross join definitions as d
    cross join param_bits as b
    where iw.index_class in ('hypo', 'normo', 'abnormal')
        and case
            when iw.index_class = 'abnormal'
                then (iw.own_bits & d.abnormal_bit) <> 0 and (iw.partner_bits & b.mg_measured_bit) <> 0
            else (iw.partner_bits & d.measured_bit) <> 0
        end
),

counted as (
    select
        direction, abnormality, window_id, patient_id,
        count(*) as denominator,
        sum(case when is_abnormal then 1 else 0 end) as numerator
    from answered
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
