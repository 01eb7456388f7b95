package gold

import (
	"errors"
	"time"
	"unicode/utf8"
)

// CDM version written to cdm_source: v5.4 and its concept, 756265 "OMOP CDM Version
// 5.4.0" (the CDM v5.4 documentation of CDM_SOURCE.cdm_version_concept_id).
const (
	CDMVersion          = "v5.4"
	CDMVersionConceptID = int32(756265)
)

// BuiltinVocabularyVersion is cdm_source.vocabulary_version when no vocabulary is loaded:
// the mapper then knows only its built-in fixed concepts (internal/vocab).
const BuiltinVocabularyVersion = "fhirstream built-in"

// SourceInfo describes the source and the ETL for cdm_source.
type SourceInfo struct {
	Name         string // cdm_source_name, e.g. the EHR's name (required)
	Abbreviation string // cdm_source_abbreviation (required; at most 25 characters)
	Holder       string // cdm_holder: who holds the CDM (required)
	Description  string // source_description
	// DocumentationReference is source_documentation_reference, e.g. the FHIR server's URL.
	DocumentationReference string
	// ReleaseDate is the source's release: the Bulk Data export's transactionTime, the
	// instant the exported data reflects (source_release_date, its UTC date).
	ReleaseDate time.Time
	// ETLVersion and ETLReference describe the ETL: fhirstream's version and where its
	// mapping is documented; together they make cdm_etl_reference.
	ETLVersion, ETLReference string
	// VocabularyVersion is the loaded vocabulary's release (VocabularyVersion), "" when
	// none is loaded (BuiltinVocabularyVersion is written then).
	VocabularyVersion string
	// Refreshed is when the gold layer was computed (cdm_release_date).
	Refreshed time.Time
}

// CDMSource returns the one cdm_source row (CDM v5.4 CDM_SOURCE, which Achilles and the
// Data Quality Dashboard read the CDM and vocabulary versions from). Strings longer than
// their CDM varchar are cut to it.
func CDMSource(s SourceInfo) (Row, error) {
	switch {
	case s.Name == "" || s.Abbreviation == "" || s.Holder == "":
		return nil, errors.New("cdm_source: name, abbreviation and holder are required")
	case s.ReleaseDate.IsZero() || s.Refreshed.IsZero():
		return nil, errors.New("cdm_source: the source release date (export transactionTime) and the refresh time are required")
	}
	vv := s.VocabularyVersion
	if vv == "" {
		vv = BuiltinVocabularyVersion
	}
	etl := s.ETLReference
	if s.ETLVersion != "" {
		etl = "fhirstream " + s.ETLVersion + ", " + etl
	}
	row := Row{
		"cdm_source_name":                cut(s.Name, 255),
		"cdm_source_abbreviation":        cut(s.Abbreviation, 25),
		"cdm_holder":                     cut(s.Holder, 255),
		"source_release_date":            dayOf(s.ReleaseDate.UTC()).time(),
		"cdm_release_date":               dayOf(s.Refreshed.UTC()).time(),
		"cdm_version":                    CDMVersion,
		"cdm_version_concept_id":         CDMVersionConceptID,
		"vocabulary_version":             cut(vv, 20),
		"source_description":             nil,
		"source_documentation_reference": nil,
		"cdm_etl_reference":              nil,
	}
	if s.Description != "" {
		row["source_description"] = s.Description
	}
	if s.DocumentationReference != "" {
		row["source_documentation_reference"] = cut(s.DocumentationReference, 255)
	}
	if etl != "" {
		row["cdm_etl_reference"] = cut(etl, 255)
	}
	return row, nil
}

// cut returns the first n characters of s.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n])
}
