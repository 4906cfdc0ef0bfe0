-- stg_medication_rows: the fate of every medication row read (docs/definitions.md sections 1.2, 2 and 6).
-- Grain: one row per input medication row (raw_medications); read = loaded + quarantined.
-- Quarantine reasons, first in this order: malformed_row (a malformed line of a text file:
-- raw_medications.parse_error set by ingest, every field null); missing_patient_id; bad_timestamp
-- (start_at unreadable, or a stop_at given but unreadable: dropping it silently would lose the
-- order's end).
-- Whitespace: every text field loses the characters of params.whitespace_chars (spaces, tabs,
-- no-break and other Unicode spaces) at both ends, as in stg_lab_fields: spaces by the plain trim,
-- the full set only on a value that still starts or ends outside printable ASCII.
-- A date without a time means 00:00 (plan 1.2). Medications have no out-of-scope state: rows that
-- match no drug class are loaded and simply belong to no class.
with

spaces_trimmed as (
    select
        r.row_id,
        r.source_file,
        r.source_row,
        r.parse_error,
        trim(r.patient_id) as patient_id,
        trim(r.start_at) as start_at,
        trim(r.stop_at) as stop_at,
        trim(r.drug) as drug,
        trim(r.route) as route,
        trim(r.atc_code) as atc_code,
        trim(r.rxnorm_code) as rxnorm_code,
        trim(r.dose) as dose,
        trim(r.dose_unit) as dose_unit,
        trim(r.encounter_id) as encounter_id
    from raw_medications as r
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
        case when t.start_at = '' or (substr(t.start_at, 1, 1) between '!' and '~' and substr(t.start_at, -1, 1) between '!' and '~')
            then t.start_at else trim(t.start_at, p.whitespace_chars) end as start_at,
        case when t.stop_at = '' or (substr(t.stop_at, 1, 1) between '!' and '~' and substr(t.stop_at, -1, 1) between '!' and '~')
            then t.stop_at else trim(t.stop_at, p.whitespace_chars) end as stop_at,
        case when t.drug = '' or (substr(t.drug, 1, 1) between '!' and '~' and substr(t.drug, -1, 1) between '!' and '~')
            then t.drug else trim(t.drug, p.whitespace_chars) end as drug,
        case when t.route = '' or (substr(t.route, 1, 1) between '!' and '~' and substr(t.route, -1, 1) between '!' and '~')
            then t.route else trim(t.route, p.whitespace_chars) end as route,
        case when t.atc_code = '' or (substr(t.atc_code, 1, 1) between '!' and '~' and substr(t.atc_code, -1, 1) between '!' and '~')
            then t.atc_code else trim(t.atc_code, p.whitespace_chars) end as atc_code,
        case when t.rxnorm_code = '' or (substr(t.rxnorm_code, 1, 1) between '!' and '~' and substr(t.rxnorm_code, -1, 1) between '!' and '~')
            then t.rxnorm_code else trim(t.rxnorm_code, p.whitespace_chars) end as rxnorm_code,
        case when t.dose = '' or (substr(t.dose, 1, 1) between '!' and '~' and substr(t.dose, -1, 1) between '!' and '~')
            then t.dose else trim(t.dose, p.whitespace_chars) end as dose,
        case when t.dose_unit = '' or (substr(t.dose_unit, 1, 1) between '!' and '~' and substr(t.dose_unit, -1, 1) between '!' and '~')
            then t.dose_unit else trim(t.dose_unit, p.whitespace_chars) end as dose_unit,
        case when t.encounter_id = '' or (substr(t.encounter_id, 1, 1) between '!' and '~' and substr(t.encounter_id, -1, 1) between '!' and '~')
            then t.encounter_id else trim(t.encounter_id, p.whitespace_chars) end as encounter_id
    from spaces_trimmed as t
    cross join params as p
),

source_rows as (
    select
        t.row_id,
        t.source_file,
        t.source_row,
        t.parse_error,
        nullif(t.patient_id, '') as patient_id,
        t.start_at as start_at_text,
        nullif(t.stop_at, '') as stop_at_text,
        t.drug,
        nullif(t.route, '') as route,
        upper(nullif(t.atc_code, '')) as atc_code,
        nullif(t.rxnorm_code, '') as rxnorm_code,
        nullif(t.dose, '') as dose,
        nullif(t.dose_unit, '') as dose_unit,
        nullif(t.encounter_id, '') as encounter_id
    from trimmed as t
),

parsed as (
    select
        s.*,
        case
            when regexp_matches(s.start_at_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$')
                then try_cast(replace(s.start_at_text, 'T', ' ') as timestamp)
        end as start_at,
        case
            when regexp_matches(s.stop_at_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?$')
                then try_cast(replace(s.stop_at_text, 'T', ' ') as timestamp)
        end as stop_at
    from source_rows as s
),

final as (
    select
        p.row_id,
        p.source_file,
        p.source_row,
        case
            when p.parse_error is not null or p.patient_id is null or p.start_at is null
                or (p.stop_at_text is not null and p.stop_at is null) then 'quarantined'
            else 'loaded'
        end as status,
        case
            when p.parse_error is not null then 'malformed_row'
            when p.patient_id is null then 'missing_patient_id'
            when p.start_at is null or (p.stop_at_text is not null and p.stop_at is null)
                then 'bad_timestamp'
        end as reason,
        p.patient_id,
        p.start_at_text,
        p.start_at,
        p.stop_at,
        p.drug,
        p.route,
        p.atc_code,
        p.rxnorm_code,
        p.dose,
        p.dose_unit,
        p.encounter_id,
        p.parse_error
    from parsed as p
)

select * from final
