-- int_cooccurrence_index: the index results of every co-occurrence direction, with whether the
-- partner was measured, and abnormal, in each window (analysis plan section 4, Directions).
-- Grain: one row per (direction, abnormality, index result), at the configured hypocalcemia
-- definition (params.hypocalcemia_definition); a view over int_partner_windows, read twice by
-- mart_cooccurrence (counts, then each patient's first index result) without being stored again.
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
        pw.measured_same_draw,
        pw.abnormal_same_draw,
        pw.measured_24h,
        pw.abnormal_24h
    from int_partner_windows as pw
    cross join params as p
    where (pw.hypocalcemia_definition is null or pw.hypocalcemia_definition = p.hypocalcemia_definition)
        and (pw.pair_direction = 'to_mg' or pw.is_hypomagnesemia or pw.is_normomagnesemia)
)

select * from directed
