-- int_partner_windows: for every index result, how near its partner analyte was measured, and was
-- abnormal, and whether its specimen holds one (docs/definitions.md section 4, Windows and Partner rule).
-- Grain: one row per (pair_direction, abnormality, hypocalcemia_definition, index result); same patient only.
--   pair_direction 'from_mg': index = every MG result (each definition of param_abnormality_definitions);
--     partner = the definition's results (abnormal = its flag in int_abnormality_results). Feeds
--     abnormality_given_hypomg, abnormality_given_normomg and the sensitivity grid.
--   pair_direction 'to_mg': index = every result abnormal for X; partner = MG results (abnormal =
--     hypomagnesemia at the configured threshold). Feeds hypomg_given_abnormality.
-- nearest_partner_s / nearest_abnormal_partner_s: seconds to the nearest such partner, before or after
-- (null if none); specimen_partner / specimen_abnormal_partner: one has the index's specimen_id. A window
-- of param_windows holds the partner if that distance is <= its window_seconds or, where uses_specimen,
-- the specimen holds one: the readers apply each window row, so any number of windows reads this table.
-- Linear, portable (docs/portable-sql.md rule 10): one time-ordered union per (definition, patient), running max/min.
with

mg as (
    select row_id, patient_id, collected_at, specimen_id, result_id, result_id_num,
        value_canonical, is_hypomagnesemia, is_normomagnesemia
    from int_lab_flags where analyte = 'MG'
),

events as (
    -- every MG result once per abnormality definition, beside that definition's results; the small
    -- integer definition_id keeps the sort and grouping keys of 100M+ events narrow
    select d.definition_id, m.patient_id, m.row_id, m.collected_at, epoch(m.collected_at) as at_s, m.specimen_id,
        m.result_id, m.result_id_num,
        1 as is_mg, m.is_hypomagnesemia as is_low,
        m.value_canonical as index_mg_mmol_l, m.is_hypomagnesemia, m.is_normomagnesemia
    from mg as m cross join param_abnormality_definitions as d
    union all
    select a.definition_id, a.patient_id, a.row_id, a.collected_at, epoch(a.collected_at), a.specimen_id,
        a.result_id, a.result_id_num,
        0, a.is_abnormal,
        cast(null as double), false, false
    from int_abnormality_results as a
),

specimen_events as (
    -- the same union, only what the same-specimen rule needs; read from the tables again rather
    -- than from `events`, which a second reference would make the engine materialize whole
    select d.definition_id, f.patient_id, f.specimen_id, 1 as is_mg, f.is_hypomagnesemia as is_low
    from int_lab_flags as f cross join param_abnormality_definitions as d
    where f.analyte = 'MG' and f.specimen_id is not null
    union all
    select a.definition_id, a.patient_id, a.specimen_id, 0, a.is_abnormal
    from int_abnormality_results as a
    where a.specimen_id is not null
),

specimens as (
    select definition_id, patient_id, specimen_id,
        max(is_mg) as has_mg,
        max(case when is_mg = 1 and is_low then 1 else 0 end) as has_low_mg,
        max(1 - is_mg) as has_x,
        max(case when is_mg = 0 and is_low then 1 else 0 end) as has_low_x
    from specimen_events
    group by definition_id, patient_id, specimen_id
),

windowed as (
    select
        e.*,
        max(case when e.is_mg = 1 then e.at_s end) over w_before as mg_before_s,
        min(case when e.is_mg = 1 then e.at_s end) over w_after as mg_after_s,
        max(case when e.is_mg = 1 and e.is_low then e.at_s end) over w_before as low_mg_before_s,
        min(case when e.is_mg = 1 and e.is_low then e.at_s end) over w_after as low_mg_after_s,
        max(case when e.is_mg = 0 then e.at_s end) over w_before as x_before_s,
        min(case when e.is_mg = 0 then e.at_s end) over w_after as x_after_s,
        max(case when e.is_mg = 0 and e.is_low then e.at_s end) over w_before as low_x_before_s,
        min(case when e.is_mg = 0 and e.is_low then e.at_s end) over w_after as low_x_after_s
    from events as e
    window
        w_before as (
            partition by e.definition_id, e.patient_id
            order by e.at_s, e.row_id
            rows between unbounded preceding and current row
        ),
        w_after as (
            partition by e.definition_id, e.patient_id
            order by e.at_s, e.row_id
            rows between current row and unbounded following
        )
),

indexed as (
    -- MG rows look for the abnormality (from_mg); abnormal X rows look for magnesium (to_mg)
    select
        w.*,
        case when w.is_mg = 1 then 'from_mg' else 'to_mg' end as pair_direction,
        case when w.is_mg = 1 then w.x_before_s else w.mg_before_s end as partner_before_s,
        case when w.is_mg = 1 then w.x_after_s else w.mg_after_s end as partner_after_s,
        case when w.is_mg = 1 then w.low_x_before_s else w.low_mg_before_s end as abnormal_before_s,
        case when w.is_mg = 1 then w.low_x_after_s else w.low_mg_after_s end as abnormal_after_s,
        case when w.is_mg = 1 then coalesce(sp.has_x, 0) else coalesce(sp.has_mg, 0) end as specimen_partners,
        case when w.is_mg = 1 then coalesce(sp.has_low_x, 0) else coalesce(sp.has_low_mg, 0) end
            as specimen_abnormal_partners
    from windowed as w
    left join specimens as sp
        on sp.definition_id = w.definition_id and sp.patient_id = w.patient_id and sp.specimen_id = w.specimen_id
    where w.is_mg = 1 or w.is_low
),

final as (
    select
        w.pair_direction,
        d.abnormality,
        d.hypocalcemia_definition,
        w.patient_id,
        w.row_id,
        w.collected_at,
        w.result_id,
        w.result_id_num,
        w.index_mg_mmol_l,
        w.is_hypomagnesemia,
        w.is_normomagnesemia,
        least(w.at_s - w.partner_before_s, w.partner_after_s - w.at_s) as nearest_partner_s,
        least(w.at_s - w.abnormal_before_s, w.abnormal_after_s - w.at_s) as nearest_abnormal_partner_s,
        coalesce(w.specimen_id is not null and w.specimen_partners = 1, false) as specimen_partner,
        coalesce(w.specimen_id is not null and w.specimen_abnormal_partners = 1, false) as specimen_abnormal_partner
    from indexed as w
    inner join param_abnormality_definitions as d on d.definition_id = w.definition_id
)

select * from final
