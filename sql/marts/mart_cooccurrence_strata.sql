-- mart_cooccurrence_strata: every co-occurrence row's counts by calendar year, care unit, age and sex
-- (docs/definitions.md section 4, Strata). Grain: one row per abnormality x direction x window x level x
-- stratum ('year', 'care_unit', 'age', 'sex' or 'age_sex') x stratum value found; rows without a value
-- are absent (zero). An index result's stratum is its own: the year of its collection time, its care unit
-- ('unknown' when it has none; 'other' for a unit shared by fewer than min_cell_size patients, counted in
-- int_care_unit_patients, as in mart_audit), the patient's age in whole years at it (collection year minus birth year; pipelines/epi.py
-- groups ages into the configured bands) and sex (mart_patient_demographics; 'unknown' without a
-- loaded patients row), and 'age|sex' for age-sex standardisation.
-- The patient level counts each patient in the stratum of the row that counts them (their first index
-- row, their first row with the partner measured), so the strata of every row sum to mart_cooccurrence's.
with

strata as (
    -- each index result's own strata (index results only: the join below then holds a quarter of the
    -- results, not every one)
    select
        r.row_id,
        strftime(r.collected_at, '%Y') as year_value,
        case
            when r.care_unit is null then 'unknown'
            when u.patients >= p.min_cell_size then r.care_unit
            else 'other'
        end as unit_value,
        coalesce(cast(cast(cast(strftime(r.collected_at, '%Y') as double) - d.birth_year as bigint) as varchar),
            'unknown') as age_value,
        coalesce(d.sex, 'unknown') as sex_value
    from int_lab_results as r
    left join int_care_unit_patients as u on u.care_unit = r.care_unit
    left join mart_patient_demographics as d on d.patient_id = r.patient_id and d.status = 'loaded'
    cross join params as p
    where r.row_id in (select row_id from int_index_windows)
),

stratum_keys as (
    -- each combination of the four strata values found, numbered, so the answers below are joined
    -- and grouped by one number instead of four texts (no value is null: a loaded result has a
    -- collection time, and the other three have a default)
    select year_value, unit_value, age_value, sex_value,
        row_number() over (order by year_value, unit_value, age_value, sex_value) as stratum_key
    from (select distinct year_value, unit_value, age_value, sex_value from strata) as v
),

row_strata as (
    select s.row_id, k.stratum_key
    from strata as s
    inner join stratum_keys as k
        on k.year_value = s.year_value and k.unit_value = s.unit_value and k.age_value = s.age_value
        and k.sex_value = s.sex_value
),

counted_by_key as (
    select
        a.direction, a.abnormality, a.window_id, r.stratum_key,
        sum(case when a.is_index then 1 else 0 end) as index_count,
        sum(case when a.is_measured then 1 else 0 end) as denominator,
        sum(case when a.is_measured and a.is_abnormal then 1 else 0 end) as numerator,
        sum(case when a.is_first_index then 1 else 0 end) as first_index_count,
        sum(case when a.is_first_measured then 1 else 0 end) as first_denominator,
        sum(case when a.is_first_measured and a.is_abnormal then 1 else 0 end) as first_numerator
    from int_index_answers as a
    inner join row_strata as r on r.row_id = a.row_id
    group by a.direction, a.abnormality, a.window_id, r.stratum_key
),

keyed as (
    select c.direction, c.abnormality, c.window_id, k.year_value, k.unit_value, k.age_value, k.sex_value,
        c.index_count, c.denominator, c.numerator, c.first_index_count, c.first_denominator, c.first_numerator
    from counted_by_key as c
    inner join stratum_keys as k on k.stratum_key = c.stratum_key
),

stratified as (
    select direction, abnormality, window_id, 'year' as stratum, year_value as stratum_value,
        index_count, denominator, numerator, first_index_count, first_denominator, first_numerator
    from keyed
    union all
    select direction, abnormality, window_id, 'care_unit', unit_value,
        index_count, denominator, numerator, first_index_count, first_denominator, first_numerator
    from keyed
    union all
    select direction, abnormality, window_id, 'age', age_value,
        index_count, denominator, numerator, first_index_count, first_denominator, first_numerator
    from keyed
    union all
    select direction, abnormality, window_id, 'sex', sex_value,
        index_count, denominator, numerator, first_index_count, first_denominator, first_numerator
    from keyed
    union all
    select direction, abnormality, window_id, 'age_sex', age_value || '|' || sex_value,
        index_count, denominator, numerator, first_index_count, first_denominator, first_numerator
    from keyed
),

counted as (
    select direction, abnormality, window_id, 'result' as level, stratum, stratum_value,
        sum(index_count) as index_count, sum(denominator) as denominator, sum(numerator) as numerator
    from stratified
    group by direction, abnormality, window_id, stratum, stratum_value
    union all
    select direction, abnormality, window_id, 'patient', stratum, stratum_value,
        sum(first_index_count), sum(first_denominator), sum(first_numerator)
    from stratified
    group by direction, abnormality, window_id, stratum, stratum_value
),

final as (
    select
        c.abnormality,
        c.direction,
        w.window_name,
        c.level,
        c.stratum,
        c.stratum_value,
        cast(c.numerator as bigint) as numerator,
        cast(c.denominator as bigint) as denominator,
        cast(c.index_count as bigint) as index_count
    from counted as c
    inner join param_windows as w on w.window_id = c.window_id
    where c.index_count > 0 or c.denominator > 0
)

select abnormality, direction, window_name, level, stratum, stratum_value, numerator, denominator, index_count
from final
