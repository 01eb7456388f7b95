-- Gold-layer example (DuckDB): one row per person with demographics and encounter counts,
-- over the latest-version views. Run omop_latest.sql first.

CREATE OR REPLACE VIEW gold_patient_demographics AS
SELECT
    p.person_id,
    p.year_of_birth,
    p.gender_concept_id,
    p.race_concept_id,
    p.ethnicity_concept_id,
    count(v.visit_occurrence_id)  AS encounter_count,
    min(v.visit_start_date)       AS first_encounter_date,
    max(v.visit_start_date)       AS last_encounter_date
FROM person AS p
LEFT JOIN visit_occurrence AS v ON v.person_id = p.person_id
GROUP BY ALL;
