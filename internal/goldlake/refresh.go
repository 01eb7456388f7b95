package goldlake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"runtime/debug"
	"slices"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
)

// Snapshot summary keys of the gold CDM's tables: every table a refresh writes carries
// them, so a gold snapshot names its refresh and its exact input.
const (
	// SummaryRefresh names the refresh (the same in every table it wrote).
	SummaryRefresh = "fhirstream.gold.refresh-id"
	// SummaryRefreshedAt is when it ran (RFC 3339, UTC).
	SummaryRefreshedAt = "fhirstream.gold.refreshed-at"
	// SummarySources is the omop snapshots it read, a JSON object from the catalog
	// name of each omop table to its snapshot id ({"omop.person": 123, ...}): time
	// travel to them gives the refresh's input.
	SummarySources = "fhirstream.gold.source-snapshots"
	// SummaryVocabulary is the vocabulary release it used ("" for none).
	SummaryVocabulary = "fhirstream.gold.vocabulary-version"
	// SummaryNotBuilt, on a derived table the refresh could not build (left empty), is
	// why.
	SummaryNotBuilt = "fhirstream.gold.not-built"
)

// Options configure Refresh.
type Options struct {
	// Namespace is the gold CDM's namespace under the lake's root (DefaultNamespace when
	// empty).
	Namespace string
	// Source describes the source and the ETL for cdm_source. Defaults: Name "FHIR Bulk
	// Data export", Abbreviation "FHIR", Holder "fhirstream"; ReleaseDate, the
	// commit time of the newest omop snapshot read (when the lake last took in data; the
	// demo gives the export's transactionTime); Refreshed, now; ETLVersion, the
	// binary's module version; ETLReference, docs/omop-mapping.md.
	Source gold.SourceInfo
	// VocabularyDir is the Athena download the mapper used. The refresh reads drug_era's
	// ingredients and cdm_source's vocabulary_version from it, and (re)loads it into the
	// namespace (LoadVocabulary) unless the namespace holds that release already. Empty:
	// the namespace's vocabulary tables, when `vocab load` put them there; without them,
	// drug_era is not built.
	VocabularyDir string
	// Force refreshes even when nothing changed since the last refresh (same omop
	// snapshots, same vocabulary).
	Force bool
	// Files tune the Parquet files; MaxFileRows bounds the rows per file
	// (lakehouse.DefaultMaxFileRows when 0).
	Files       lakehouse.FileOptions
	MaxFileRows int64
}

// Report is what a refresh did.
type Report struct {
	RefreshID string
	Namespace string // the catalog namespace, e.g. "cdm" or "site1.cdm"
	// Current is set when nothing changed since the refresh RefreshID, which was left as
	// it is (Options.Force refreshes anyway).
	Current bool
	// Sources are the omop snapshots read, by catalog table name.
	Sources map[string]int64
	// Tables are the tables written, in commit order.
	Tables []TableLoad
	// NotBuilt are the derived tables that could not be built, and why; each is written
	// empty, its snapshot summary saying why (SummaryNotBuilt).
	NotBuilt map[string]error
	// Vocabulary says where the vocabulary came from; VocabularyLoad is the load when
	// the refresh loaded one.
	Vocabulary        string
	VocabularyVersion string
	VocabularyLoad    *VocabularyLoad
	// Links is what link resolution did to the clinical rows.
	Links                gold.LinkCounts
	PersonsWithoutEvents int
	Took                 time.Duration
}

// Rows is the number of rows written to table (a CDM table name), -1 when the refresh
// did not write it.
func (r *Report) Rows(table string) int64 {
	for _, t := range r.Tables {
		if t.Table == r.Namespace+"."+table {
			return t.Rows
		}
	}
	return -1
}

// Refresh recomputes the gold CDM from the lake's omop tables (see the package comment):
// it pins the omop snapshots, reads the vocabulary, writes the data files of every
// table (clinical tables with their links resolved, then observation_period,
// condition_era, drug_era, cdm_source), and only then commits the tables one after the
// other, cdm_source last: a reader sees the previous refresh until the commits, which
// take a moment, not the refresh's whole run. A derived table that cannot be built is
// written empty and named in Report.NotBuilt with the reason; an error means the
// refresh failed: nothing committed, unless the error says how many tables were
// ("committed 3 of 16 tables"). Errors before the commits leave the CDM tables as they
// were (a vocabulary the refresh loaded first stays loaded: LoadVocabulary commits as
// it goes).
func Refresh(ctx context.Context, lk *lakehouse.Lake, o Options) (*Report, error) {
	start := time.Now()
	ns := o.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	rep := &Report{RefreshID: newID(), Namespace: joinIdent(lk.Namespace(ns)), NotBuilt: map[string]error{}}
	src, err := OpenSource(ctx, lk)
	if err != nil {
		return nil, err
	}
	rep.Sources = src.Snapshots()

	voc, err := refreshVocabulary(ctx, lk, ns, o, rep)
	if err != nil {
		return nil, err
	}
	if !o.Force && rep.VocabularyLoad == nil {
		if id, current, err := isCurrent(ctx, lk, ns, rep); err != nil {
			return nil, err
		} else if current {
			rep.RefreshID, rep.Current, rep.Took = id, true, time.Since(start)
			return rep, nil
		}
	}

	info := sourceInfo(o.Source, src.Newest())
	links, err := gold.NewLinks(src)
	if err != nil {
		return nil, fmt.Errorf("goldlake: link resolution: %w", err)
	}
	r := &refreshWriter{lk: lk, ns: ns, id: "gold-" + rep.RefreshID, files: o.Files, maxFileRows: o.MaxFileRows}
	b := gold.NewBuilder(links, gold.Options{Source: info, Vocabulary: voc})
	if err := r.writeTables(ctx, src, b, rep); err != nil {
		r.abort()
		return nil, fmt.Errorf("nothing committed: %w", err)
	}
	if err := r.commitAll(ctx, rep, info.Refreshed); err != nil {
		return nil, err
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// sourceInfo is cdm_source's description: the operator's, with defaults for what they
// left out (the release date is the newest source snapshot's).
func sourceInfo(info gold.SourceInfo, newest time.Time) gold.SourceInfo {
	for _, d := range []struct {
		v   *string
		def string
	}{{&info.Name, "FHIR Bulk Data export"}, {&info.Abbreviation, "FHIR"}, {&info.Holder, "fhirstream"}} {
		if *d.v == "" {
			*d.v = d.def
		}
	}
	if info.ReleaseDate.IsZero() {
		info.ReleaseDate = newest
	}
	if info.Refreshed.IsZero() {
		info.Refreshed = time.Now()
	}
	if info.ReleaseDate.IsZero() {
		info.ReleaseDate = info.Refreshed
	}
	if info.ETLVersion == "" {
		info.ETLVersion = buildVersion()
	}
	if info.ETLReference == "" {
		info.ETLReference = "docs/omop-mapping.md"
	}
	return info
}

// refreshWriter writes a refresh's tables, each one's files before any is committed.
type refreshWriter struct {
	lk          *lakehouse.Lake
	ns          string
	id          string // names the files
	files       lakehouse.FileOptions
	maxFileRows int64
	writers     []*tableWriter
}

// abort drops every file written so far.
func (r *refreshWriter) abort() {
	for _, w := range r.writers {
		w.abort()
	}
}

// writeTables writes the clinical tables (their links resolved by b as they stream
// through), then the tables b derives from them.
func (r *refreshWriter) writeTables(ctx context.Context, src *Source, b *gold.Builder, rep *Report) error {
	for _, table := range gold.ClinicalTables {
		rows := func(yield func(gold.Row, error) bool) {
			for row, err := range src.Rows(table) {
				var keep bool
				if err == nil {
					row, keep, err = b.Add(table, row)
				}
				if err != nil {
					yield(nil, fmt.Errorf("%s: %w", table, err))
					return
				}
				if keep && !yield(row, nil) {
					return
				}
			}
		}
		if err := r.write(ctx, table, rows); err != nil {
			return err
		}
	}
	res, err := b.Finish()
	if err != nil {
		return err
	}
	rep.Links, rep.PersonsWithoutEvents = res.Links, res.PersonsWithoutEvents
	maps.Copy(rep.NotBuilt, res.NotBuilt)
	for _, table := range gold.DerivedTables {
		if err := r.write(ctx, table, res.Rows(table)); err != nil {
			return err
		}
	}
	return nil
}

// write writes the data files of one CDM table.
func (r *refreshWriter) write(ctx context.Context, table string, rows iter.Seq2[gold.Row, error]) error {
	l, err := CDMLayout(r.ns, table)
	if err != nil {
		return err
	}
	w, err := newTableWriter(ctx, r.lk, l, r.id, r.files, r.maxFileRows)
	if err != nil {
		return err
	}
	r.writers = append(r.writers, w)
	return w.write(func(yield func(parquet.Row, error) bool) {
		var dst parquet.Row
		for row, err := range rows {
			if err == nil {
				dst, err = parquetRow(dst, l, func(_ int, name string) any { return row[name] })
			}
			if !yield(dst, err) || err != nil {
				return
			}
		}
	})
}

// commitAll commits the tables in the order written, each snapshot recording the
// refresh, its sources and vocabulary, and why a table was not built.
func (r *refreshWriter) commitAll(ctx context.Context, rep *Report, refreshed time.Time) error {
	sources, _ := json.Marshal(rep.Sources)
	props := iceberg.Properties{
		SummaryRefresh:     rep.RefreshID,
		SummaryRefreshedAt: refreshed.UTC().Format(time.RFC3339),
		SummarySources:     string(sources),
		SummaryVocabulary:  rep.VocabularyVersion,
	}
	for i, w := range r.writers {
		p := maps.Clone(props)
		if why := rep.NotBuilt[w.l.Name]; why != nil {
			p[SummaryNotBuilt] = why.Error()
		}
		snap, err := w.commit(ctx, p)
		if err != nil {
			r.abort()
			if i == 0 {
				return fmt.Errorf("nothing committed: %w", err)
			}
			return fmt.Errorf("committed %d of %d tables (refresh %s; the others keep the previous refresh until the next succeeds): %w",
				i, len(r.writers), rep.RefreshID, err)
		}
		rep.Tables = append(rep.Tables, TableLoad{Table: joinIdent(r.lk.Ident(w.l)), Rows: w.rows, Files: w.n, Snapshot: snap, Took: w.took})
	}
	return nil
}

// refreshVocabulary finds the refresh's vocabulary (see Options.VocabularyDir), loading
// it into the namespace when it is not there yet.
func refreshVocabulary(ctx context.Context, lk *lakehouse.Lake, ns string, o Options, rep *Report) (gold.VocabularyTables, error) {
	lakeVersion, loaded, err := lakeVocabularyVersion(ctx, lk, ns)
	if err != nil {
		return nil, err
	}
	if o.VocabularyDir == "" {
		if !loaded {
			rep.Vocabulary = "none"
			return nil, nil
		}
		rep.Vocabulary, rep.VocabularyVersion = "the vocabulary tables of "+joinIdent(lk.Namespace(ns)), lakeVersion
		return LakeVocabulary(ctx, lk, ns), nil
	}
	version, err := gold.VocabularyVersion(o.VocabularyDir)
	if err != nil {
		version = "" // cdm_source says why (not built)
	}
	rep.VocabularyVersion = version
	if !loaded || version == "" || lakeVersion != version {
		load, err := LoadVocabulary(ctx, lk, o.VocabularyDir, VocabularyOptions{Namespace: ns, Files: o.Files, MaxFileRows: o.MaxFileRows})
		if err != nil {
			return nil, fmt.Errorf("load the vocabulary, nothing committed: %w", err)
		}
		rep.VocabularyLoad = load
		rep.Vocabulary = o.VocabularyDir + " (loaded into " + joinIdent(lk.Namespace(ns)) + ")"
	} else {
		rep.Vocabulary = o.VocabularyDir + " (its release is in " + joinIdent(lk.Namespace(ns)) + " already)"
	}
	return gold.FileTables(o.VocabularyDir), nil
}

// isCurrent reports whether the namespace's last refresh read the same omop snapshots
// and vocabulary release as this one would: cdm_source, committed last, records them.
func isCurrent(ctx context.Context, lk *lakehouse.Lake, ns string, rep *Report) (string, bool, error) {
	l, err := CDMLayout(ns, "cdm_source")
	if err != nil {
		return "", false, err
	}
	p, err := currentSummary(ctx, lk, l)
	if err != nil || p == nil {
		return "", false, err
	}
	var last map[string]int64
	if err := json.Unmarshal([]byte(p[SummarySources]), &last); err != nil {
		return "", false, nil
	}
	if !maps.Equal(last, rep.Sources) || p[SummaryVocabulary] != rep.VocabularyVersion || p[SummaryRefresh] == "" {
		return "", false, nil
	}
	return p[SummaryRefresh], true, nil
}

// buildVersion is the version of the module the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Tables lists the gold CDM's tables in commit order.
func Tables() []string { return slices.Clone(gold.CDMTables) }

// RefreshLake opens the lake cfg names, refreshes its gold CDM (Refresh) and closes it.
func RefreshLake(ctx context.Context, cfg lakehouse.Config, o Options) (*Report, error) {
	lk, err := lakehouse.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer lk.Close()
	return Refresh(ctx, lk, o)
}

// currentSummary is the summary of the current snapshot of the table l: nil when the
// table, its namespace or a snapshot is not there yet.
func currentSummary(ctx context.Context, lk *lakehouse.Lake, l *lakehouse.Layout) (iceberg.Properties, error) {
	tbl, err := lk.Catalog.LoadTable(ctx, lk.Ident(l))
	if errors.Is(err, catalog.ErrNoSuchTable) || errors.Is(err, catalog.ErrNoSuchNamespace) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("goldlake: load %s: %w", l, err)
	}
	snap := tbl.CurrentSnapshot()
	if snap == nil || snap.Summary == nil {
		return nil, nil
	}
	return snap.Summary.Properties, nil
}
