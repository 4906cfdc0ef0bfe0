-- int_result_id_kind: whether every loaded lab result id is numeric, so that int_lab_results orders
-- ties by result id "as numbers when all are numeric" (docs/definitions.md section 4, Levels).
-- Grain: one row per database (a single row): a property of all patients, not of one; an incremental run
-- (pipelines/incremental.py) rebuilds it whole and recomputes every patient when it changes.
-- A result without a given id is known by its row position, a number (stg_lab_rows, Result id).
with

final as (
    select coalesce(bool_and(given_result_id is null or try_cast(given_result_id as double) is not null), false)
        as all_numeric
    from stg_lab_rows
    where status = 'loaded'
)

select all_numeric from final
