-- int_index_windows: every index result in every window, with the flags of the partners found
-- (docs/definitions.md section 4, Directions, Windows, Partner rule and Levels; "Flags as bits").
-- Grain: one row per (window of param_windows, index result). Index results: every magnesium result
-- (index_class 'hypo', 'normo' or 'other' by its own value) and every result abnormal for at least one
-- abnormality definition (index_class 'abnormal').
--   window_bits: OR of the flags of the patient's results collected within +/- window_seconds
--     (inclusive) of the index result, itself included (its own flags never answer its own question:
--     magnesium looks for partner bits, abnormal results for magnesium bits);
--   specimen_bits: OR of the flags of the results of its specimen (0 without a specimen_id);
--   partner_bits: what the window holds: window_bits, plus specimen_bits where the window uses_specimen.
--   first_eligible_bits / first_index_bits: the bits for which this row is the patient's first, in
--     (time, result id numerically when all are numeric, result id, row id) order, within its window
--     and index_class: eligible = partner measured (magnesium rows: the definitions' measured bits of
--     partner_bits; abnormal rows: its own abnormal bits when magnesium was measured), index = its own
--     index bits. The patient level counts these rows (each patient once per question).
-- Cost: results at the same time of one patient are one event (their flags OR-ed); one sort per
-- (window, patient) of the events gives every definition and direction at once, and one sort of the
-- index rows gives every patient-level first.
with

events as (
    select patient_id, at_s, bit_or(bits) as bits
    from int_result_bits
    group by patient_id, at_s
),

specimens as (
    select patient_id, specimen_id, bit_or(bits) as bits
    from int_result_bits
    where specimen_id is not null
    group by patient_id, specimen_id
),

in_windows as (
    select
        w.window_id,
        e.patient_id,
        e.at_s,
        bit_or(e.bits) over (
            partition by w.window_id, e.patient_id
            order by e.at_s
            range between w.window_seconds preceding and w.window_seconds following
        ) as window_bits
    from events as e
    cross join param_windows as w
),

index_results as (
    -- magnesium results with their own flags; a result abnormal for several definitions (total and
    -- corrected calcium) is one index row with its abnormal definitions' bits
    select row_id, patient_id, at_s, specimen_id, result_id_num, result_id, index_class, bits as own_bits
    from int_result_bits
    where index_class is not null
    union all
    select r.row_id, r.patient_id, r.at_s, r.specimen_id, r.result_id_num, r.result_id, 'abnormal',
        bit_or(r.bits)
    from int_result_bits as r
    cross join param_bits as b
    where (r.bits & b.abnormal_mask) <> 0
    group by r.row_id, r.patient_id, r.at_s, r.specimen_id, r.result_id_num, r.result_id
),

placed as (
    select
        i.*,
        w.window_id,
        iw.window_bits,
        coalesce(s.bits, 0) as specimen_bits,
        case when w.uses_specimen then iw.window_bits | coalesce(s.bits, 0) else iw.window_bits end as partner_bits
    from index_results as i
    cross join param_windows as w
    inner join in_windows as iw on iw.window_id = w.window_id and iw.patient_id = i.patient_id and iw.at_s = i.at_s
    left join specimens as s on s.patient_id = i.patient_id and s.specimen_id = i.specimen_id
),

questioned as (
    select
        p.*,
        case
            when p.index_class = 'abnormal' then
                case when (p.partner_bits & b.mg_measured_bit) <> 0 then p.own_bits & b.abnormal_mask else 0 end
            else p.partner_bits & b.measured_mask
        end as eligible_bits,
        case when p.index_class = 'abnormal' then p.own_bits & b.abnormal_mask else 1 end as index_bits
    from placed as p
    cross join param_bits as b
),

ordered as (
    select
        q.*,
        coalesce(bit_or(q.eligible_bits) over w_before, 0) as eligible_before,
        coalesce(bit_or(q.index_bits) over w_before, 0) as index_before
    from questioned as q
    window w_before as (
        partition by q.window_id, q.index_class, q.patient_id
        order by q.at_s, q.result_id_num, q.result_id, q.row_id
        rows between unbounded preceding and 1 preceding
    )
)

select
    window_id, index_class, row_id, patient_id, at_s, result_id_num, result_id,
    own_bits, window_bits, specimen_bits, partner_bits,
    eligible_bits - (eligible_bits & eligible_before) as first_eligible_bits,
    index_bits - (index_bits & index_before) as first_index_bits
from ordered
