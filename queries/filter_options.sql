-- The values the dashboard's site and start-quarter filters offer: one row per (kind, value) present in
-- the patients the person may see ($sites: their scope, NULL for every site; an empty list gives no
-- rows), in sort order. Used by metrics.filter_options (the dashboard's sidebar and link checks).
SELECT 'site' AS kind, site AS value
FROM (SELECT DISTINCT site FROM patients WHERE $sites IS NULL OR list_contains($sites, site))
UNION ALL
SELECT 'quarter' AS kind, start_quarter AS value
FROM (SELECT DISTINCT start_quarter FROM patients WHERE $sites IS NULL OR list_contains($sites, site))
ORDER BY kind, value;
