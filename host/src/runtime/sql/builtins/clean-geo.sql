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
  CASE json_type(ind)
    WHEN 'integer' THEN NULL
    WHEN 'null' THEN 'no row id: field `ind` is not an integer (null)'
    WHEN 'boolean' THEN 'no row id: field `ind` is not an integer (a boolean)'
    WHEN 'float' THEN 'no row id: field `ind` is not an integer (a float)'
    WHEN 'string' THEN 'no row id: field `ind` is not an integer (a string)'
    WHEN 'nested' THEN 'no row id: field `ind` is not an integer (an array or object)'
    ELSE 'no row id: field `ind` is missing'
  END AS _reject
FROM input
