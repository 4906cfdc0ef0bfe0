-- stg_lab_rows: the fate of every lab row read (docs/definitions.md sections 1.1, 2 and "Row
-- accounting"): stg_lab_parsed with the duplicate decision of stg_lab_duplicates.
-- Grain: one row per input lab row (raw_labs), so read = loaded + out_of_scope + quarantined
-- (+ superseded) by construction. Each row gets status 'loaded', 'out_of_scope', 'quarantined' or
-- 'superseded' and, if quarantined, exactly one reason, the first in the plan's order:
-- missing_patient_id, bad_timestamp, non_numeric_value, unknown_unit, implausible_value, duplicate
-- (malformed_row before all, scope included). A later copy of a loaded row is quarantined as duplicate.
-- A view: the copies are few, and joining them to each reader's scan costs less than storing every
-- row a second time.
with

final as (
    select
        p.row_id,
        p.source_file,
        p.source_row,
        case when d.row_id is not null then 'quarantined' else p.status end as status,
        case when d.row_id is not null then 'duplicate' else p.reason end as reason,
        p.patient_id,
        p.collected_at,
        p.analyte,
        p.fluid_class,
        p.value_num,
        p.censored,
        p.unit_factor,
        p.value_canonical,
        p.given_result_id,
        p.latest_row_id,
        p.specimen_id,
        p.encounter_id,
        p.care_unit,
        p.parse_error
    from stg_lab_parsed as p
    left join stg_lab_duplicates as d on d.row_id = p.row_id
)

select * from final
