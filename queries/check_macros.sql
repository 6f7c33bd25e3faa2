-- Macros shared by the importer's value checks (queries/check_*.sql), created on the import's own
-- connection before the checks run. Each returns a problem message, or NULL when the value is fine.

-- Text that looks like a direct identifier: such data must be anonymized before it is imported.
-- Phone numbers are recognised only in written-out forms (international prefix, area code in
-- parentheses, digit groups separated by spaces or dots, NANP 3-3-4) so that numeric pseudonyms
-- and ids such as 2024-0001 stay valid.
CREATE OR REPLACE TEMP MACRO identifier_problem(v) AS CASE
    WHEN v IS NULL THEN NULL
    WHEN regexp_matches(v, '[^\s@]+@[^\s@]+\.[A-Za-z]{2,}')
        THEN 'looks like an e-mail address; the data must be anonymized first'
    WHEN regexp_matches(v, '(^|[^0-9])[0-9]{3}-[0-9]{2}-[0-9]{4}([^0-9]|$)')
        THEN 'looks like a social security number; the data must be anonymized first'
    WHEN regexp_matches(v, '(^|[^0-9])(19|20)[0-9]{2}[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12][0-9]|3[01])([^0-9]|$)')
      OR regexp_matches(v, '(^|[^0-9])(0?[1-9]|[12][0-9]|3[01])[-/.](0?[1-9]|[12][0-9]|3[01])[-/.](19|20)[0-9]{2}([^0-9]|$)')
        THEN 'looks like a calendar date; the data must be anonymized first'
    WHEN regexp_matches(v, '^\+[0-9][0-9 ().-]{6,}[0-9]$')
      OR regexp_matches(v, '^00[0-9]{1,3}[ .()-][0-9 ().-]{5,}[0-9]$')
      OR regexp_matches(v, '^\([0-9]{2,5}\)[ .-]?[0-9][0-9 .-]{4,}[0-9]$')
      OR regexp_matches(v, '^[0-9]{2,5}([ .][0-9]{2,5}){2,4}$')
      OR regexp_matches(v, '^[0-9]{3}-[0-9]{3}-[0-9]{4}$')
        THEN 'looks like a phone number; the data must be anonymized first'
END;

-- An id or code: required, not an identifier, and within its character rule. The first test passes the
-- usual code (letters, digits, _ and at most one -) at the cost of one regular expression: every
-- identifier pattern needs two separators or a character that codes do not allow.
CREATE OR REPLACE TEMP MACRO code_problem(v, max_len) AS CASE
    WHEN v IS NULL THEN 'required value is empty'
    WHEN length(v) <= max_len AND regexp_matches(v, '^[A-Za-z0-9_]*-?[A-Za-z0-9_]*$') THEN NULL
    WHEN identifier_problem(v) IS NOT NULL THEN identifier_problem(v)
    WHEN NOT regexp_matches(v, '^[A-Za-z0-9_-]+$') OR length(v) > max_len
        THEN 'not a valid code: 1–' || max_len || ' characters of letters, digits, - and _'
END;

-- A value of one of the format's enums (exact spelling); `required` says whether empty is a problem.
CREATE OR REPLACE TEMP MACRO enum_problem(v, allowed, required) AS CASE
    WHEN v IS NULL THEN CASE WHEN required THEN 'required value is empty' END
    WHEN NOT list_contains(allowed, v) THEN 'not one of: ' || array_to_string(allowed, ' ')
END;

-- A boolean: true/false, 1/0 or yes/no in any case; empty means the column's default.
CREATE OR REPLACE TEMP MACRO bool_problem(v) AS CASE
    WHEN v IS NOT NULL AND lower(v) NOT IN ('true', 'false', '1', '0', 'yes', 'no')
        THEN 'not a boolean (true/false, 1/0 or yes/no)'
END;

-- A whole number (Parquet floats such as 3.0 count as whole) from lo to hi. The first test passes plain
-- digits in range without a regular expression: a cast alone rounds 1.5 and accepts spaces, so the value
-- must also read back unchanged.
CREATE OR REPLACE TEMP MACRO int_problem(v, lo, hi, required) AS CASE
    WHEN v IS NULL THEN CASE WHEN required THEN 'required value is empty' END
    WHEN TRY_CAST(v AS BIGINT) BETWEEN lo AND hi AND TRY_CAST(v AS BIGINT)::VARCHAR = v THEN NULL
    WHEN NOT regexp_matches(v, '^[+-]?[0-9]+(\.0*)?$') THEN 'not a whole number'
    WHEN coalesce(TRY_CAST(regexp_replace(v, '\.0*$', '') AS HUGEINT) NOT BETWEEN lo AND hi, true)
        THEN 'out of range: must be a whole number from ' || lo || ' to ' || hi
END;

-- The value of a whole number, or NULL when it is not one (as int_problem decides).
CREATE OR REPLACE TEMP MACRO int_value(v) AS CASE
    WHEN TRY_CAST(v AS BIGINT)::VARCHAR = v THEN TRY_CAST(v AS BIGINT)
    WHEN regexp_matches(v, '^[+-]?[0-9]+(\.0*)?$') THEN TRY_CAST(regexp_replace(v, '\.0*$', '') AS BIGINT)
END;

-- A finite number.
CREATE OR REPLACE TEMP MACRO float_problem(v) AS CASE
    WHEN v IS NOT NULL AND NOT coalesce(isfinite(TRY_CAST(v AS DOUBLE)), false) THEN 'not a number'
END;

-- The true/false value of a checked boolean, or the default when empty.
CREATE OR REPLACE TEMP MACRO bool_value(v, dflt) AS coalesce(lower(v) IN ('true', '1', 'yes'), dflt);

-- The value of a boolean with no default: NULL when empty (the optional esketamine monitoring columns).
CREATE OR REPLACE TEMP MACRO bool_or_null(v) AS lower(v) IN ('true', '1', 'yes');
