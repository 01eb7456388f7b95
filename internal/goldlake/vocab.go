package goldlake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/parquet-go/parquet-go"

	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/vocab"
)

// Snapshot summary keys of the vocabulary tables.
const (
	// SummaryVocabularyVersion is the release loaded (VOCABULARY 'None'), "" when the
	// download has no such row.
	SummaryVocabularyVersion = "fhirstream.vocabulary.version"
	// SummaryVocabularyLoad names the load, the same in all nine tables.
	SummaryVocabularyLoad = "fhirstream.vocabulary.load-id"
)

// VocabularyOptions configure LoadVocabulary.
type VocabularyOptions struct {
	// Namespace is where the tables go (DefaultNamespace when empty), under the lake's
	// root namespace.
	Namespace string
	// Files tune the Parquet files; MaxFileRows bounds the rows per file
	// (lakehouse.DefaultMaxFileRows when 0).
	Files       lakehouse.FileOptions
	MaxFileRows int64
}

// VocabularyLoad is what LoadVocabulary did.
type VocabularyLoad struct {
	Dir     string
	Version string
	LoadID  string
	Tables  []TableLoad
	Took    time.Duration
}

// TableLoad is one table written.
type TableLoad struct {
	Table    string // catalog name, e.g. cdm.concept
	Rows     int64
	Files    int
	Snapshot int64
	Took     time.Duration
}

// LoadVocabulary writes the nine vocabulary tables of the Athena download in dir
// (vocab.Tables) into the gold namespace, typed per the OHDSI DDL: each file streams
// into data files (memory holds a row group), then each table is replaced in one
// snapshot recording the release and the load. Every file must be there, checked before
// anything is written. The tables are replaced one after the other: a load that fails
// leaves the table that failed and those after it as they were, and says which.
func LoadVocabulary(ctx context.Context, lk *lakehouse.Lake, dir string, o VocabularyOptions) (*VocabularyLoad, error) {
	start := time.Now()
	ns := o.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("vocabulary %s is not a directory (an Athena download): %v", dir, err)
	}
	var missing []string
	for i := range vocab.Tables {
		if !hasFile(dir, vocab.Tables[i].File()) {
			missing = append(missing, vocab.Tables[i].File())
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("vocabulary %s lacks %s: an Athena download has all nine tables", dir, strings.Join(missing, ", "))
	}
	version, _ := gold.VocabularyVersion(dir) // "" when the download records none
	res := &VocabularyLoad{Dir: dir, Version: version, LoadID: newID()}
	props := iceberg.Properties{SummaryVocabularyVersion: version, SummaryVocabularyLoad: res.LoadID}
	for i := range vocab.Tables {
		def := &vocab.Tables[i]
		t0 := time.Now()
		l, err := VocabularyLayout(ns, def)
		if err != nil {
			return res, err
		}
		w, err := newTableWriter(ctx, lk, l, "vocab-"+res.LoadID, o.Files, o.MaxFileRows)
		if err != nil {
			return res, err
		}
		if err := w.write(vocabularyRows(dir, def, l)); err != nil {
			w.abort()
			return res, fmt.Errorf("vocabulary %s: %w", def.File(), err)
		}
		snap, err := w.commit(ctx, props)
		if err != nil {
			w.abort()
			return res, err
		}
		res.Tables = append(res.Tables, TableLoad{Table: joinIdent(lk.Ident(l)), Rows: w.rows, Files: w.n, Snapshot: snap, Took: time.Since(t0)})
	}
	res.Took = time.Since(start)
	return res, nil
}

// vocabularyRows streams a table's file as rows of layout l.
func vocabularyRows(dir string, def *vocab.TableDef, l *lakehouse.Layout) func(func(parquet.Row, error) bool) {
	return func(yield func(parquet.Row, error) bool) {
		var dst parquet.Row
		_, _, err := def.StreamFile(dir, func(r vocab.Row) error {
			var err error
			if dst, err = parquetRow(dst, l, func(i int, _ string) any { return r[i] }); err != nil {
				return err
			}
			if !yield(dst, nil) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(nil, err)
		}
	}
}

// hasFile reports whether dir has a file called name, matched case-insensitively as
// vocab.Load matches Athena's names.
func hasFile(dir, name string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() && strings.EqualFold(e.Name(), name) {
			return true
		}
	}
	return false
}

// Write prints the load as a table: rows, files and time per table, and the total.
func (v *VocabularyLoad) Write(w io.Writer) {
	fmt.Fprintf(w, "vocabulary %s (release %q), load %s:\n", filepath.Clean(v.Dir), v.Version, v.LoadID)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TABLE\tROWS\tFILES\tSECONDS\tROWS/S\t")
	var rows int64
	for _, t := range v.Tables {
		rate := 0.0
		if s := t.Took.Seconds(); s > 0 {
			rate = float64(t.Rows) / s
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%.2f\t%.0f\t\n", t.Table, t.Rows, t.Files, t.Took.Seconds(), rate)
		rows += t.Rows
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d rows in %d tables in %s\n", rows, len(v.Tables), v.Took.Round(time.Millisecond))
}

// LakeVocabulary reads the vocabulary tables of the gold namespace (as LoadVocabulary
// wrote them) as gold.VocabularyTables, at their current snapshots. found is false for a
// table the namespace does not have.
func LakeVocabulary(ctx context.Context, lk *lakehouse.Lake, namespace string) gold.VocabularyTables {
	return func(def *vocab.TableDef, row func(vocab.Row) error) (bool, error) {
		l, err := VocabularyLayout(namespace, def)
		if err != nil {
			return false, err
		}
		tbl, err := lk.Catalog.LoadTable(ctx, lk.Ident(l))
		if errors.Is(err, catalog.ErrNoSuchTable) || errors.Is(err, catalog.ErrNoSuchNamespace) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("goldlake: load %s: %w", l, err)
		}
		if tbl.CurrentSnapshot() == nil {
			return false, nil
		}
		names := make([]string, len(def.Columns))
		for i, c := range def.Columns {
			names[i] = c.Name
		}
		out := make(vocab.Row, len(names))
		for rec, err := range scan(ctx, tbl, 0, names) {
			if err != nil {
				return true, fmt.Errorf("goldlake: read %s: %w", l, err)
			}
			cols, err := columnsOf(rec, names)
			if err != nil {
				rec.Release()
				return true, fmt.Errorf("goldlake: read %s: %w", l, err)
			}
			for i := range int(rec.NumRows()) {
				for j := range cols {
					v, err := arrowValue(cols[j], i)
					if err != nil {
						rec.Release()
						return true, fmt.Errorf("goldlake: read %s.%s: %w", l, names[j], err)
					}
					if n, ok := v.(int32); ok {
						v = int64(n) // vocab.Row holds integers as int64
					}
					out[j] = v
				}
				if err := row(out); err != nil {
					rec.Release()
					return true, err
				}
			}
			rec.Release()
		}
		return true, nil
	}
}

// lakeVocabularyVersion is the release the namespace's vocabulary tables hold, as their
// load recorded it: "" when the namespace has none, or its tables come from different
// loads.
func lakeVocabularyVersion(ctx context.Context, lk *lakehouse.Lake, namespace string) (version string, loaded bool, err error) {
	load := ""
	for i := range vocab.Tables {
		l, err := VocabularyLayout(namespace, &vocab.Tables[i])
		if err != nil {
			return "", false, err
		}
		p, err := currentSummary(ctx, lk, l)
		if err != nil || p == nil {
			return "", false, err
		}
		if i == 0 {
			version, load = p[SummaryVocabularyVersion], p[SummaryVocabularyLoad]
		} else if p[SummaryVocabularyLoad] != load {
			return "", false, nil
		}
	}
	return version, load != "", nil
}
