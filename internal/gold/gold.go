// Package gold computes the OMOP CDM tables that no single FHIR resource gives and OHDSI's
// tools need: observation_period, cdm_source, condition_era and drug_era, plus the
// resolution of references the mapping stage could not resolve on its own (link
// resolution). It is pure Go over row iterators: it reads the current rows of the CDM
// tables (whatever holds them: the lake, a test's memory) and returns rows, so the same
// code serves `gold refresh` over the lake and the tests that hold it to OHDSI's SQL.
//
// Rows are the map form of package schemas (schemas.Decode): record ids int64, concept
// ids int32, dates and datetimes time.Time, null nil. Every function here follows a
// published OHDSI convention, named in its comment and in docs/omop-mapping.md.
package gold

import (
	"fmt"
	"iter"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Row is one CDM row in the map form of package schemas.
type Row = map[string]any

// Source gives the current rows of a CDM table (the newest version of each source
// resource, retractions removed). A table with no rows yields none.
type Source interface {
	Rows(table string) iter.Seq2[Row, error]
}

// ColumnSource is a Source that can read some columns of a table only (a lake scan then
// reads only their column chunks). Passes that need a few columns use it when offered.
type ColumnSource interface {
	Source
	Columns(table string, columns ...string) iter.Seq2[Row, error]
}

// rowsOf reads the named columns of table from src (all of them when src is not a
// ColumnSource).
func rowsOf(src Source, table string, columns ...string) iter.Seq2[Row, error] {
	if cs, ok := src.(ColumnSource); ok {
		return cs.Columns(table, columns...)
	}
	return src.Rows(table)
}

// Tables is a Source held in memory, by table name.
type Tables map[string][]Row

// Rows yields the rows of table.
func (t Tables) Rows(table string) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		for _, r := range t[table] {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// day is a calendar date as days since 1970-01-01, the unit every era and period
// computation here works in (the CDM's *_date columns).
type day int32

func dayOf(t time.Time) day {
	y, m, d := t.Date()
	return day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func (d day) time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// Column readers: a wrong type is a programming error upstream (the rows come from the
// CDM's schemas), reported as an error naming the table and column, never a panic.

func dateCol(r Row, table, col string) (day, bool, error) {
	switch v := r[col].(type) {
	case nil:
		return 0, false, nil
	case time.Time:
		return dayOf(v), true, nil
	default:
		return 0, false, fmt.Errorf("%s.%s: %T, want a date", table, col, v)
	}
}

func longCol(r Row, table, col string) (int64, bool, error) {
	switch v := r[col].(type) {
	case nil:
		return 0, false, nil
	case int64:
		return v, true, nil
	case int32:
		return int64(v), true, nil
	default:
		return 0, false, fmt.Errorf("%s.%s: %T, want an integer", table, col, v)
	}
}

func intCol(r Row, table, col string) (int32, bool, error) {
	n, ok, err := longCol(r, table, col)
	return int32(n), ok, err
}

// id is a gold row's id: a 63-bit hash of a key naming what the row is (as the mapping
// stage's ids are), so it is the same at every refresh while the row's defining values
// stay, without coordination. Never 0.
func id(key string) int64 {
	h := int64(xxhash.Sum64String(key) & (1<<63 - 1))
	if h == 0 {
		h = 1
	}
	return h
}
