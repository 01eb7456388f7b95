package omop

// ObservationPeriodSQL derives observation_period in the gold layer, one period per
// person from the first to the last date of any of that person's current events, the
// usual derivation for EHR data (period_type_concept_id 32882, vocab.TypeEHRPeriod, as
// OHDSI's ETL-Synthea does). It is a view, not stage output, because the span of a person's events is an
// aggregate over every partition of every input topic, which no single partition sees;
// the view is always current, with no re-keying hop or per-person state in Kafka.
//
// It expects one relation per OMOP table holding only current rows (the newest version
// of each _fhir_key, retractions removed), named as the tables; the ids follow the
// stage's rule (hash of "Patient/<id>" for the person, so the period id is derived from
// person_id). DuckDB and PostgreSQL dialects both accept it.
const ObservationPeriodSQL = `CREATE OR REPLACE VIEW observation_period AS
WITH events AS (
  SELECT person_id, visit_start_date AS d0, visit_end_date AS d1 FROM visit_occurrence
  UNION ALL SELECT person_id, condition_start_date, COALESCE(condition_end_date, condition_start_date) FROM condition_occurrence
  UNION ALL SELECT person_id, procedure_date, COALESCE(procedure_end_date, procedure_date) FROM procedure_occurrence
  UNION ALL SELECT person_id, drug_exposure_start_date, drug_exposure_end_date FROM drug_exposure
  UNION ALL SELECT person_id, device_exposure_start_date, COALESCE(device_exposure_end_date, device_exposure_start_date) FROM device_exposure
  UNION ALL SELECT person_id, measurement_date, measurement_date FROM measurement
  UNION ALL SELECT person_id, observation_date, observation_date FROM observation
  UNION ALL SELECT person_id, death_date, death_date FROM death
)
SELECT person_id AS observation_period_id,
       person_id,
       MIN(LEAST(d0, d1)) AS observation_period_start_date,
       MAX(GREATEST(d0, d1)) AS observation_period_end_date,
       32882 AS period_type_concept_id
FROM events
WHERE person_id IN (SELECT person_id FROM person)
GROUP BY person_id;
`
