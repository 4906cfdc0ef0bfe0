-- int_index_patterns: the index rows of int_index_windows counted by their flag bits
-- (docs/definitions.md section 4, "Flags as bits"). Grain: one row per distinct (window, index_class,
-- own_bits, partner_bits), with how many index rows share it. The sensitivity grid (every definition x
-- MG threshold x window) is a sum of row_count over the patterns whose bits answer each cell, so
-- mart_sensitivity reads a few thousand rows instead of every index result.
select
    window_id,
    index_class,
    own_bits,
    partner_bits,
    count(*) as row_count
from int_index_windows
group by window_id, index_class, own_bits, partner_bits
