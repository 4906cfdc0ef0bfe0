-- int_cooccurrence_index: the index results of every co-occurrence direction, with whether the
-- partner was measured, and abnormal, in each window (docs/definitions.md section 4, Directions and Windows).
-- Grain: one row per (direction, abnormality, window, index result), at the configured hypocalcemia
-- definition (params.hypocalcemia_definition), for each window of param_windows (seed
-- cooccurrence_windows): partner in the window = nearest partner within window_seconds (inclusive), or,
-- where uses_specimen, one in the same specimen. A view over int_partner_windows, read twice by
-- mart_cooccurrence without being stored.
--   abnormality_given_hypomg / _given_normomg: the hypo-/normomagnesemia results looking for X
--     (pair_direction 'from_mg'; hypermagnesemia results index neither).
--   hypomg_given_abnormality: the results abnormal for X looking for magnesium ('to_mg').
with

directed as (
    select
        case
            when pw.pair_direction = 'to_mg' then 'hypomg_given_abnormality'
            when pw.is_hypomagnesemia then 'abnormality_given_hypomg'
            else 'abnormality_given_normomg'
        end as direction,
        pw.abnormality,
        pw.patient_id,
        pw.row_id,
        pw.collected_at,
        pw.result_id_num,
        pw.result_id,
        pw.nearest_partner_s,
        pw.nearest_abnormal_partner_s,
        pw.specimen_partner,
        pw.specimen_abnormal_partner
    from int_partner_windows as pw
    cross join params as p
    where (pw.hypocalcemia_definition is null or pw.hypocalcemia_definition = p.hypocalcemia_definition)
        and (pw.pair_direction = 'to_mg' or pw.is_hypomagnesemia or pw.is_normomagnesemia)
),

windowed as (
    select
        d.direction,
        d.abnormality,
        w.window_id,
        d.patient_id,
        d.row_id,
        d.collected_at,
        d.result_id_num,
        d.result_id,
        (w.uses_specimen and d.specimen_partner)
            or coalesce(d.nearest_partner_s <= w.window_seconds, false) as is_measured,
        (w.uses_specimen and d.specimen_abnormal_partner)
            or coalesce(d.nearest_abnormal_partner_s <= w.window_seconds, false) as is_abnormal
    from directed as d
    cross join param_windows as w
)

select * from windowed
