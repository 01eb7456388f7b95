package gold

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
)

// Options configure Refresh and Builder.
type Options struct {
	// Source describes the source and the ETL for cdm_source (its VocabularyVersion is
	// filled from Vocabulary).
	Source SourceInfo
	// Vocabulary is the vocabulary the mapper used (FileTables of an Athena download, or
	// the lake's vocabulary tables), nil for none: drug_era needs it, and cdm_source
	// reports its version.
	Vocabulary VocabularyTables
}

// Result is one refresh of the gold tables: the derived tables (Rows) and what link
// resolution did to the clinical ones.
type Result struct {
	periods                 []period
	conditionEras, drugEras []era
	cdmSource               Row

	// Links is what link resolution did to the clinical tables (their conformant form
	// is Resolver.Source of the input).
	Links                LinkCounts
	Resolver             *Links
	PersonsWithoutEvents int
	// NotBuilt names the derived tables that could not be built, and why (drug_era
	// without a vocabulary). Rows yields none for them.
	NotBuilt map[string]error
}

// Refresh computes every gold table from the current CDM rows in src: link resolution
// (NewLinks), then every clinical table through a Builder, whose Finish gives
// observation_period, condition_era, drug_era and cdm_source. A table it cannot build
// is in Result.NotBuilt with the reason; an error is returned only when src cannot be
// read or its rows are malformed. The clinical rows are not kept: Resolver.Source(src)
// gives them resolved.
func Refresh(src Source, o Options) (*Result, error) {
	links, err := NewLinks(src)
	if err != nil {
		return nil, fmt.Errorf("link resolution: %w", err)
	}
	b := NewBuilder(links, o)
	for _, table := range ClinicalTables {
		for r, err := range src.Rows(table) {
			if err != nil {
				return nil, fmt.Errorf("%s: %w", table, err)
			}
			if _, _, err := b.Add(table, r); err != nil {
				return nil, fmt.Errorf("%s: %w", table, err)
			}
		}
	}
	return b.Finish()
}

// Rows yields the rows of a derived table (DerivedTables), none for one not built.
func (r *Result) Rows(table string) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		switch table {
		case "observation_period":
			for _, p := range r.periods {
				if !yield(p.row(), nil) {
					return
				}
			}
		case "condition_era":
			for _, e := range r.conditionEras {
				if !yield(e.conditionRow(), nil) {
					return
				}
			}
		case "drug_era":
			for _, e := range r.drugEras {
				if !yield(e.drugRow(), nil) {
					return
				}
			}
		case "cdm_source":
			if r.cdmSource != nil {
				yield(r.cdmSource, nil)
			}
		default:
			yield(nil, fmt.Errorf("gold: %s is not a derived table", table))
		}
	}
}

// Len is the number of rows of a derived table.
func (r *Result) Len(table string) int {
	switch table {
	case "observation_period":
		return len(r.periods)
	case "condition_era":
		return len(r.conditionEras)
	case "drug_era":
		return len(r.drugEras)
	case "cdm_source":
		if r.cdmSource != nil {
			return 1
		}
	}
	return 0
}

// CDMSource is the cdm_source row, nil when not built.
func (r *Result) CDMSource() Row { return r.cdmSource }

// Report says in a few lines what the refresh built and what it could not.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "observation_period: %d rows", len(r.periods))
	if r.PersonsWithoutEvents > 0 {
		fmt.Fprintf(&b, " (%d persons without events have none)", r.PersonsWithoutEvents)
	}
	fmt.Fprintf(&b, "\ncondition_era: %d rows\n", len(r.conditionEras))
	if err, ok := r.NotBuilt["drug_era"]; ok {
		fmt.Fprintf(&b, "drug_era: NOT BUILT: %v\n", err)
	} else {
		fmt.Fprintf(&b, "drug_era: %d rows\n", len(r.drugEras))
	}
	if err, ok := r.NotBuilt["cdm_source"]; ok {
		fmt.Fprintf(&b, "cdm_source: NOT BUILT: %v\n", err)
	} else {
		fmt.Fprintf(&b, "cdm_source: 1 row (vocabulary_version %v)\n", r.cdmSource["vocabulary_version"])
	}
	b.WriteString(r.Links.Report())
	return b.String()
}

// Report says what link resolution did, a line per kind and column.
func (c LinkCounts) Report() string {
	var b strings.Builder
	for _, m := range []struct {
		what string
		n    map[string]int64
	}{{"references to no row, set to null", c.Unresolved}, {"references by NPI resolved", c.ResolvedByNPI}, {"rows without their person, left out", c.Dropped}} {
		for _, k := range slices.Sorted(maps.Keys(m.n)) {
			fmt.Fprintf(&b, "links: %s: %s %d\n", m.what, k, m.n[k])
		}
	}
	if c.DevicesDated > 0 {
		fmt.Fprintf(&b, "links: devices dated by a procedure or use statement: %d (%d dating rows merged)\n", c.DevicesDated, c.DatingRows)
	}
	return b.String()
}
