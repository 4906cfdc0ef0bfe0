-- int_partner_windows: for every index result, whether its partner analyte was measured, and was
-- abnormal, within each co-occurrence window (analysis plan section 4, Windows and Partner rule).
-- Grain: one row per (pair_direction, abnormality, hypocalcemia_definition, index result).
--   pair_direction 'from_mg': index = every MG result (each abnormality definition); partner = the
--     abnormality's results (abnormal = the abnormality's flag). Feeds abnormality_given_hypomg,
--     abnormality_given_normomg and the sensitivity grid (which re-thresholds the index MG value).
--   pair_direction 'to_mg': index = every result abnormal for X; partner = MG results (abnormal =
--     hypomagnesemia at the configured threshold). Feeds hypomg_given_abnormality.
-- Windows: same_draw = a partner with the same specimen_id, or collected within +/- same_draw_hours;
-- 24h = a partner collected within +/- cooccurrence_hours. Both inclusive; same patient only.
-- Linear and portable (portable-sql.md rule 10): one time-ordered union per pair and patient; the
-- nearest partner at or before and at or after each index comes from running max/min window
-- functions, so the cost does not grow with the square of a patient's result count.
with

mg as (
    select row_id, patient_id, collected_at, specimen_id, result_id, result_id_num,
        value_canonical, is_hypomagnesemia, is_normomagnesemia
    from int_lab_flags where analyte = 'MG'
),

definitions as (
    select abnormality, nullif(hypocalcemia_definition, '') as hypocalcemia_definition
    from ref_abnormality_definitions
),

events as (
    select 'from_mg' as pair_direction, d.abnormality, d.hypocalcemia_definition,
        m.patient_id, m.row_id, m.collected_at, m.specimen_id, m.result_id, m.result_id_num,
        true as is_index, false as is_partner_abnormal,
        m.value_canonical as index_mg_mmol_l, m.is_hypomagnesemia, m.is_normomagnesemia
    from mg as m cross join definitions as d
    union all
    select 'from_mg', a.abnormality, a.hypocalcemia_definition,
        a.patient_id, a.row_id, a.collected_at, a.specimen_id, a.result_id, a.result_id_num,
        false, a.is_abnormal,
        cast(null as double), false, false
    from int_abnormality_results as a
    union all
    select 'to_mg', a.abnormality, a.hypocalcemia_definition,
        a.patient_id, a.row_id, a.collected_at, a.specimen_id, a.result_id, a.result_id_num,
        true, false,
        cast(null as double), false, false
    from int_abnormality_results as a where a.is_abnormal
    union all
    select 'to_mg', d.abnormality, d.hypocalcemia_definition,
        m.patient_id, m.row_id, m.collected_at, m.specimen_id, m.result_id, m.result_id_num,
        false, m.is_hypomagnesemia,
        cast(null as double), false, false
    from mg as m cross join definitions as d
),

windowed as (
    select
        e.*,
        epoch(e.collected_at) as at_s,
        max(case when not e.is_index then epoch(e.collected_at) end) over w_before as partner_before_s,
        min(case when not e.is_index then epoch(e.collected_at) end) over w_after as partner_after_s,
        max(case when not e.is_index and e.is_partner_abnormal then epoch(e.collected_at) end) over w_before
            as abnormal_before_s,
        min(case when not e.is_index and e.is_partner_abnormal then epoch(e.collected_at) end) over w_after
            as abnormal_after_s,
        max(case when not e.is_index then 1 else 0 end) over w_specimen as specimen_partners,
        max(case when not e.is_index and e.is_partner_abnormal then 1 else 0 end) over w_specimen
            as specimen_abnormal_partners
    from events as e
    window
        w_before as (
            partition by e.pair_direction, e.abnormality, e.hypocalcemia_definition, e.patient_id
            order by e.collected_at, e.is_index, e.row_id
            rows between unbounded preceding and current row
        ),
        w_after as (
            partition by e.pair_direction, e.abnormality, e.hypocalcemia_definition, e.patient_id
            order by e.collected_at, e.is_index, e.row_id
            rows between current row and unbounded following
        ),
        w_specimen as (
            partition by e.pair_direction, e.abnormality, e.hypocalcemia_definition, e.patient_id,
                e.specimen_id
        )
),

final as (
    select
        w.pair_direction,
        w.abnormality,
        w.hypocalcemia_definition,
        w.patient_id,
        w.row_id,
        w.collected_at,
        w.result_id,
        w.result_id_num,
        w.index_mg_mmol_l,
        w.is_hypomagnesemia,
        w.is_normomagnesemia,
        coalesce(
            (w.specimen_id is not null and w.specimen_partners = 1)
            or w.at_s - w.partner_before_s <= p.same_draw_seconds
            or w.partner_after_s - w.at_s <= p.same_draw_seconds, false) as measured_same_draw,
        coalesce(
            (w.specimen_id is not null and w.specimen_abnormal_partners = 1)
            or w.at_s - w.abnormal_before_s <= p.same_draw_seconds
            or w.abnormal_after_s - w.at_s <= p.same_draw_seconds, false) as abnormal_same_draw,
        coalesce(
            w.at_s - w.partner_before_s <= p.cooccurrence_seconds
            or w.partner_after_s - w.at_s <= p.cooccurrence_seconds, false) as measured_24h,
        coalesce(
            w.at_s - w.abnormal_before_s <= p.cooccurrence_seconds
            or w.abnormal_after_s - w.at_s <= p.cooccurrence_seconds, false) as abnormal_24h
    from windowed as w
    cross join params as p
    where w.is_index
)

select * from final
