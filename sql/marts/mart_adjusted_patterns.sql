-- mart_adjusted_patterns: the patient-level data set of the adjusted prevalence ratios, as distinct
-- covariate patterns with their patient counts (docs/definitions.md section 8, Adjusted ratios;
-- pipelines/adjusted.py fits the modified Poisson model on these rows). Row-level in substance (a
-- pattern may hold one patient): never published.
-- Grain: one row per abnormality x hypomagnesemia (or normomagnesemia) x abnormal x age x sex x drug
-- classes present x drug classes exposed, with at least one patient.
-- For each abnormality X in the co-occurrence window (the widest of param_windows): each patient once,
-- by their first hypo- or normomagnesemic result with X measured in the window (earliest time, then
-- the patient level's order: result id, numerically if all numeric, then row id). age: collection
-- year minus birth year (mart_patient_demographics; null without one); sex 'unknown' without a loaded
-- patients row. Drug classes (ref_drug_classes) as bits in name order: present = an order of the class
-- is known at the result (int_mg_exposures), exposed = the result is exposed to it.
with

defs as (
    select d.abnormality, d.measured_bit, d.abnormal_bit
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),

win as (
    select window_id from param_windows order by window_id desc limit 1
),

measured as (
    select d.abnormality, iw.row_id, iw.patient_id, iw.index_class, iw.at_s, iw.result_id_num, iw.result_id,
        (iw.partner_bits & d.abnormal_bit) <> 0 as is_abnormal
    from int_index_windows as iw
    inner join win on win.window_id = iw.window_id
    cross join defs as d
    where iw.index_class in ('hypo', 'normo') and (iw.partner_bits & d.measured_bit) <> 0
),

earliest as (
    -- each patient's first row: its earliest time first (an aggregate), then the order among those rows
    select abnormality, patient_id, min(at_s) as at_s
    from measured
    group by abnormality, patient_id
),

eligible as (
    select m.*,
        row_number() over (partition by m.abnormality, m.patient_id order by m.result_id_num, m.result_id, m.row_id) as k
    from measured as m
    inner join earliest as e on e.abnormality = m.abnormality and e.patient_id = m.patient_id and e.at_s = m.at_s
),

firsts as (
    select e.abnormality, e.row_id, e.index_class = 'hypo' as hypo, e.is_abnormal,
        cast(strftime(r.collected_at, '%Y') as double) - m.birth_year as age,
        coalesce(m.sex, 'unknown') as sex
    from eligible as e
    inner join int_lab_results as r on r.row_id = e.row_id
    left join mart_patient_demographics as m on m.patient_id = e.patient_id and m.status = 'loaded'
    where e.k = 1
),

class_bits as (
    select drug_class,
        cast(1 as bigint) << cast(row_number() over (order by drug_class) - 1 as integer) as bit
    from (select distinct drug_class from ref_drug_classes)
),

classes as (
    select x.row_id, bit_or(b.bit) as present,
        coalesce(bit_or(case when x.is_exposed then b.bit end), 0) as exposed
    from int_mg_exposures as x
    inner join class_bits as b on b.drug_class = x.drug_class
    where x.row_id in (select row_id from firsts)
    group by x.row_id
),

final as (
    select f.abnormality, f.hypo, f.is_abnormal, f.age, f.sex,
        coalesce(c.present, 0) as present, coalesce(c.exposed, 0) as exposed, count(*) as patients
    from firsts as f
    left join classes as c on c.row_id = f.row_id
    group by f.abnormality, f.hypo, f.is_abnormal, f.age, f.sex, coalesce(c.present, 0), coalesce(c.exposed, 0)
)

select abnormality, hypo, is_abnormal, age, sex, present, exposed, patients from final
