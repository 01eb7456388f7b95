// Package vocab holds the OMOP standardized vocabulary the OMOP mapper looks codes up in:
// OHDSI Athena release files (CONCEPT.csv, CONCEPT_RELATIONSHIP.csv and, if present,
// SOURCE_TO_CONCEPT_MAP.csv) loaded into a compact in-memory form, plus a small built-in
// table of fixed concepts (gender, race, ethnicity, visit classes, type concepts, common
// vital-sign codes and their units) used when no release is given.
//
// A full Athena release has millions of concepts. Load streams the files and keeps them
// in flat arrays, a single string arena for the codes and two open-addressing hash tables
// of 32-bit slots, so 5 million concepts load in seconds and take a few hundred megabytes
// rather than the gigabytes a map of structs would (see BenchmarkLoad5M). A Vocabulary is
// immutable once loaded and safe for concurrent use.
package vocab
