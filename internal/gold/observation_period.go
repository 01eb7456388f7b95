package gold

import (
	"fmt"
	"slices"
)

// PeriodTypeEHR is period_type_concept_id 32882 "Standard algorithm from EHR", the type
// OHDSI's ETL-Synthea gives periods it derives from EHR events (vocab.TypeEHRPeriod; a
// test ties the two).
const PeriodTypeEHR int32 = 32882

// eventSpans are the date columns a person's events occupy, per table: start and end
// (end "" when the event is a single day). Death counts: a person is observed until
// their death is recorded.
var eventSpans = []struct{ table, start, end string }{
	{"visit_occurrence", "visit_start_date", "visit_end_date"},
	{"condition_occurrence", "condition_start_date", "condition_end_date"},
	{"procedure_occurrence", "procedure_date", "procedure_end_date"},
	{"drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"},
	{"device_exposure", "device_exposure_start_date", "device_exposure_end_date"},
	{"measurement", "measurement_date", ""},
	{"observation", "observation_date", ""},
	{"death", "death_date", ""},
}

// ObservationPeriods derives observation_period: one period per person, from the
// earliest to the latest date of any of the person's current events (visits,
// conditions, procedures, drug and device exposures, measurements, observations,
// death), period type 32882. This is OHDSI's usual derivation for EHR data, where no
// enrolment periods exist (CDM v5.4 OBSERVATION_PERIOD conventions; ETL-Synthea derives
// it from visits alone, we take every event so that no event falls outside). The id is
// the person_id: one period per person, stable across refreshes. Persons without any
// event get no period (counted by the caller through len(persons) - len(result); the
// conformance check reports them). Events of persons not in person are ignored.
func ObservationPeriods(src Source) ([]Row, error) {
	type span struct {
		first, last day
		seen        bool
	}
	persons := map[int64]*span{}
	for r, err := range src.Rows("person") {
		if err != nil {
			return nil, err
		}
		pid, ok, err := longCol(r, "person", "person_id")
		if err != nil || !ok {
			return nil, fmt.Errorf("person row without person_id: %v", err)
		}
		persons[pid] = &span{}
	}
	for _, e := range eventSpans {
		for r, err := range src.Rows(e.table) {
			if err != nil {
				return nil, err
			}
			pid, _, err := longCol(r, e.table, "person_id")
			if err != nil {
				return nil, err
			}
			s := persons[pid]
			if s == nil {
				continue
			}
			d0, ok, err := dateCol(r, e.table, e.start)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			d1 := d0
			if e.end != "" {
				end, ok, err := dateCol(r, e.table, e.end)
				if err != nil {
					return nil, err
				}
				if ok {
					d1 = end
				}
			}
			lo, hi := min(d0, d1), max(d0, d1)
			if !s.seen {
				*s = span{first: lo, last: hi, seen: true}
				continue
			}
			s.first, s.last = min(s.first, lo), max(s.last, hi)
		}
	}
	out := make([]Row, 0, len(persons))
	for pid, s := range persons {
		if !s.seen {
			continue
		}
		out = append(out, Row{
			"observation_period_id":         pid,
			"person_id":                     pid,
			"observation_period_start_date": s.first.time(),
			"observation_period_end_date":   s.last.time(),
			"period_type_concept_id":        PeriodTypeEHR,
		})
	}
	slices.SortFunc(out, func(a, b Row) int { return cmpInt64(a["person_id"].(int64), b["person_id"].(int64)) })
	return out, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
