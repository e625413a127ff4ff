-- name: clean-pin-sql
-- version: 0.1.0
-- input: pin
-- output: pin-clean
--
-- The pin rules of SPEC section 5 as a SQL stage: the same table as the
-- built-in clean-pin. `index` and `follower_count` are JSON-typed, so a number
-- and a string are told apart; every other field is read as VARCHAR (a value
-- of another JSON type is null, and counted as field_wrong_type). NULLIF and
-- null_if_blank only change which values are null, so the text is not copied.
CREATE TABLE input ("index" JSON, follower_count JSON);

SELECT
  json_int("index") AS ind,
  null_if_blank(unique_id) AS unique_id,
  NULLIF(null_if_blank(title), 'No Title Data Available') AS title,
  NULLIF(NULLIF(NULLIF(null_if_blank(description), 'No description available Story format'), 'No description available'), 'Untitled') AS description,
  CASE json_type(follower_count)
    WHEN 'integer' THEN CASE WHEN json_int(follower_count) >= 0 THEN json_int(follower_count) END
    WHEN 'string' THEN parse_count(json_str(follower_count))
  END AS follower_count,
  NULLIF(null_if_blank(poster_name), 'User Info Error') AS poster_name,
  NULLIF(null_if_blank(tag_list), 'N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e') AS tag_list,
  null_if_blank(is_image_or_video) AS is_image_or_video,
  NULLIF(null_if_blank(image_src), 'Image src error.') AS image_src,
  CASE WHEN starts_with(save_location, 'Local save in ') THEN substr(save_location, 15)
       ELSE null_if_blank(save_location) END AS save_location,
  null_if_blank(category) AS category,
  'no row id: ' || integer_problem("index", 'index') AS _reject
FROM input
