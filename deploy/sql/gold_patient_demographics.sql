-- Gold-layer example: one row per person with demographics and encounter counts, over the
-- lake's OMOP tables. The Iceberg tables omop.<table> hold the current state of the CDM
-- (updates and deletions applied by the sink), so no "latest version" logic is needed:
-- this is plain SQL that Spark SQL, Trino and DuckDB run as it is.
--
--   Spark SQL, with the lake's catalog configured as "lake" (docs/lakehouse.md):
--     USE lake;  then run this file (spark-sql -f deploy/sql/gold_patient_demographics.sql)
--   Trino, with an iceberg catalog "lake":   USE lake.omop;  (and drop the omop. prefixes)
--   DuckDB, with a REST catalog attached:
--     ATTACH 'warehouse' AS lake (TYPE iceberg, ENDPOINT 'http://catalog:8181'); USE lake;
--
-- Time travel (the state an audit saw): add FOR VERSION AS OF <snapshot id> (Spark, Trino)
-- after a table name; `fhirstream lake history omop.person` lists the snapshots.

CREATE OR REPLACE VIEW gold_patient_demographics AS
SELECT
    p.person_id,
    p.year_of_birth,
    p.gender_concept_id,
    p.race_concept_id,
    p.ethnicity_concept_id,
    count(v.visit_occurrence_id) AS encounter_count,
    min(v.visit_start_date)      AS first_encounter_date,
    max(v.visit_start_date)      AS last_encounter_date
FROM omop.person AS p
LEFT JOIN omop.visit_occurrence AS v ON v.person_id = p.person_id
GROUP BY p.person_id, p.year_of_birth, p.gender_concept_id, p.race_concept_id, p.ethnicity_concept_id;
