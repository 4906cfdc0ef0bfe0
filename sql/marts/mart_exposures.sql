-- mart_exposures: hypomagnesemia among magnesium results, exposed vs not exposed to each drug class
-- at collection time (docs/definitions.md section 6). Grain: one row per drug class (seed drug_classes),
-- always all classes present.
with

classes as (
    select distinct drug_class from ref_drug_classes
),

counted as (
    select
        drug_class,
        sum(case when is_exposed then 1 else 0 end) as exposed_mg_results,
        sum(case when is_exposed and is_hypomagnesemia then 1 else 0 end) as exposed_hypomg,
        sum(case when not is_exposed then 1 else 0 end) as unexposed_mg_results,
        sum(case when not is_exposed and is_hypomagnesemia then 1 else 0 end) as unexposed_hypomg
    from int_mg_exposures
    group by drug_class
),

final as (
    select
        c.drug_class,
        cast(coalesce(x.exposed_mg_results, 0) as bigint) as exposed_mg_results,
        cast(coalesce(x.exposed_hypomg, 0) as bigint) as exposed_hypomg,
        cast(coalesce(x.unexposed_mg_results, 0) as bigint) as unexposed_mg_results,
        cast(coalesce(x.unexposed_hypomg, 0) as bigint) as unexposed_hypomg
    from classes as c
    left join counted as x on x.drug_class = c.drug_class
)

select drug_class, exposed_mg_results, exposed_hypomg, unexposed_mg_results, unexposed_hypomg from final
