-- int_care_unit_patients: how many distinct patients have a loaded result in each care unit
-- (docs/definitions.md section 4, Strata). Grain: one row per care unit named by a loaded result;
-- results without a care unit are not counted. mart_cooccurrence_strata shows a unit shared by fewer
-- than params.min_cell_size patients as 'other' (section 7). A count of patients per unit is a sum over
-- patients, so a nightly run brings it up to date from the night's patients (pipelines/incremental.py).
select
    care_unit,
    count(distinct patient_id) as patients
from int_lab_results
where care_unit is not null
group by care_unit
