-- OMOP CDM v5.4 views over the fhirstream lake (DuckDB dialect).
--
-- Usage (DuckDB CLI or any client):
--   SET VARIABLE lake = '/path/to/lake';   -- the sink's --out directory
--   .read deploy/sql/omop_latest.sql
--   SELECT count(*) FROM person;
--
-- The lake keeps every row the pipeline ever produced: each update of a FHIR resource
-- adds rows, and a deletion adds a retraction row (_fhir_deleted = true). These views
-- keep, per source resource (_fhir_key), only the rows of its latest version, and nothing
-- of a resource whose latest record is a retraction.
--
-- "Latest" is the highest _kafka_offset: every record of one source resource carries the
-- same key and so lands in one partition, in order, and the dedupe stage has already
-- dropped versions older than one seen before. A row re-sent for the same version and
-- component (a replayed mapping) is kept once.
--
-- Each table directory holds a zero-row _schema.parquet written by the sink, so every view
-- binds even before its table has rows.

CREATE OR REPLACE MACRO omop_latest(tbl) AS TABLE
WITH rows AS (
    SELECT *
    FROM read_parquet(getvariable('lake') || '/omop/' || tbl || '/**/*.parquet', hive_partitioning = false)
),
ranked AS (
    SELECT *,
        first_value(_fhir_version) OVER newest_first AS __latest_version,
        first_value(_fhir_deleted) OVER newest_first AS __latest_deleted,
        row_number() OVER (PARTITION BY _fhir_key, _fhir_version, _fhir_component
                           ORDER BY _kafka_offset DESC) AS __copy
    FROM rows
    WINDOW newest_first AS (PARTITION BY _fhir_key ORDER BY _kafka_offset DESC)
)
SELECT * EXCLUDE (__latest_version, __latest_deleted, __copy)
FROM ranked
WHERE _fhir_version IS NOT DISTINCT FROM __latest_version
  AND NOT __latest_deleted
  AND __copy = 1;

CREATE OR REPLACE VIEW person               AS FROM omop_latest('person');
CREATE OR REPLACE VIEW death                AS FROM omop_latest('death');
CREATE OR REPLACE VIEW visit_occurrence     AS FROM omop_latest('visit_occurrence');
CREATE OR REPLACE VIEW condition_occurrence AS FROM omop_latest('condition_occurrence');
CREATE OR REPLACE VIEW measurement          AS FROM omop_latest('measurement');
CREATE OR REPLACE VIEW observation          AS FROM omop_latest('observation');
CREATE OR REPLACE VIEW drug_exposure        AS FROM omop_latest('drug_exposure');
CREATE OR REPLACE VIEW procedure_occurrence AS FROM omop_latest('procedure_occurrence');
CREATE OR REPLACE VIEW device_exposure      AS FROM omop_latest('device_exposure');
CREATE OR REPLACE VIEW location             AS FROM omop_latest('location');
CREATE OR REPLACE VIEW care_site            AS FROM omop_latest('care_site');
CREATE OR REPLACE VIEW provider             AS FROM omop_latest('provider');
CREATE OR REPLACE VIEW observation_period   AS FROM omop_latest('observation_period');
