-- mart_audit_worklist: the quality team's review worklist (docs/definitions.md section 5, Review
-- worklist). Row-level and restricted: written only to the run's restricted/worklist.csv and
-- .xlsx with owner-only permissions, never read into results.json or the report (which state its
-- path and row count only). Grain: one row per hypokalemia episode that needs review: first every
-- episode without a magnesium check (reason 'no_mg_check', review_order 1), then every other
-- episode with low magnesium that was not repleted (reason 'low_mg_not_repleted', review_order 2).
-- seconds_to_first_mg: from the episode's start to the first valid MG in [start - 24 h, end + 24 h]
-- (null: none).
with

episodes as (
    select * from int_hypokalemia_episodes
),

flagged as (
    select
        e.*,
        case when not e.mg_checked then 1 else 2 end as review_order,
        case when not e.mg_checked then 'no_mg_check' else 'low_mg_not_repleted' end as reason
    from episodes as e
    where not e.mg_checked or (e.low_mg and not e.mg_repleted)
)

select
    review_order,
    reason,
    patient_id,
    episode_number,
    encounter_id,
    care_unit,
    start_at,
    end_at,
    lowest_k_mmol_l,
    severity,
    k_supplement_given,
    epoch(first_mg_in_span_at) - epoch(start_at) as seconds_to_first_mg
from flagged
