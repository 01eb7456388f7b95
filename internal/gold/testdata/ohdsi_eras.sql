-- OHDSI's standard era logic, written for DuckDB, as the independent oracle of
-- internal/gold's ConditionEras and DrugEras. It follows the structure of OHDSI ETL-CMS
-- (SQL/create_CDMv5_condition_era.sql and create_CDMv5_drug_era_non_stockpile.sql, the
-- scripts ETL-Synthea uses): a sweep over start events and end events padded by the
-- 30-day persistence window, where an era ends at a padded end after which as many
-- intervals have ended as started (2 * start ordinal = overall ordinal), unpadded; drug
-- exposures first merge into sub-exposures the same way with no padding. Deviation from
-- ETL-CMS, the same in the Go code: ingredients of the 'RxNorm Extension' vocabulary
-- count too. Results are ordered for comparison, without ids.

-- check: condition_era
WITH target AS (
  SELECT row_number() OVER () AS occurrence, person_id, condition_concept_id AS concept_id,
         condition_start_date AS start_date,
         COALESCE(condition_end_date, CAST(condition_start_date + INTERVAL 1 DAY AS DATE)) AS end_date
  FROM condition_occurrence
  WHERE condition_concept_id != 0
), events AS (
  SELECT person_id, concept_id, start_date AS event_date, -1 AS event_type,
         row_number() OVER (PARTITION BY person_id, concept_id ORDER BY start_date) AS start_ordinal
  FROM target
  UNION ALL
  SELECT person_id, concept_id, CAST(end_date + INTERVAL 30 DAY AS DATE), 1, NULL FROM target
), swept AS (
  SELECT person_id, concept_id, event_date,
         max(start_ordinal) OVER (PARTITION BY person_id, concept_id ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
         row_number() OVER (PARTITION BY person_id, concept_id ORDER BY event_date, event_type) AS overall_ord
  FROM events
), era_ends AS (
  SELECT person_id, concept_id, CAST(event_date - INTERVAL 30 DAY AS DATE) AS end_date
  FROM swept WHERE 2 * start_ordinal - overall_ord = 0
), occurrence_ends AS (
  SELECT t.occurrence, t.person_id, t.concept_id, t.start_date, min(e.end_date) AS era_end_date
  FROM target t JOIN era_ends e ON e.person_id = t.person_id AND e.concept_id = t.concept_id AND e.end_date >= t.start_date
  GROUP BY t.occurrence, t.person_id, t.concept_id, t.start_date
)
SELECT person_id, concept_id, min(start_date), era_end_date, count(*)
FROM occurrence_ends
GROUP BY person_id, concept_id, era_end_date
ORDER BY 1, 2, 3;

-- check: drug_era
WITH target AS (
  SELECT row_number() OVER () AS exposure, d.person_id, c.concept_id AS ingredient,
         d.drug_exposure_start_date AS start_date,
         COALESCE(d.drug_exposure_end_date,
                  NULLIF(CAST(d.drug_exposure_start_date + to_days(CAST(d.days_supply AS INTEGER)) AS DATE), d.drug_exposure_start_date),
                  CAST(d.drug_exposure_start_date + INTERVAL 1 DAY AS DATE)) AS end_date
  FROM drug_exposure d
  JOIN concept_ancestor ca ON ca.descendant_concept_id = d.drug_concept_id
  JOIN concept c ON c.concept_id = ca.ancestor_concept_id
  WHERE c.vocabulary_id IN ('RxNorm', 'RxNorm Extension') AND c.concept_class_id = 'Ingredient'
    AND d.drug_concept_id != 0 AND COALESCE(d.days_supply, 0) >= 0
), sub_events AS (
  SELECT person_id, ingredient, start_date AS event_date, -1 AS event_type,
         row_number() OVER (PARTITION BY person_id, ingredient ORDER BY start_date) AS start_ordinal
  FROM target
  UNION ALL
  SELECT person_id, ingredient, end_date, 1, NULL FROM target
), sub_swept AS (
  SELECT person_id, ingredient, event_date,
         max(start_ordinal) OVER (PARTITION BY person_id, ingredient ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
         row_number() OVER (PARTITION BY person_id, ingredient ORDER BY event_date, event_type) AS overall_ord
  FROM sub_events
), sub_ends AS (
  SELECT person_id, ingredient, event_date AS end_date FROM sub_swept WHERE 2 * start_ordinal - overall_ord = 0
), exposure_ends AS (
  SELECT t.exposure, t.person_id, t.ingredient, t.start_date, min(e.end_date) AS sub_end
  FROM target t JOIN sub_ends e ON e.person_id = t.person_id AND e.ingredient = t.ingredient AND e.end_date >= t.start_date
  GROUP BY t.exposure, t.person_id, t.ingredient, t.start_date
), subs AS (
  SELECT person_id, ingredient, min(start_date) AS start_date, sub_end AS end_date, count(*) AS exposures,
         date_diff('day', min(start_date), sub_end) AS days_exposed
  FROM exposure_ends GROUP BY person_id, ingredient, sub_end
), era_events AS (
  SELECT person_id, ingredient, start_date AS event_date, -1 AS event_type,
         row_number() OVER (PARTITION BY person_id, ingredient ORDER BY start_date) AS start_ordinal
  FROM subs
  UNION ALL
  SELECT person_id, ingredient, CAST(end_date + INTERVAL 30 DAY AS DATE), 1, NULL FROM subs
), era_swept AS (
  SELECT person_id, ingredient, event_date,
         max(start_ordinal) OVER (PARTITION BY person_id, ingredient ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
         row_number() OVER (PARTITION BY person_id, ingredient ORDER BY event_date, event_type) AS overall_ord
  FROM era_events
), era_ends AS (
  SELECT person_id, ingredient, CAST(event_date - INTERVAL 30 DAY AS DATE) AS end_date
  FROM era_swept WHERE 2 * start_ordinal - overall_ord = 0
), sub_era_ends AS (
  SELECT s.person_id, s.ingredient, s.start_date, min(e.end_date) AS era_end, s.exposures, s.days_exposed
  FROM subs s JOIN era_ends e ON e.person_id = s.person_id AND e.ingredient = s.ingredient AND e.end_date >= s.start_date
  GROUP BY s.person_id, s.ingredient, s.start_date, s.end_date, s.exposures, s.days_exposed
)
SELECT person_id, ingredient, min(start_date), era_end, sum(exposures),
       date_diff('day', min(start_date), era_end) - sum(days_exposed)
FROM sub_era_ends
GROUP BY person_id, ingredient, era_end
ORDER BY 1, 2, 3;
