-- stg_lab_rows: the fate of every lab row read (docs/definitions.md sections 1.1, 2 and "Row accounting").
-- Grain: one row per input lab row (raw_labs), so read = loaded + out_of_scope + quarantined
-- (+ superseded) by construction. Each row gets status 'loaded', 'out_of_scope', 'quarantined' or
-- 'superseded' and, if quarantined, exactly one reason, the first in the plan's order:
-- missing_patient_id, bad_timestamp, non_numeric_value, unknown_unit, implausible_value, duplicate.
-- A malformed line of a text file (raw_labs.parse_error set by ingest, every field null) is
-- quarantined as malformed_row before anything else is decided, scope included.
-- Superseded (incremental loads): a row whose source result_id appears again in a later file is
-- replaced by that correction (int_result_corrections records both); result ids that were not
-- given (row positions) never supersede anything.
-- Result id: given_result_id is the id as the file gave it, null when it gave none; the result is
-- then known by its row position (source_row), so readers take coalesce(given_result_id, source_row
-- as text), as int_lab_results does, rather than this table storing a text copy of every row's number.
-- Decisions where the plan is silent (docs/definitions.md): scope is decided first, so a row of an
-- analyte or fluid the analysis does not use is out of scope whatever else is wrong with it; a
-- timestamp with a UTC offset is bad_timestamp (the pipeline works in naive local time).
-- Fields: read trimmed from stg_lab_fields (the whitespace rule); the texts as read there (time,
-- code, value, unit, trimmed) stay in that view under the same row_id and are not stored again here.
-- Numbers follow the plan's grammar (optional sign, digits with at most one decimal point,
-- optional exponent), checked before the cast: the engine's cast also reads digit separators
-- (1_38), NaN and inf, which are non_numeric_value. A censor sign (<, >, <=, >=) may precede it.
-- Fluid: a stated fluid always wins; a code's own fluid (1994-3: whole blood) applies only when
-- the fluid column is blank.
-- Analyte codes (seed analyte_codes): LOINC exactly, canonical names case-insensitively.
-- Unit factors and plausible ranges come from the seeds unit_factors and analytes.
with

mapped as (
    select
        s.*,
        c.analyte,
        case
            when s.fluid_key = '' and nullif(c.code_fluid, '') is not null then c.code_fluid
            else coalesce(f.fluid_class, 'other')
        end as fluid_class
    from stg_lab_fields as s
    left join ref_analyte_codes as c on c.code = s.analyte_code
    left join ref_fluids as f on coalesce(f.fluid, '') = s.fluid_key
),

parsed as (
    select
        m.*,
        case
            when regexp_matches(m.collected_at_text, '^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$')
                then try_cast(replace(m.collected_at_text, 'T', ' ') as timestamp)
        end as collected_at,
        regexp_extract(m.value_text, '^(<=|>=|<|>)', 1) as censor_sign
    from mapped as m
),

number_texts as (
    -- the number after a censor sign, with the whitespace between them trimmed (censored values
    -- are few, so the full trim runs on few rows)
    select
        p.*,
        case
            when p.censor_sign = '' then p.value_text
            else trim(substr(p.value_text, length(p.censor_sign) + 1), w.whitespace_chars)
        end as number_text
    from parsed as p
    cross join params as w
),

valued as (
    select
        n.*,
        case
            when regexp_matches(n.number_text, '^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$')
                then try_cast(n.number_text as double)
        end as value_num
    from number_texts as n
),

converted as (
    -- only the columns the rest of the model needs: the duplicate search reads first_fault three
    -- times, so the engine materializes this CTE, and its width is most of the model's cost
    select
        v.row_id,
        v.source_file,
        v.source_row,
        v.parse_error,
        v.patient_id,
        v.unit_key,
        v.given_result_id,
        v.specimen_id,
        v.encounter_id,
        v.care_unit,
        v.analyte,
        v.fluid_class,
        v.collected_at,
        v.censor_sign <> '' as censored,
        v.value_num,
        u.factor,
        v.value_num * u.factor as value_canonical,
        not (v.value_num * u.factor >= a.plausible_low and v.value_num * u.factor <= a.plausible_high)
            as implausible,
        (v.analyte is not null
            and (v.fluid_class = 'serum_plasma' or (v.fluid_class = 'whole_blood' and v.analyte = 'ICA')))
            as in_scope
    from valued as v
    left join ref_unit_factors as u on u.analyte = v.analyte and u.unit = v.unit_key
    left join ref_analytes as a on a.analyte = v.analyte
),

file_ends as (
    select source_file, max(row_id) as last_row_of_file from raw_labs group by source_file
),

repeated_ids as (
    -- result ids given more than once; aggregates and joins on narrow keys instead of window
    -- sorts of whole rows keep this linear and light at 100M rows. Reads stg_lab_fields once more
    -- (a view, so only the result id's trimming runs): a second reference to a CTE above would make
    -- the engine materialize every row read
    select given_result_id, max(row_id) as latest_row_id
    from stg_lab_fields
    where given_result_id is not null
    group by given_result_id
    having count(*) > 1
),

corrected as (
    select
        c.*,
        r.latest_row_id,
        e.last_row_of_file
    from converted as c
    join file_ends as e on e.source_file = c.source_file
    left join repeated_ids as r on r.given_result_id = c.given_result_id
),

first_fault as (
    select
        c.*,
        coalesce(c.latest_row_id > c.last_row_of_file, false) as is_superseded,
        case
            when c.parse_error is not null then 'malformed_row'
            when c.latest_row_id > c.last_row_of_file then null
            when not c.in_scope then null
            when c.patient_id is null then 'missing_patient_id'
            when c.collected_at is null then 'bad_timestamp'
            when c.value_num is null then 'non_numeric_value'
            when c.factor is null then 'unknown_unit'
            when c.implausible then 'implausible_value'
        end as fault,
        -- the plan's duplicate key, hashed once (used only for rows that are otherwise valid)
        hash(c.patient_id, c.analyte, c.collected_at, c.value_num, c.unit_key, coalesce(c.specimen_id, ''))
            as duplicate_key_hash
    from corrected as c
),

repeated_hashes as (
    -- valid rows that may repeat an earlier one (the plan's duplicate key), found by a hash of the
    -- key first: grouping 100M rows by one number stays in memory where grouping by six text and
    -- time columns spills; only rows whose hash repeats are compared on the key itself. Both CTEs
    -- read first_fault directly (a shared CTE in between would be materialized once more).
    select duplicate_key_hash
    from first_fault
    where in_scope and fault is null and not is_superseded
    group by duplicate_key_hash
    having count(*) > 1
),

suspects as (
    select row_id, patient_id, analyte, collected_at, value_num, unit_key, coalesce(specimen_id, '') as specimen_key
    from first_fault
    where in_scope and fault is null and not is_superseded
        and duplicate_key_hash in (select duplicate_key_hash from repeated_hashes)
),

first_copies as (
    select patient_id, analyte, collected_at, value_num, unit_key, specimen_key, min(row_id) as first_row_id
    from suspects
    group by patient_id, analyte, collected_at, value_num, unit_key, specimen_key
    having count(*) > 1
),

duplicates as (
    select s.row_id
    from suspects as s
    join first_copies as f
        on f.patient_id = s.patient_id and f.analyte = s.analyte and f.collected_at = s.collected_at
        and f.value_num = s.value_num and f.unit_key = s.unit_key and f.specimen_key = s.specimen_key
    where s.row_id > f.first_row_id
),

deduplicated as (
    select
        f.*,
        case when d.row_id is not null then 2 else 1 end as copy_number
    from first_fault as f
    left join duplicates as d on d.row_id = f.row_id
),

final as (
    select
        d.row_id,
        d.source_file,
        d.source_row,
        case
            when d.fault = 'malformed_row' then 'quarantined'
            when d.is_superseded then 'superseded'
            when not d.in_scope then 'out_of_scope'
            when d.fault is not null or d.copy_number > 1 then 'quarantined'
            else 'loaded'
        end as status,
        case
            when d.fault is not null then d.fault
            when d.copy_number > 1 then 'duplicate'
        end as reason,
        d.patient_id,
        d.collected_at,
        d.analyte,
        d.fluid_class,
        d.value_num,
        d.censored,
        d.factor as unit_factor,
        d.value_canonical,
        d.given_result_id,
        d.latest_row_id,
        d.specimen_id,
        d.encounter_id,
        d.care_unit,
        d.parse_error
    from deduplicated as d
)

select * from final
