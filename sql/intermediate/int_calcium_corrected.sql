-- int_calcium_corrected: albumin-corrected total calcium (docs/definitions.md section 3, option `corrected`).
-- Grain: one row per total calcium (CA) result that has an albumin (ALB) result of the same draw.
-- Same draw = same specimen_id, or collected within +/- same_draw_hours (inclusive). The albumin used
-- is the nearest in time; ties go to the smallest result id. corrected = CA + k x (ref - ALB g/L),
-- with k = 0.02 and ref = 40 g/L from `params`. CA results without such an albumin are not here.
-- Linear formulation (docs/portable-sql.md rule 10): candidates are the same-specimen albumins (an
-- equi-join) and the nearest albumin before and after in a time-ordered union (window functions),
-- joined back on (patient, time), never a range join on time.
with

calcium as (
    select row_id, patient_id, collected_at, specimen_id, value_canonical
    from int_lab_results where analyte = 'CA'
),

albumin as (
    select row_id, patient_id, collected_at, specimen_id, value_canonical, result_id, result_id_num
    from int_lab_results where analyte = 'ALB'
),

timeline as (
    select patient_id, collected_at, row_id, 1 as is_calcium from calcium
    union all
    select patient_id, collected_at, row_id, 0 as is_calcium from albumin
),

nearest_times as (
    select
        t.row_id,
        t.patient_id,
        t.is_calcium,
        max(case when t.is_calcium = 0 then t.collected_at end) over (
            partition by t.patient_id order by t.collected_at, t.is_calcium, t.row_id
            rows between unbounded preceding and current row
        ) as albumin_before_at,
        min(case when t.is_calcium = 0 then t.collected_at end) over (
            partition by t.patient_id order by t.collected_at, t.is_calcium, t.row_id
            rows between current row and unbounded following
        ) as albumin_after_at
    from timeline as t
),

candidates as (
    select c.row_id, a.row_id as albumin_row_id, a.value_canonical as albumin_g_l,
        a.result_id_num, a.result_id,
        abs(epoch(a.collected_at) - epoch(c.collected_at)) as distance_s, true as same_specimen
    from calcium as c
    join albumin as a on a.patient_id = c.patient_id and a.specimen_id = c.specimen_id
    union all
    select n.row_id, a.row_id, a.value_canonical, a.result_id_num, a.result_id,
        abs(epoch(a.collected_at) - epoch(c.collected_at)), false
    from nearest_times as n
    join calcium as c on c.row_id = n.row_id
    join albumin as a on a.patient_id = n.patient_id and a.collected_at = n.albumin_before_at
    where n.is_calcium = 1
    union all
    select n.row_id, a.row_id, a.value_canonical, a.result_id_num, a.result_id,
        abs(epoch(a.collected_at) - epoch(c.collected_at)), false
    from nearest_times as n
    join calcium as c on c.row_id = n.row_id
    join albumin as a on a.patient_id = n.patient_id and a.collected_at = n.albumin_after_at
    where n.is_calcium = 1
),

ranked as (
    select
        cand.*,
        row_number() over (
            partition by cand.row_id
            order by cand.distance_s, cand.result_id_num, cand.result_id, cand.albumin_row_id
        ) as rank_in_draw
    from candidates as cand
    cross join params as p
    where cand.same_specimen or cand.distance_s <= p.same_draw_seconds
),

final as (
    select
        c.row_id,
        c.patient_id,
        c.collected_at,
        c.specimen_id,
        c.value_canonical as calcium_mmol_l,
        r.albumin_row_id,
        r.albumin_g_l,
        c.value_canonical + p.calcium_correction_per_g_l * (p.albumin_reference_g_l - r.albumin_g_l)
            as corrected_calcium_mmol_l
    from ranked as r
    join calcium as c on c.row_id = r.row_id
    cross join params as p
    where r.rank_in_draw = 1
)

select * from final
