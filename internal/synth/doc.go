// Package synth generates realistic, deterministic FHIR R4 Bulk Data export NDJSON: the
// project's own test data, so that tests, the EHR simulator, the demo and the benchmarks
// never depend on files that a fresh clone does not have.
//
// The output looks like a Synthea export served by a US EHR: Patients with US Core race,
// ethnicity and birth-sex extensions; Encounters (ambulatory, emergency, inpatient) with
// their Practitioner, Organization and Location; and, per encounter, Conditions (SNOMED CT),
// vital-sign, laboratory and social-history Observations (LOINC, UCUM), DiagnosticReports
// whose results point at that encounter's lab Observations, MedicationRequests (RxNorm),
// Procedures (SNOMED CT), Immunizations (CVX) and AllergyIntolerances (SNOMED CT).
//
// Three properties matter more than realism and are tested:
//
//   - Deterministic: the same Config yields byte-identical output. Every patient draws from
//     its own random stream seeded by (Seed, patient index), so the first k patients of a
//     run of N are the same as a run of k.
//   - Closed: every reference ("Type/id") resolves to a resource in the same output, and every
//     clinical date lies inside its patient's life and its encounter's period.
//   - Streaming: resources are written patient by patient as they are made. The shared pool
//     of Organizations, Locations and Practitioners is derived from the seed and the group
//     index (one group per 20 patients), so memory does not grow with the number of patients.
//
// Config.Bad mixes deliberately bad lines into the export (malformed JSON, resources in the
// wrong file, bad ids, dates, references and codings, resources OMOP cannot map, an
// over-long line), and ExpectedDeadLetters says which stage must dead-letter each and
// why, so that tests, the demo and the chaos test can check the dead-letter topic exactly.
package synth
