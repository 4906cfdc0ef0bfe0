-- int_abnormality_results: every result that can show one of the four abnormalities, per definition
-- (analysis plan section 3). Grain: one row per (abnormality, hypocalcemia_definition, result).
-- hypokalemia: K; hyponatremia: NA; hypophosphatemia: PHOS (hypocalcemia_definition null for these).
-- hypocalcemia: `total` = CA < threshold, uncorrected; `corrected` = CA with a same-draw albumin,
-- judged by its corrected value (int_calcium_corrected); `ionized` = ICA < ionized threshold.
-- Each branch reads int_lab_flags itself: one shared CTE read by six branches would make the
-- engine materialize every column of every result first (all 100M of them at scale).
with

final as (
    select 'hypokalemia' as abnormality, cast(null as varchar) as hypocalcemia_definition,
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.is_hypokalemia as is_abnormal
    from int_lab_flags as f where f.analyte = 'K'
    union all
    select 'hyponatremia', cast(null as varchar),
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.is_hyponatremia
    from int_lab_flags as f where f.analyte = 'NA'
    union all
    select 'hypophosphatemia', cast(null as varchar),
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.is_hypophosphatemia
    from int_lab_flags as f where f.analyte = 'PHOS'
    union all
    select 'hypocalcemia', 'total',
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.is_hypocalcemia_total
    from int_lab_flags as f where f.analyte = 'CA'
    union all
    select 'hypocalcemia', 'corrected',
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        c.corrected_calcium_mmol_l < p.hypocalcemia_mmol_l
    from int_lab_flags as f
    join int_calcium_corrected as c on c.row_id = f.row_id
    cross join params as p
    union all
    select 'hypocalcemia', 'ionized',
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.is_hypocalcemia_ionized
    from int_lab_flags as f where f.analyte = 'ICA'
)

select * from final
