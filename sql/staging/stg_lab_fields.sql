-- stg_lab_fields: every raw lab row's fields as text, trimmed (docs/definitions.md section 2, Whitespace).
-- Grain: one row per input lab row (raw_labs), same row_id. stg_lab_rows reads it to decide each row's
-- fate; the provenance of a quarantined or corrected row (its time, code, value and unit as given) is
-- read from here by row_id (int_quarantine, int_result_corrections), so stg_lab_rows stores no second
-- copy of these texts. A view: its readers compute it for the rows they read.
-- Whitespace: every text field loses the characters of params.whitespace_chars (spaces, tabs,
-- no-break and other Unicode spaces) at both ends. Spaces go first, by the plain trim; the full
-- set (a slower trim) runs only on a value that still starts or ends outside printable ASCII.
-- Empty fields become null where the rules read "missing" (patient, result, specimen, encounter,
-- care unit); the fluid is compared as a lower-case key, '' when blank.
with

spaces_trimmed as (
    select
        r.row_id,
        r.source_file,
        r.source_row,
        r.parse_error,
        trim(r.patient_id) as patient_id,
        trim(r.collected_at) as collected_at,
        trim(r.analyte) as analyte,
        trim(r.value) as value,
        trim(r.unit) as unit,
        trim(r.result_id) as result_id,
        trim(r.specimen_id) as specimen_id,
        trim(r.encounter_id) as encounter_id,
        trim(r.fluid) as fluid,
        trim(r.care_unit) as care_unit
    from raw_labs as r
),

trimmed as (
    -- the same pattern for every field: keep a value that is empty or whose ends are printable ASCII,
    -- else trim the whole whitespace set (the ends read with substr: left and right cost about four
    -- times as much; the set is a column, so its trim costs about 0.5 microseconds a value even on an
    -- empty one, hence the empty test)
    select
        t.row_id,
        t.source_file,
        t.source_row,
        t.parse_error,
        case when t.patient_id = '' or (substr(t.patient_id, 1, 1) between '!' and '~' and substr(t.patient_id, -1, 1) between '!' and '~')
            then t.patient_id else trim(t.patient_id, p.whitespace_chars) end as patient_id,
        case when t.collected_at = '' or (substr(t.collected_at, 1, 1) between '!' and '~' and substr(t.collected_at, -1, 1) between '!' and '~')
            then t.collected_at else trim(t.collected_at, p.whitespace_chars) end as collected_at,
        case when t.analyte = '' or (substr(t.analyte, 1, 1) between '!' and '~' and substr(t.analyte, -1, 1) between '!' and '~')
            then t.analyte else trim(t.analyte, p.whitespace_chars) end as analyte,
        case when t.value = '' or (substr(t.value, 1, 1) between '!' and '~' and substr(t.value, -1, 1) between '!' and '~')
            then t.value else trim(t.value, p.whitespace_chars) end as value,
        case when t.unit = '' or (substr(t.unit, 1, 1) between '!' and '~' and substr(t.unit, -1, 1) between '!' and '~')
            then t.unit else trim(t.unit, p.whitespace_chars) end as unit,
        case when t.result_id = '' or (substr(t.result_id, 1, 1) between '!' and '~' and substr(t.result_id, -1, 1) between '!' and '~')
            then t.result_id else trim(t.result_id, p.whitespace_chars) end as result_id,
        case when t.specimen_id = '' or (substr(t.specimen_id, 1, 1) between '!' and '~' and substr(t.specimen_id, -1, 1) between '!' and '~')
            then t.specimen_id else trim(t.specimen_id, p.whitespace_chars) end as specimen_id,
        case when t.encounter_id = '' or (substr(t.encounter_id, 1, 1) between '!' and '~' and substr(t.encounter_id, -1, 1) between '!' and '~')
            then t.encounter_id else trim(t.encounter_id, p.whitespace_chars) end as encounter_id,
        case when t.fluid = '' or (substr(t.fluid, 1, 1) between '!' and '~' and substr(t.fluid, -1, 1) between '!' and '~')
            then t.fluid else trim(t.fluid, p.whitespace_chars) end as fluid,
        case when t.care_unit = '' or (substr(t.care_unit, 1, 1) between '!' and '~' and substr(t.care_unit, -1, 1) between '!' and '~')
            then t.care_unit else trim(t.care_unit, p.whitespace_chars) end as care_unit
    from spaces_trimmed as t
    cross join params as p
),

final as (
    select
        t.row_id,
        t.source_file,
        t.source_row,
        t.parse_error,
        nullif(t.patient_id, '') as patient_id,
        t.collected_at as collected_at_text,
        upper(t.analyte) as analyte_code,
        t.value as value_text,
        lower(t.unit) as unit_key,
        t.unit,
        nullif(t.result_id, '') as given_result_id,
        nullif(t.specimen_id, '') as specimen_id,
        nullif(t.encounter_id, '') as encounter_id,
        coalesce(lower(t.fluid), '') as fluid_key,
        nullif(t.care_unit, '') as care_unit
    from trimmed as t
)

select * from final
