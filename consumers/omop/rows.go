package omop

import (
	"fmt"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/schemas"
)

// Rows are schemas.Row values, set by column position. The positions are resolved once,
// in New, into the structs below: one field per column the mapper writes, named after it
// in its tag. Building rows as maps (hashing every column name to set it, again to encode
// it, then clearing the map) was the largest part of the mapper's cost after parsing.

// tableInfo is an output table with everything the mapper needs of it, resolved once.
type tableInfo struct {
	name       string
	table      *schemas.Table
	topic      string // Topics.OMOP(name), which concatenates
	slot       int    // index into mapper.spare
	env        envelopeCols
	event      eventCols // event tables only
	rowsMetric prometheus.Counter
}

// envelopeCols are the _fhir_ columns every table ends with.
type envelopeCols struct {
	Key         int `col:"_fhir_key"`
	Version     int `col:"_fhir_version"`
	LastUpdated int `col:"_fhir_last_updated"`
	Component   int `col:"_fhir_component"`
	Deleted     int `col:"_fhir_deleted"`
	Replaces    int `col:"_fhir_replaces"`
}

type personCols struct {
	PersonID             int `col:"person_id"`
	GenderConceptID      int `col:"gender_concept_id"`
	YearOfBirth          int `col:"year_of_birth"`
	MonthOfBirth         int `col:"month_of_birth"`
	DayOfBirth           int `col:"day_of_birth"`
	BirthDatetime        int `col:"birth_datetime"`
	RaceConceptID        int `col:"race_concept_id"`
	EthnicityConceptID   int `col:"ethnicity_concept_id"`
	LocationID           int `col:"location_id"`
	ProviderID           int `col:"provider_id"`
	CareSiteID           int `col:"care_site_id"`
	PersonSourceValue    int `col:"person_source_value"`
	GenderSourceValue    int `col:"gender_source_value"`
	RaceSourceValue      int `col:"race_source_value"`
	EthnicitySourceValue int `col:"ethnicity_source_value"`
}

type deathCols struct {
	PersonID           int `col:"person_id"`
	DeathDate          int `col:"death_date"`
	DeathDatetime      int `col:"death_datetime"`
	DeathTypeConceptID int `col:"death_type_concept_id"`
}

type locationCols struct {
	LocationID          int `col:"location_id"`
	Address1            int `col:"address_1"`
	Address2            int `col:"address_2"`
	City                int `col:"city"`
	State               int `col:"state"`
	Zip                 int `col:"zip"`
	County              int `col:"county"`
	LocationSourceValue int `col:"location_source_value"`
	CountrySourceValue  int `col:"country_source_value"`
	Latitude            int `col:"latitude"`
	Longitude           int `col:"longitude"`
}

type visitCols struct {
	VisitOccurrenceID       int `col:"visit_occurrence_id"`
	PersonID                int `col:"person_id"`
	VisitConceptID          int `col:"visit_concept_id"`
	VisitStartDate          int `col:"visit_start_date"`
	VisitStartDatetime      int `col:"visit_start_datetime"`
	VisitEndDate            int `col:"visit_end_date"`
	VisitEndDatetime        int `col:"visit_end_datetime"`
	VisitTypeConceptID      int `col:"visit_type_concept_id"`
	ProviderID              int `col:"provider_id"`
	CareSiteID              int `col:"care_site_id"`
	VisitSourceValue        int `col:"visit_source_value"`
	AdmittedFromConceptID   int `col:"admitted_from_concept_id"`
	AdmittedFromSourceValue int `col:"admitted_from_source_value"`
	DischargedToConceptID   int `col:"discharged_to_concept_id"`
	DischargedToSourceValue int `col:"discharged_to_source_value"`
}

type providerCols struct {
	ProviderID          int `col:"provider_id"`
	ProviderName        int `col:"provider_name"`
	NPI                 int `col:"npi"`
	YearOfBirth         int `col:"year_of_birth"`
	GenderConceptID     int `col:"gender_concept_id"`
	ProviderSourceValue int `col:"provider_source_value"`
	GenderSourceValue   int `col:"gender_source_value"`
}

type careSiteCols struct {
	CareSiteID                int `col:"care_site_id"`
	CareSiteName              int `col:"care_site_name"`
	LocationID                int `col:"location_id"`
	CareSiteSourceValue       int `col:"care_site_source_value"`
	PlaceOfServiceSourceValue int `col:"place_of_service_source_value"`
}

// eventCols are the columns the six event tables (condition_occurrence, measurement,
// observation, procedure_occurrence, drug_exposure, device_exposure) share by role, which
// emit sets alike for all six. The CDM names them after the table (condition_start_date,
// measurement_date, drug_exposure_start_date, ...): eventTableNaming says how. EndDate
// and EndDatetime are -1 in the tables without an end (measurement, observation).
type eventCols struct {
	ID, PersonID, ConceptID, TypeConceptID         int
	StartDate, StartDatetime, EndDate, EndDatetime int
	ProviderID, VisitOccurrenceID                  int
	SourceValue, SourceConceptID                   int
}

// eventNaming is how an event table names its eventCols: <table>_id, person_id,
// provider_id, visit_occurrence_id; <concept>_concept_id, <concept>_type_concept_id,
// <concept>_source_value, <concept>_source_concept_id; <start>_date, <start>_datetime,
// and <end>_date, <end>_datetime when end is not empty.
type eventNaming struct{ concept, start, end string }

var eventTableNaming = map[string]eventNaming{
	"condition_occurrence": {"condition", "condition_start", "condition_end"},
	"measurement":          {"measurement", "measurement", ""},
	"observation":          {"observation", "observation", ""},
	"procedure_occurrence": {"procedure", "procedure", "procedure_end"},
	"drug_exposure":        {"drug", "drug_exposure_start", "drug_exposure_end"},
	"device_exposure":      {"device", "device_exposure_start", "device_exposure_end"},
}

// resolveEventColumns finds t's eventCols by n's naming.
func resolveEventColumns(t *schemas.Table, n eventNaming) (eventCols, error) {
	c := eventCols{EndDate: -1, EndDatetime: -1}
	type named struct {
		dst  *int
		name string
	}
	want := []named{
		{&c.ID, t.Name + "_id"}, {&c.PersonID, "person_id"},
		{&c.ConceptID, n.concept + "_concept_id"}, {&c.TypeConceptID, n.concept + "_type_concept_id"},
		{&c.StartDate, n.start + "_date"}, {&c.StartDatetime, n.start + "_datetime"},
		{&c.ProviderID, "provider_id"}, {&c.VisitOccurrenceID, "visit_occurrence_id"},
		{&c.SourceValue, n.concept + "_source_value"}, {&c.SourceConceptID, n.concept + "_source_concept_id"},
	}
	if n.end != "" {
		want = append(want, named{&c.EndDate, n.end + "_date"}, named{&c.EndDatetime, n.end + "_datetime"})
	}
	for _, w := range want {
		pos, ok := t.ColumnIndex(w.name)
		if !ok {
			return c, fmt.Errorf("table %s has no column %q", t.Name, w.name)
		}
		*w.dst = pos
	}
	return c, nil
}

// The columns of each event table beyond its eventCols.

type conditionCols struct {
	StopReason                 int `col:"stop_reason"`
	ConditionStatusSourceValue int `col:"condition_status_source_value"`
}

type measurementCols struct {
	OperatorConceptID   int `col:"operator_concept_id"`
	ValueAsNumber       int `col:"value_as_number"`
	ValueAsConceptID    int `col:"value_as_concept_id"`
	UnitConceptID       int `col:"unit_concept_id"`
	RangeLow            int `col:"range_low"`
	RangeHigh           int `col:"range_high"`
	UnitSourceValue     int `col:"unit_source_value"`
	UnitSourceConceptID int `col:"unit_source_concept_id"`
	ValueSourceValue    int `col:"value_source_value"`
}

type observationCols struct {
	ValueAsNumber        int `col:"value_as_number"`
	ValueAsString        int `col:"value_as_string"`
	ValueAsConceptID     int `col:"value_as_concept_id"`
	QualifierConceptID   int `col:"qualifier_concept_id"`
	UnitConceptID        int `col:"unit_concept_id"`
	UnitSourceValue      int `col:"unit_source_value"`
	QualifierSourceValue int `col:"qualifier_source_value"`
	ValueSourceValue     int `col:"value_source_value"`
}

type drugCols struct {
	VerbatimEndDate     int `col:"verbatim_end_date"`
	StopReason          int `col:"stop_reason"`
	Refills             int `col:"refills"`
	Quantity            int `col:"quantity"`
	DaysSupply          int `col:"days_supply"`
	Sig                 int `col:"sig"`
	RouteConceptID      int `col:"route_concept_id"`
	LotNumber           int `col:"lot_number"`
	RouteSourceValue    int `col:"route_source_value"`
	DoseUnitSourceValue int `col:"dose_unit_source_value"`
}

type deviceCols struct {
	UniqueDeviceID int `col:"unique_device_id"`
	ProductionID   int `col:"production_id"`
}

// columns holds the column positions of every table the mapper writes.
type columns struct {
	person      personCols
	death       deathCols
	location    locationCols
	visit       visitCols
	provider    providerCols
	careSite    careSiteCols
	condition   conditionCols
	measurement measurementCols
	observation observationCols
	drug        drugCols
	device      deviceCols
}

// outTables are the tables the mapper writes, by role.
type outTables struct {
	person, death, location, visit, provider, careSite,
	condition, measurement, observation, procedure, drug, device *tableInfo
}

// resolveColumns sets each int field of the struct dst points to to the position in t of
// the column its col tag names.
func resolveColumns(t *schemas.Table, dst any) error {
	v := reflect.ValueOf(dst).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("col")
		pos, ok := t.ColumnIndex(name)
		if !ok {
			return fmt.Errorf("table %s has no column %q", t.Name, name)
		}
		v.Field(i).SetInt(int64(pos))
	}
	return nil
}

// bindTables resolves the tables and column positions the mapper uses.
func (p *Processor) bindTables() error {
	bind := []struct {
		name string
		info **tableInfo
		cols any
	}{
		{"person", &p.t.person, &p.cols.person},
		{"death", &p.t.death, &p.cols.death},
		{"location", &p.t.location, &p.cols.location},
		{"visit_occurrence", &p.t.visit, &p.cols.visit},
		{"provider", &p.t.provider, &p.cols.provider},
		{"care_site", &p.t.careSite, &p.cols.careSite},
		{"condition_occurrence", &p.t.condition, &p.cols.condition},
		{"measurement", &p.t.measurement, &p.cols.measurement},
		{"observation", &p.t.observation, &p.cols.observation},
		{"procedure_occurrence", &p.t.procedure, nil}, // its eventCols are all it has
		{"drug_exposure", &p.t.drug, &p.cols.drug},
		{"device_exposure", &p.t.device, &p.cols.device},
	}
	for _, b := range bind {
		info, ok := p.tables[b.name]
		if !ok {
			return fmt.Errorf("no OMOP table %s", b.name)
		}
		if b.cols != nil {
			if err := resolveColumns(info.table, b.cols); err != nil {
				return err
			}
		}
		if n, ok := eventTableNaming[b.name]; ok {
			var err error
			if info.event, err = resolveEventColumns(info.table, n); err != nil {
				return err
			}
		}
		*b.info = info
	}
	return nil
}

// newTableInfo resolves one table for New.
func newTableInfo(t *schemas.Table, topic string, slot int) (*tableInfo, error) {
	info := &tableInfo{name: t.Name, table: t, topic: topic, slot: slot, rowsMetric: metricRows.WithLabelValues(t.Name)}
	if err := resolveColumns(t, &info.env); err != nil {
		return nil, err
	}
	return info, nil
}

// Setters for the mapper's optional values: the zero value of each (0 id, "" string,
// absent code, missing date) leaves the column null.

func setOptID(r *schemas.Row, col int, id int64) {
	if id != 0 {
		r.SetLong(col, id)
	}
}

func setOptString(r *schemas.Row, col int, s string) {
	if s != "" {
		r.SetString(col, s)
	}
}

// setConcept writes a code's standard concept, 0 when unmapped, null when no code.
func setConcept(r *schemas.Row, col int, c coded) {
	if c.present {
		r.SetInt(col, c.concept)
	}
}

// setSourceConcept writes a code's own concept, 0 when unknown, null when no code.
func setSourceConcept(r *schemas.Row, col int, c coded) {
	if c.present {
		r.SetInt(col, c.sourceConcept)
	}
}

func setOptFloat(r *schemas.Row, col int, ok bool, f float64) {
	if ok {
		r.SetDouble(col, f)
	}
}

func setOptInt32(r *schemas.Row, col int, p *int32) {
	if p != nil {
		r.SetInt(col, *p)
	}
}

// setDate writes the *_date value of f: the calendar day as recorded, in its own offset.
func setDate(r *schemas.Row, col int, f fhirTime) {
	if f.valid() {
		r.SetDate(col, f.t)
	}
}

// setDatetime writes the *_datetime value of f: the wall-clock time as recorded (in its
// own UTC offset, like the *_date), null for a date without time.
func setDatetime(r *schemas.Row, col int, f fhirTime) {
	if f.valid() && f.hasTime {
		r.SetLocalTimestamp(col, f.t)
	}
}
