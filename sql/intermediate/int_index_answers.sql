-- int_index_answers: each index row's answer to each co-occurrence question at the configured
-- hypocalcemia definition (docs/definitions.md section 4, Directions, Levels and "Flags as bits").
-- Grain: one row per (window, index result of int_index_windows, definition of
-- param_abnormality_definitions at params.hypocalcemia_definition), for the index classes of the three
-- directions ('hypo', 'normo', 'abnormal'). The one place the bit tests of a question are written:
--   is_index: the row is an index result of the direction for this abnormality;
--   is_measured / is_abnormal: the partner was measured / abnormal in the window (result level);
--   is_first_index / is_first_measured: the row is the patient's first index row / first with the
--   partner measured, so the patient level counts it (int_index_windows' first_* bits).
-- A view: mart_cooccurrence, mart_cooccurrence_strata and mart_cooccurrence_clusters each sum it their way.
with

definitions as (
    select d.abnormality, d.measured_bit, d.abnormal_bit
    from param_abnormality_definitions as d
    cross join params as p
    where d.hypocalcemia_definition is null or d.hypocalcemia_definition = p.hypocalcemia_definition
),

final as (
    select
        case iw.index_class
            when 'hypo' then 'abnormality_given_hypomg'
            when 'normo' then 'abnormality_given_normomg'
            else 'hypomg_given_abnormality'
        end as direction,
        d.abnormality,
        iw.window_id,
        iw.row_id,
        iw.patient_id,
        case when iw.index_class = 'abnormal' then (iw.own_bits & d.abnormal_bit) <> 0 else true end as is_index,
        case
            when iw.index_class = 'abnormal'
                then (iw.own_bits & d.abnormal_bit) <> 0 and (iw.partner_bits & b.mg_measured_bit) <> 0
            else (iw.partner_bits & d.measured_bit) <> 0
        end as is_measured,
        case
            when iw.index_class = 'abnormal' then (iw.partner_bits & b.hypomg_bit) <> 0
            else (iw.partner_bits & d.abnormal_bit) <> 0
        end as is_abnormal,
        case
            when iw.index_class = 'abnormal' then (iw.first_index_bits & d.abnormal_bit) <> 0
            else iw.first_index_bits <> 0
        end as is_first_index,
        case
            when iw.index_class = 'abnormal' then (iw.first_eligible_bits & d.abnormal_bit) <> 0
            else (iw.first_eligible_bits & d.measured_bit) <> 0
        end as is_first_measured
    from int_index_windows as iw
    cross join definitions as d
    cross join param_bits as b
    where iw.index_class in ('hypo', 'normo', 'abnormal')
)

select * from final
