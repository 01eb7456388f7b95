// Package omop is the OMOP CDM v5.4 mapping stage: it reads FHIR R4 resources from the
// fhir.unique.<Type> topics and writes OMOP rows, Avro-encoded with the schemas of
// package schemas, to the omop.<table> topics.
//
// The mapping follows the HL7 "FHIR to OMOP" IG, OHDSI conventions and the CDM v5.4
// field definitions; docs/omop-mapping.md lists every FHIR element → OMOP column choice.
// In short:
//
//	Patient                       person (+ location from the address, death when deceased)
//	Encounter                     visit_occurrence
//	Condition                     condition_occurrence  ┐
//	Observation                   measurement/observation│ or the table of the code's
//	Procedure                     procedure_occurrence   │ standard-concept domain,
//	MedicationRequest/-Statement/ drug_exposure          │ when a vocabulary knows it
//	  -Administration, Immunization                      │
//	Device, DeviceUseStatement    device_exposure       ┘
//	AllergyIntolerance            observation
//	Practitioner                  provider
//	Organization                  care_site (+ location)
//	Location                      location
//
// Ids are 63-bit hashes of the resource key, so every process computes the same ids
// without coordination and references resolve without lookups (ids.go). Every row
// carries the envelope columns (_fhir_key, _fhir_version, ...). Per source record and
// table the rows form a group whose first row has _fhir_replaces: it replaces every
// earlier row of the key in that table. An update of a known key (dedupe's
// fhir.previous-version header) and a tombstone add a retraction row to every table the
// type can reach where the record has no rows (docs/omop-mapping.md, "Versions and
// deletions"). CDM datetimes are wall-clock times (local-timestamp-micros).
//
// observation_period is not produced here: it is an aggregate over all of a person's
// events, which are spread over every partition of every input topic, so no partition
// can know it. ObservationPeriodSQL derives it in the gold layer instead.
package omop
