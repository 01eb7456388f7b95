// Package goldlake keeps the gold CDM of the lake: the namespace (default "cdm") that
// OHDSI's tools (Achilles, the Data Quality Dashboard, ATLAS and HADES) point at as one
// schema. A refresh (Refresh, `fhirstream gold refresh`) reads the current state of
// omop.* from the catalog at pinned snapshots, through iceberg-go's scan (equality
// deletes applied), passes every clinical row through internal/gold's Builder (links
// resolved; the rows flow through to new data files, the derived tables keep a few
// bytes per event) and makes each table of the namespace, clinical and derived, the
// refresh's result in one Iceberg overwrite snapshot. Every such snapshot's summary
// names the refresh and the omop snapshots it read, so a gold table can be traced to,
// and recomputed from, its exact input by time travel.
//
// LoadVocabulary (`fhirstream vocab load`) writes the nine tables of an Athena download
// into the same namespace, typed per the OHDSI DDL; a refresh without an Athena
// directory reads its vocabulary from there.
//
// The streaming omop namespace stays the real-time current state; the gold namespace is
// a consistent snapshot as of its last refresh.
package goldlake
