-- Record keys for the cell-key perturbation of counts (docs/metrics.md "Protecting counts across filter
-- states", the Australian Bureau of Statistics' TableBuilder method): every patient gets a secret, uniform
-- record key in 0 .. 2^32-1; a count's cell key is the sum of its records' keys modulo 2^32, so the same set
-- of patients always gets the same cell key (and the same perturbation), whatever filters reached it.
-- The secret is a hash over every row of the patients table: the same export always gives the same keys
-- (imports stay reproducible), and nobody without the whole export can compute it, so two candidate sets of
-- patients cannot be told apart by their perturbations.
-- record_key(pk): a patient's key; cell_key(s): a sum of keys (or of keys times per-patient counts, for
-- session counts) folded into 0 .. 2^32-1 (0 for no rows).
CREATE OR REPLACE TABLE cell_key_secret AS
SELECT (coalesce(sum(hash(p)), 0) % 9007199254740881)::BIGINT AS secret FROM patients p;

CREATE OR REPLACE MACRO record_key(p) AS
    (hash(p, (SELECT secret FROM cell_key_secret)) % 4294967296)::BIGINT;

CREATE OR REPLACE MACRO cell_key(s) AS
    (coalesce(s, 0) % 4294967296)::BIGINT;
