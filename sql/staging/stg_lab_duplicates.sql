-- stg_lab_duplicates: the later copies among the valid lab rows (docs/definitions.md section 2,
-- Duplicates). Grain: one row per lab row that repeats an earlier valid row (stg_lab_parsed status
-- 'loaded') on the plan's duplicate key: patient, analyte, collection time, value, unit and specimen
-- (a missing specimen matches a missing one). The first copy (lowest row_id) stays loaded;
-- stg_lab_rows quarantines the others as duplicate.
-- Cost: the key is hashed first, so only rows whose hash repeats are compared on the key itself
-- (grouping 100M rows by one number stays in memory where grouping by six text and time columns
-- spills); the columns are read back from the stored stg_lab_parsed, not carried through its query.
with

valid as (
    select row_id, patient_id, analyte, collected_at, value_num, unit_key, coalesce(specimen_id, '') as specimen_key
    from stg_lab_parsed
    where status = 'loaded'
),

repeated_hashes as (
    select hash(patient_id, analyte, collected_at, value_num, unit_key, specimen_key) as key_hash
    from valid
    group by hash(patient_id, analyte, collected_at, value_num, unit_key, specimen_key)
    having count(*) > 1
),

suspects as (
    select *
    from valid
    where hash(patient_id, analyte, collected_at, value_num, unit_key, specimen_key)
        in (select key_hash from repeated_hashes)
),

first_copies as (
    select patient_id, analyte, collected_at, value_num, unit_key, specimen_key, min(row_id) as first_row_id
    from suspects
    group by patient_id, analyte, collected_at, value_num, unit_key, specimen_key
    having count(*) > 1
),

final as (
    select s.row_id, s.patient_id
    from suspects as s
    join first_copies as f
        on f.patient_id = s.patient_id and f.analyte = s.analyte and f.collected_at = s.collected_at
        and f.value_num = s.value_num and f.unit_key = s.unit_key and f.specimen_key = s.specimen_key
    where s.row_id > f.first_row_id
)

select row_id, patient_id from final
