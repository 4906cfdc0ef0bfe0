-- stg_medication_rows: the fate of every medication row read (analysis plan sections 1.2 and 6).
-- Grain: one row per input medication row (raw_medications); read = loaded + quarantined.
-- Quarantine reasons, first in this order: missing_patient_id; bad_timestamp (start_at unreadable,
-- or a stop_at given but unreadable: dropping it silently would lose the order's end).
-- A date without a time means 00:00 (plan 1.2). Medications have no out-of-scope state: rows that
-- match no drug class are loaded and simply belong to no class.
with

source_rows as (
    select
        r.row_id,
        r.source_file,
        r.source_row,
        nullif(trim(r.patient_id), '') as patient_id,
        trim(r.start_at) as start_at_text,
        nullif(trim(r.stop_at), '') as stop_at_text,
        trim(r.drug) as drug,
        nullif(trim(r.route), '') as route,
        upper(nullif(trim(r.atc_code), '')) as atc_code,
        nullif(trim(r.rxnorm_code), '') as rxnorm_code,
        nullif(trim(r.dose), '') as dose,
        nullif(trim(r.dose_unit), '') as dose_unit,
        nullif(trim(r.encounter_id), '') as encounter_id
    from raw_medications as r
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
            when p.patient_id is null or p.start_at is null
                or (p.stop_at_text is not null and p.stop_at is null) then 'quarantined'
            else 'loaded'
        end as status,
        case
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
        p.encounter_id
    from parsed as p
)

select * from final
