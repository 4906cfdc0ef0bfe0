-- int_lab_flags: abnormality flags of every loaded result (docs/definitions.md section 3).
-- Grain: one row per loaded lab result. Thresholds come from the one-row `params` table, already in
-- canonical units and computed by the same floating-point multiplication as the values, so a value
-- reported exactly at a quoted mg/dL threshold is never flagged. All comparisons are strict (<).
with

final as (
    select
        r.row_id,
        r.patient_id,
        r.collected_at,
        r.specimen_id,
        r.analyte,
        r.value_canonical,
        r.result_id,
        r.result_id_num,
        r.care_unit,
        r.analyte = 'MG' and r.value_canonical < p.hypomagnesemia_mmol_l as is_hypomagnesemia,
        r.analyte = 'MG' and r.value_canonical >= p.hypomagnesemia_mmol_l
            and r.value_canonical <= p.normomagnesemia_upper_mmol_l as is_normomagnesemia,
        r.analyte = 'K' and r.value_canonical < p.hypokalemia_mmol_l as is_hypokalemia,
        r.analyte = 'NA' and r.value_canonical < p.hyponatremia_mmol_l as is_hyponatremia,
        r.analyte = 'PHOS' and r.value_canonical < p.hypophosphatemia_mmol_l as is_hypophosphatemia,
        r.analyte = 'CA' and r.value_canonical < p.hypocalcemia_mmol_l as is_hypocalcemia_total,
        r.analyte = 'ICA' and r.value_canonical < p.ionized_hypocalcemia_mmol_l as is_hypocalcemia_ionized
    from int_lab_results as r
    cross join params as p
)

select * from final
