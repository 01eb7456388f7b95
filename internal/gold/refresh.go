package gold

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Options configure Refresh.
type Options struct {
	// Source describes the source and the ETL for cdm_source (its VocabularyVersion is
	// filled from VocabularyDir).
	Source SourceInfo
	// VocabularyDir is the Athena download the mapper used, "" for none: drug_era needs
	// it, and cdm_source reports its version.
	VocabularyDir string
}

// Result is one refresh of the gold tables.
type Result struct {
	ObservationPeriod []Row
	CDMSource         Row
	ConditionEra      []Row
	DrugEra           []Row
	// Links is what link resolution does to the clinical tables (their conformant form
	// is Links.Source of the input).
	Links                LinkCounts
	Resolver             *Links
	PersonsWithoutEvents int
	// NotBuilt names the tables that could not be built, and why (drug_era without a
	// vocabulary).
	NotBuilt map[string]error
}

// Refresh computes every gold table from the current CDM rows in src: link resolution
// first, then observation_period, condition_era and drug_era over the resolved rows, and
// cdm_source. A table it cannot build is in Result.NotBuilt with the reason; an error
// is returned only when src cannot be read or its rows are malformed.
func Refresh(src Source, o Options) (*Result, error) {
	links, err := NewLinks(src)
	if err != nil {
		return nil, fmt.Errorf("link resolution: %w", err)
	}
	r := &Result{Resolver: links, NotBuilt: map[string]error{}}
	if r.Links, err = links.Count(src); err != nil {
		return nil, fmt.Errorf("link resolution: %w", err)
	}
	cdm := links.Source(src)
	if r.ObservationPeriod, err = ObservationPeriods(cdm); err != nil {
		return nil, fmt.Errorf("observation_period: %w", err)
	}
	r.PersonsWithoutEvents = len(links.ids["person"]) - len(r.ObservationPeriod)
	if r.ConditionEra, err = ConditionEras(cdm); err != nil {
		return nil, fmt.Errorf("condition_era: %w", err)
	}
	info := o.Source
	if o.VocabularyDir == "" {
		r.NotBuilt["drug_era"] = ErrNoVocabulary
	} else {
		if info.VocabularyVersion, err = VocabularyVersion(o.VocabularyDir); err != nil {
			r.NotBuilt["cdm_source"] = err
		}
		ing, err := LoadIngredients(o.VocabularyDir)
		if err != nil {
			r.NotBuilt["drug_era"] = err
		} else if r.DrugEra, err = DrugEras(cdm, ing); err != nil {
			return nil, fmt.Errorf("drug_era: %w", err)
		}
	}
	if _, failed := r.NotBuilt["cdm_source"]; !failed {
		if r.CDMSource, err = CDMSource(info); err != nil {
			r.NotBuilt["cdm_source"] = err
		}
	}
	return r, nil
}

// Report says in a few lines what the refresh built and what it could not.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "observation_period: %d rows", len(r.ObservationPeriod))
	if r.PersonsWithoutEvents > 0 {
		fmt.Fprintf(&b, " (%d persons without events have none)", r.PersonsWithoutEvents)
	}
	fmt.Fprintf(&b, "\ncondition_era: %d rows\n", len(r.ConditionEra))
	if err, ok := r.NotBuilt["drug_era"]; ok {
		fmt.Fprintf(&b, "drug_era: NOT BUILT: %v\n", err)
	} else {
		fmt.Fprintf(&b, "drug_era: %d rows\n", len(r.DrugEra))
	}
	if err, ok := r.NotBuilt["cdm_source"]; ok {
		fmt.Fprintf(&b, "cdm_source: NOT BUILT: %v\n", err)
	} else {
		fmt.Fprintf(&b, "cdm_source: 1 row (vocabulary_version %v)\n", r.CDMSource["vocabulary_version"])
	}
	for _, m := range []struct {
		what string
		n    map[string]int64
	}{{"references to no row, set to null", r.Links.Unresolved}, {"references by NPI resolved", r.Links.ResolvedByNPI}, {"rows without their person, left out", r.Links.Dropped}} {
		for _, k := range slices.Sorted(maps.Keys(m.n)) {
			fmt.Fprintf(&b, "links: %s: %s %d\n", m.what, k, m.n[k])
		}
	}
	if r.Links.DevicesDated > 0 {
		fmt.Fprintf(&b, "links: devices dated by a procedure or use statement: %d (%d dating rows merged)\n", r.Links.DevicesDated, r.Links.DatingRows)
	}
	return b.String()
}
