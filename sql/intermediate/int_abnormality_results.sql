-- int_abnormality_results: every result that can show one of the abnormalities, per definition
-- (docs/definitions.md section 3). Grain: one row per (abnormality, hypocalcemia_definition, result).
-- Definitions are the rows of param_abnormality_definitions (seed abnormality_definitions, checked at
-- start-up): a result of the row's partner_analyte is abnormal when its value is below the row's
-- threshold (canonical units, strict <). value_source `result` judges the result's own value;
-- `corrected_calcium` judges its albumin-corrected value (int_calcium_corrected), so only total
-- calcium results with an albumin of the same draw have a row for that definition.
-- Each branch joins int_lab_flags to the small definitions table: no shared CTE of every result.
with

final as (
    select d.definition_id, d.abnormality, d.hypocalcemia_definition,
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        f.value_canonical < d.threshold_canonical as is_abnormal
    from int_lab_flags as f
    inner join param_abnormality_definitions as d on d.partner_analyte = f.analyte
    where d.value_source = 'result'
    union all
    select d.definition_id, d.abnormality, d.hypocalcemia_definition,
        f.row_id, f.patient_id, f.collected_at, f.specimen_id, f.result_id, f.result_id_num,
        c.corrected_calcium_mmol_l < d.threshold_canonical
    from int_lab_flags as f
    inner join int_calcium_corrected as c on c.row_id = f.row_id
    inner join param_abnormality_definitions as d on d.partner_analyte = f.analyte
    where d.value_source = 'corrected_calcium'
)

select * from final
