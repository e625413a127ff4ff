-- name: clean-user-sql
-- version: 0.1.0
-- input: user
-- output: user-clean
--
-- The user rules of SPEC section 5 as a SQL stage: the same table as the
-- built-in clean-user. user_name joins the names that are there; age is an
-- integer from 0 to 150; date_joined is parsed to UTC.
CREATE TABLE input (ind JSON, age JSON);

SELECT
  json_int(ind) AS ind,
  NULLIF(concat_ws(' ', trim_whitespace(null_if_blank(first_name)), trim_whitespace(null_if_blank(last_name))), '') AS user_name,
  CASE WHEN json_to_int(age) BETWEEN 0 AND 150 THEN json_to_int(age) END AS age,
  parse_timestamp(date_joined) AS date_joined,
  'no row id: ' || integer_problem(ind, 'ind') AS _reject
FROM input
