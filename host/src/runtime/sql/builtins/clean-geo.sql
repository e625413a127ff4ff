-- name: clean-geo-sql
-- version: 0.1.0
-- input: geo
-- output: geo-clean
--
-- The geo rules of SPEC section 5 as a SQL stage: the same table as the
-- built-in clean-geo. Coordinates are [latitude, longitude] when both are
-- numbers within range; the timestamp is parsed to UTC.
CREATE TABLE input (ind JSON, latitude DOUBLE, longitude DOUBLE);

SELECT
  json_int(ind) AS ind,
  null_if_blank(country) AS country,
  CASE WHEN abs(latitude) <= 90 AND abs(longitude) <= 180 THEN make_array(latitude, longitude) END AS coordinates,
  parse_timestamp("timestamp") AS "timestamp",
  'no row id: ' || integer_problem(ind, 'ind') AS _reject
FROM input
