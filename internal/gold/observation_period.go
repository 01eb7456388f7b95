package gold

// PeriodTypeEHR is period_type_concept_id 32882 "Standard algorithm from EHR", the type
// OHDSI's ETL-Synthea gives periods it derives from EHR events (vocab.TypeEHRPeriod; a
// test ties the two).
const PeriodTypeEHR int32 = 32882

// eventSpan names the date columns a table's events occupy: start and end (end "" when
// the event is a single day).
type eventSpan struct{ table, start, end string }

// eventSpans are the events that make a person observed. Death counts: a person is
// observed until their death is recorded.
var eventSpans = []eventSpan{
	{"visit_occurrence", "visit_start_date", "visit_end_date"},
	{"condition_occurrence", "condition_start_date", "condition_end_date"},
	{"procedure_occurrence", "procedure_date", "procedure_end_date"},
	{"drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"},
	{"device_exposure", "device_exposure_start_date", "device_exposure_end_date"},
	{"measurement", "measurement_date", ""},
	{"observation", "observation_date", ""},
	{"death", "death_date", ""},
}

// period is one person's observation period.
type period struct {
	person     int64
	start, end day
}

func (p period) row() Row {
	return Row{
		"observation_period_id":         p.person,
		"person_id":                     p.person,
		"observation_period_start_date": p.start.time(),
		"observation_period_end_date":   p.end.time(),
		"period_type_concept_id":        PeriodTypeEHR,
	}
}

// ObservationPeriods derives observation_period: one period per person, from the
// earliest to the latest date of any of the person's current events (visits,
// conditions, procedures, drug and device exposures, measurements, observations,
// death), period type 32882. This is OHDSI's usual derivation for EHR data, where no
// enrolment periods exist (CDM v5.4 OBSERVATION_PERIOD conventions; ETL-Synthea derives
// it from visits alone, we take every event so that no event falls outside). The id is
// the person_id: one period per person, stable across refreshes. Persons without any
// event get no period (Result.PersonsWithoutEvents; the conformance check reports
// them). Events of persons not in person are ignored. It reads src as it is (person
// first), without link resolution.
func ObservationPeriods(src Source) ([]Row, error) {
	b := NewBuilder(nil, Options{})
	for _, e := range append([]eventSpan{{table: "person"}}, eventSpans...) {
		if err := addTable(b, src, e.table); err != nil {
			return nil, err
		}
	}
	res, err := b.Finish()
	if err != nil {
		return nil, err
	}
	return collect(res.Rows("observation_period"))
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
