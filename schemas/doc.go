// Package schemas is the contract every fhirstream stage shares: topic names, record keys,
// provenance and dead-letter header names, and the Avro schemas of the OMOP CDM v5.4 tables
// carried on the omop.<table> topics with their encodings.
//
// Nothing here talks to Kafka; producers and consumers import this package so that a name
// or a header is spelled in exactly one place.
package schemas
