package gold

import (
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/fhirstream/fhirstream/consumers/omop"
)

// Link resolution. The mapping stage writes every reference as the id of the key it
// names (docs/omop-mapping.md, "Ids"): a literal reference is the target row's id
// already; a reference by NPI is the id of the NPI key, which only the provider row
// carrying that npi can tell apart; and a reference to a resource the export does not
// hold (or that was dead-lettered) names no row at all. The stage cannot know which, as
// it sees one resource at a time; this pass, over all current rows, does:
//
//   - a foreign key naming an existing row stays;
//   - a provider_id that is the NPI key of a provider becomes that provider's id;
//   - any other foreign key becomes null, counted by table and column (never a
//     dangling id);
//   - a row whose required person_id names no person is left out, counted: the CDM has
//     no event without a person.
//
// It also dates device exposures. A Device resource records no date of use, so the
// stage dates its row by manufactureDate; a procedure that manipulated the device
// (focalDevice) or a DeviceUseStatement naming it gives a device_exposure row of its own
// whose device_source_value is "Device/<id>". Where such dating rows exist for a Device
// row of the same person, the Device row takes the earliest start and the latest end of
// them and the dating rows are left out (one exposure, not two), counted.

// fkColumns are the foreign keys the mapper writes, per table, with the table each
// names.
var fkColumns = map[string][]struct{ column, target string }{
	"person":               {{"provider_id", "provider"}, {"care_site_id", "care_site"}, {"location_id", "location"}},
	"visit_occurrence":     {{"person_id", "person"}, {"provider_id", "provider"}, {"care_site_id", "care_site"}},
	"condition_occurrence": {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"measurement":          {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"observation":          {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"drug_exposure":        {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"procedure_occurrence": {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"device_exposure":      {{"person_id", "person"}, {"provider_id", "provider"}, {"visit_occurrence_id", "visit_occurrence"}},
	"death":                {{"person_id", "person"}},
	"care_site":            {{"location_id", "location"}},
	"provider":             {{"care_site_id", "care_site"}},
}

// targetKeys are the primary keys of the tables foreign keys name.
var targetKeys = map[string]string{
	"person": "person_id", "visit_occurrence": "visit_occurrence_id", "provider": "provider_id",
	"care_site": "care_site_id", "location": "location_id",
}

// Links resolves the foreign keys of CDM rows; see the comment above. It is read-only
// once built and safe for concurrent use.
type Links struct {
	ids    map[string][]int64      // target table → its ids, sorted (8 bytes each)
	alias  map[int64]int64         // NPI key id → provider_id
	dating map[int64]*deviceDating // Device row id → what dates it
}

// deviceDating is the span of the rows dating one Device row.
type deviceDating struct {
	person           int64
	start, end       day
	hasEnd           bool // some dating row has an end
	startRow, endRow Row  // the rows giving the earliest start and the latest end
}

// isDatingRow reports whether a device_exposure row dates a Device (it names one in
// device_source_value and is not the Device's own row), and the Device row's id.
func isDatingRow(r Row) (int64, bool) {
	src, _ := r["device_source_value"].(string)
	key, _ := r["_fhir_key"].(string)
	if !strings.HasPrefix(src, "Device/") || strings.HasPrefix(key, "Device/") {
		return 0, false
	}
	return omop.ID(src), true
}

// NewLinks reads the ids of persons, visits, providers, care sites and locations, and
// the npi of every provider.
func NewLinks(src Source) (*Links, error) {
	l := &Links{ids: map[string][]int64{}, alias: map[int64]int64{}, dating: map[int64]*deviceDating{}}
	for table, key := range targetKeys {
		cols := []string{key}
		if table == "provider" {
			cols = append(cols, "npi")
		}
		var ids []int64
		for r, err := range rowsOf(src, table, cols...) {
			if err != nil {
				return nil, err
			}
			id, ok, err := longCol(r, table, key)
			if err != nil {
				return nil, err
			}
			if ok {
				ids = append(ids, id)
			}
			if npi, isString := r["npi"].(string); table == "provider" && isString && npi != "" && ok {
				l.alias[omop.IdentifierID("Practitioner", omop.NPISystem, npi)] = id
			}
		}
		slices.Sort(ids)
		l.ids[table] = slices.Compact(ids)
	}
	return l, l.readDeviceDating(src)
}

// has reports whether table has a row with primary key id.
func (l *Links) has(table string, id int64) bool {
	_, found := slices.BinarySearch(l.ids[table], id)
	return found
}

// Persons is the number of persons.
func (l *Links) Persons() int { return len(l.ids["person"]) }

// readDeviceDating finds the dating rows of each Device row (see Links).
func (l *Links) readDeviceDating(src Source) error {
	const t = "device_exposure"
	devices := map[int64]int64{} // Device row id → person
	for r, err := range rowsOf(src, t, "_fhir_key", "device_exposure_id", "person_id", "device_source_value",
		"device_exposure_start_date", "device_exposure_start_datetime", "device_exposure_end_date", "device_exposure_end_datetime") {
		if err != nil {
			return err
		}
		pid, _, err := longCol(r, t, "person_id")
		if err != nil {
			return err
		}
		if key, _ := r["_fhir_key"].(string); strings.HasPrefix(key, "Device/") {
			id, _, err := longCol(r, t, "device_exposure_id")
			if err != nil {
				return err
			}
			devices[id] = pid
			continue
		}
		dev, ok := isDatingRow(r)
		if !ok {
			continue
		}
		start, ok, err := dateCol(r, t, "device_exposure_start_date")
		if err != nil || !ok {
			continue
		}
		end, hasEnd, err := dateCol(r, t, "device_exposure_end_date")
		if err != nil {
			return err
		}
		dd := l.dating[dev]
		switch {
		case dd == nil:
			dd = &deviceDating{person: pid, start: start, startRow: r}
			l.dating[dev] = dd
		case dd.person != pid:
			dd.person = -1 // rows of different persons name it: date nothing by it
			continue
		case start < dd.start:
			dd.start, dd.startRow = start, r
		}
		if hasEnd && (!dd.hasEnd || end > dd.end) {
			dd.end, dd.endRow, dd.hasEnd = end, r, true
		}
	}
	for id, dd := range l.dating {
		if p, ok := devices[id]; !ok || p != dd.person {
			delete(l.dating, id)
		}
	}
	return nil
}

// LinkCounts is what resolution did: foreign keys set to null and NPI references mapped
// to their provider, by "<table>.<column>", and rows left out for want of their person,
// by table.
type LinkCounts struct {
	Unresolved, ResolvedByNPI, Dropped map[string]int64
	// DevicesDated counts Device rows dated by a procedure or use statement; DatingRows
	// the dating rows merged into them (left out).
	DevicesDated, DatingRows int64
}

// Resolve returns r with its foreign keys resolved (a copy when any changes), and false
// when the row must be left out because its person does not exist. counts, when not
// nil, is added to.
func (l *Links) Resolve(table string, r Row, counts *LinkCounts) (Row, bool) {
	out, copied := r, false
	for _, fk := range fkColumns[table] {
		id, ok, err := longCol(r, table, fk.column)
		if err != nil || !ok {
			continue // null stays null; a mistyped value is the schema's business
		}
		if l.has(fk.target, id) {
			continue
		}
		if fk.column == "person_id" {
			if counts != nil {
				counts.add(&counts.Dropped, table)
			}
			return nil, false
		}
		if !copied {
			out, copied = maps.Clone(r), true
		}
		if canonical, known := l.alias[id]; known && fk.target == "provider" {
			out[fk.column] = canonical
			if counts != nil {
				counts.add(&counts.ResolvedByNPI, table+"."+fk.column)
			}
			continue
		}
		out[fk.column] = nil
		if counts != nil {
			counts.add(&counts.Unresolved, table+"."+fk.column)
		}
	}
	if table == "device_exposure" && len(l.dating) > 0 {
		if dev, ok := isDatingRow(out); ok && l.dating[dev] != nil {
			if counts != nil {
				counts.DatingRows++
			}
			return nil, false
		}
		if key, _ := out["_fhir_key"].(string); strings.HasPrefix(key, "Device/") {
			id, _, _ := longCol(out, table, "device_exposure_id")
			if dd := l.dating[id]; dd != nil {
				if !copied {
					out = maps.Clone(out)
				}
				out["device_exposure_start_date"] = dd.startRow["device_exposure_start_date"]
				out["device_exposure_start_datetime"] = dd.startRow["device_exposure_start_datetime"]
				if dd.hasEnd {
					out["device_exposure_end_date"] = dd.endRow["device_exposure_end_date"]
					out["device_exposure_end_datetime"] = dd.endRow["device_exposure_end_datetime"]
				}
				if counts != nil {
					counts.DevicesDated++
				}
			}
		}
	}
	return out, true
}

func (c *LinkCounts) add(m *map[string]int64, k string) {
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[k]++
}

// Count resolves every row of src once and returns what resolution does to them.
func (l *Links) Count(src Source) (LinkCounts, error) {
	var c LinkCounts
	for table := range fkColumns {
		for r, err := range src.Rows(table) {
			if err != nil {
				return c, err
			}
			l.Resolve(table, r, &c)
		}
	}
	return c, nil
}

// Source is src with every table's rows passed through Resolve: the rows a conformant
// CDM holds.
func (l *Links) Source(src Source) Source { return resolved{src: src, links: l} }

type resolved struct {
	src   Source
	links *Links
}

func (r resolved) Rows(table string) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		for row, err := range r.src.Rows(table) {
			if err != nil {
				yield(nil, err)
				return
			}
			out, keep := r.links.Resolve(table, row, nil)
			if keep && !yield(out, nil) {
				return
			}
		}
	}
}
