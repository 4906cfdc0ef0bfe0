-- mart_patient_demographics: the fate of every row of the optional patients table, and each loaded
-- patient's sex and birth year (docs/definitions.md section 1, Demographics). Row-level: never published;
-- results.json shows only its counts (row accounting) and the strata built from it.
-- Grain: one row per raw_patients row. status 'loaded' or 'quarantined' with reason, in order of
-- precedence: malformed_row, missing_patient_id, non_numeric_value (a birth year or age that is not a
-- number), duplicate (a later row of a patient already loaded). Text is trimmed of params.whitespace_chars
-- as the lab rows are, so patient ids match theirs.
--   sex: 'female' / 'male' (F, female, M, male; OMOP concepts 8532, 8507), 'unknown' when blank or an
--     OMOP unknown concept (0, 8551), 'other' for any other value.
--   birth_year: the birth year given; else anchor_year - anchor_age (MIMIC-IV); else the year of the
--     patient's first loaded lab result minus age_at_first_result; null when none of these is given.
with

parsed as (
    select
        r.row_id,
        r.source_file,
        r.source_row,
        r.parse_error,
        nullif(trim(r.patient_id, p.whitespace_chars), '') as patient_id,
        lower(coalesce(trim(r.sex, p.whitespace_chars), '')) as sex_text,
        coalesce(trim(r.birth_year, p.whitespace_chars), '') as birth_year_text,
        coalesce(trim(r.age_at_first_result, p.whitespace_chars), '') as age_first_text,
        coalesce(trim(r.anchor_age, p.whitespace_chars), '') as anchor_age_text,
        coalesce(trim(r.anchor_year, p.whitespace_chars), '') as anchor_year_text
    from raw_patients as r
    cross join params as p
),

numbers as (
    select
        parsed.*,
        try_cast(birth_year_text as double) as birth_year_num,
        try_cast(age_first_text as double) as age_first_num,
        try_cast(anchor_age_text as double) as anchor_age_num,
        try_cast(anchor_year_text as double) as anchor_year_num
    from parsed
),

checked as (
    select
        numbers.*,
        case
            when parse_error is not null then 'malformed_row'
            when patient_id is null then 'missing_patient_id'
            when (birth_year_text <> '' and birth_year_num is null)
                or (age_first_text <> '' and age_first_num is null)
                or (anchor_age_text <> '' and anchor_age_num is null)
                or (anchor_year_text <> '' and anchor_year_num is null) then 'non_numeric_value'
        end as first_reason
    from numbers
),

ranked as (
    select
        checked.*,
        case when first_reason is null then row_number() over (
            partition by patient_id, first_reason is null order by source_file, source_row, row_id
        ) end as valid_rank
    from checked
),

first_results as (
    select patient_id, min(collected_at) as first_at
    from int_lab_results
    group by patient_id
),

final as (
    select
        r.row_id,
        r.source_file,
        r.source_row,
        r.patient_id,
        case when r.first_reason is null and r.valid_rank = 1 then 'loaded' else 'quarantined' end as status,
        coalesce(r.first_reason, case when r.valid_rank > 1 then 'duplicate' end) as reason,
        case
            when r.sex_text in ('f', 'female', '8532') then 'female'
            when r.sex_text in ('m', 'male', '8507') then 'male'
            when r.sex_text in ('', '0', '8551') then 'unknown'
            else 'other'
        end as sex,
        case
            when r.birth_year_num is not null then r.birth_year_num
            when r.anchor_year_num is not null and r.anchor_age_num is not null then r.anchor_year_num - r.anchor_age_num
            when r.age_first_num is not null and f.first_at is not null
                then cast(strftime(f.first_at, '%Y') as double) - r.age_first_num
        end as birth_year
    from ranked as r
    left join first_results as f on f.patient_id = r.patient_id
)

select row_id, source_file, source_row, patient_id, status, reason, sex, birth_year from final
