-- The values the dashboard's site and start-quarter filters offer: one row per (kind, value) present in
-- the patients table, in sort order. Used by dashboard/ui.py (load_filter_options).
SELECT 'site' AS kind, site AS value FROM (SELECT DISTINCT site FROM patients)
UNION ALL
SELECT 'quarter' AS kind, start_quarter AS value FROM (SELECT DISTINCT start_quarter FROM patients)
ORDER BY kind, value;
