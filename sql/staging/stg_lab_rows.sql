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
-- Whitespace: every text field loses the characters of params.whitespace_chars (spaces, tabs,
-- no-break and other Unicode spaces) at both ends. Spaces go first, by the plain trim; the full
-- set (a slower trim) runs only on a value that still starts or ends outside printable ASCII.
-- Numbers follow the plan's grammar (optional sign, digits with at most one decimal point,
-- optional exponent), checked before the cast: the engine's cast also reads digit separators
-- (1_38), NaN and inf, which are non_numeric_value. A censor sign (<, >, <=, >=) may precede it.
-- Fluid: a stated fluid always wins; a code's own fluid (1994-3: whole blood) applies only when
-- the fluid column is blank.
-- Analyte codes (seed analyte_codes): LOINC exactly, canonical names case-insensitively.
-- Unit factors and plausible ranges come from the seeds unit_factors and analytes.
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
    -- the same pattern for every field: keep a value whose ends are printable ASCII, else trim
    -- the whole whitespace set (the ends read with substr: left and right cost about four times as much)
    select
        t.row_id,
        t.source_file,
        t.source_row,
        t.parse_error,
        case when substr(t.patient_id, 1, 1) between '!' and '~' and substr(t.patient_id, -1, 1) between '!' and '~'
            then t.patient_id else trim(t.patient_id, p.whitespace_chars) end as patient_id,
        case when substr(t.collected_at, 1, 1) between '!' and '~' and substr(t.collected_at, -1, 1) between '!' and '~'
            then t.collected_at else trim(t.collected_at, p.whitespace_chars) end as collected_at,
        case when substr(t.analyte, 1, 1) between '!' and '~' and substr(t.analyte, -1, 1) between '!' and '~'
            then t.analyte else trim(t.analyte, p.whitespace_chars) end as analyte,
        case when substr(t.value, 1, 1) between '!' and '~' and substr(t.value, -1, 1) between '!' and '~'
            then t.value else trim(t.value, p.whitespace_chars) end as value,
        case when substr(t.unit, 1, 1) between '!' and '~' and substr(t.unit, -1, 1) between '!' and '~'
            then t.unit else trim(t.unit, p.whitespace_chars) end as unit,
        case when substr(t.result_id, 1, 1) between '!' and '~' and substr(t.result_id, -1, 1) between '!' and '~'
            then t.result_id else trim(t.result_id, p.whitespace_chars) end as result_id,
        case when substr(t.specimen_id, 1, 1) between '!' and '~' and substr(t.specimen_id, -1, 1) between '!' and '~'
            then t.specimen_id else trim(t.specimen_id, p.whitespace_chars) end as specimen_id,
        case when substr(t.encounter_id, 1, 1) between '!' and '~' and substr(t.encounter_id, -1, 1) between '!' and '~'
            then t.encounter_id else trim(t.encounter_id, p.whitespace_chars) end as encounter_id,
        case when substr(t.fluid, 1, 1) between '!' and '~' and substr(t.fluid, -1, 1) between '!' and '~'
            then t.fluid else trim(t.fluid, p.whitespace_chars) end as fluid,
        case when substr(t.care_unit, 1, 1) between '!' and '~' and substr(t.care_unit, -1, 1) between '!' and '~'
            then t.care_unit else trim(t.care_unit, p.whitespace_chars) end as care_unit
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
),

mapped as (
    select
        s.*,
        c.analyte,
        case
            when s.fluid_key = '' and nullif(c.code_fluid, '') is not null then c.code_fluid
            else coalesce(f.fluid_class, 'other')
        end as fluid_class
    from source_rows as s
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
        v.collected_at_text,
        v.analyte_code,
        v.value_text,
        v.unit_key,
        v.unit,
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
    -- sorts of whole rows keep this linear and light at 100M rows. Reads raw_labs itself (the same
    -- trimming as spaces_trimmed and trimmed, so the same ids as source_rows.given_result_id): a
    -- second reference to source_rows would make the engine materialize every row read
    select i.given_result_id, max(i.row_id) as latest_row_id
    from (
        select
            s.row_id,
            nullif(
                case when substr(s.result_id, 1, 1) between '!' and '~' and substr(s.result_id, -1, 1) between '!' and '~'
                    then s.result_id else trim(s.result_id, p.whitespace_chars) end,
                '') as given_result_id
        from (select row_id, trim(result_id) as result_id from raw_labs) as s
        cross join params as p
    ) as i
    where i.given_result_id is not null
    group by i.given_result_id
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
        d.collected_at_text,
        d.collected_at,
        d.analyte_code,
        d.analyte,
        d.fluid_class,
        d.value_text,
        d.value_num,
        d.censored,
        d.unit,
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
