-- int_result_bits: every loaded result's flags as bits (docs/definitions.md section 4, "Flags as bits").
-- Grain: one row per (result, flag source): per abnormality definition whose partner analyte the
-- result is (value_source `result`: its own value; `corrected_calcium`: its albumin-corrected value,
-- so only calcium results with an albumin of the same draw), and one row per magnesium result.
-- bits is the sum of distinct powers of two, so the sum is the bitwise OR:
--   definition d: measured_bit (its partner was measured) + abnormal_bit (below the threshold, strict <);
--   magnesium: mg_measured_bit + hypomg_bit (below the configured threshold) + each sensitivity-grid
--   threshold's grid_bit it lies below (values computed by the same multiplication as thresholds).
-- index_class: a magnesium result's class by its own value ('hypo', 'normo', 'other'); null otherwise.
-- A view: int_index_windows reads it three ways (events, specimens, index results) without a stored copy.
with

definition_flags as (
    select f.row_id, f.patient_id, epoch(f.collected_at) as at_s, f.specimen_id, f.result_id_num, f.result_id,
        cast(null as varchar) as index_class,
        d.measured_bit + case when f.value_canonical < d.threshold_canonical then d.abnormal_bit else 0 end as bits
    from int_lab_flags as f
    inner join param_abnormality_definitions as d on d.partner_analyte = f.analyte
    where d.value_source = 'result'
    union all
    select f.row_id, f.patient_id, epoch(f.collected_at), f.specimen_id, f.result_id_num, f.result_id,
        cast(null as varchar),
        d.measured_bit + case when c.corrected_calcium_mmol_l < d.threshold_canonical then d.abnormal_bit else 0 end
    from int_lab_flags as f
    inner join int_calcium_corrected as c on c.row_id = f.row_id
    inner join param_abnormality_definitions as d on d.partner_analyte = f.analyte
    where d.value_source = 'corrected_calcium'
),

grid_bits as (
    select f.row_id, cast(sum(t.grid_bit) as bigint) as bits
    from int_lab_flags as f
    inner join param_mg_thresholds as t on f.value_canonical < t.threshold_mmol_l
    where f.analyte = 'MG'
    group by f.row_id
),

magnesium_flags as (
    select f.row_id, f.patient_id, epoch(f.collected_at) as at_s, f.specimen_id, f.result_id_num, f.result_id,
        case when f.is_hypomagnesemia then 'hypo' when f.is_normomagnesemia then 'normo' else 'other' end
            as index_class,
        b.mg_measured_bit + case when f.is_hypomagnesemia then b.hypomg_bit else 0 end + coalesce(g.bits, 0) as bits
    from int_lab_flags as f
    cross join param_bits as b
    left join grid_bits as g on g.row_id = f.row_id
    where f.analyte = 'MG'
),

final as (
    select row_id, patient_id, at_s, specimen_id, result_id_num, result_id, index_class, bits from definition_flags
    union all
    select row_id, patient_id, at_s, specimen_id, result_id_num, result_id, index_class, bits from magnesium_flags
)

select * from final
