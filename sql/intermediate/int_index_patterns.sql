-- int_index_patterns: the index rows of int_index_windows counted by their flag bits
-- (docs/definitions.md section 4, "Flags as bits"). Grain: one row per distinct (window, index_class,
-- own_bits, partner_bits, first_eligible_bits, first_index_bits), with how many index rows share it.
-- Every co-occurrence, sensitivity and attrition count is a sum of row_count over the patterns whose
-- bits answer the question, so the marts read a few thousand rows instead of every index result.
select
    window_id,
    index_class,
    own_bits,
    partner_bits,
    first_eligible_bits,
    first_index_bits,
    count(*) as row_count
from int_index_windows
group by window_id, index_class, own_bits, partner_bits, first_eligible_bits, first_index_bits
