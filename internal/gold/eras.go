package gold

import (
	"errors"
	"strconv"
)

// PersistenceWindow is the gap, in days, that OHDSI's standard era logic bridges: two
// occurrences of the same condition (or exposures to the same ingredient) whose gap is
// at most this long belong to one era.
const PersistenceWindow = 30

// era is one condition or drug era; gap is drug_era's gap_days.
type era struct {
	person     int64
	concept    int32
	start, end day
	count, gap int32
}

func (e era) conditionRow() Row {
	return Row{
		"condition_era_id":           id(eraKey("condition_era", e.person, e.concept, e.start)),
		"person_id":                  e.person,
		"condition_concept_id":       e.concept,
		"condition_era_start_date":   e.start.time(),
		"condition_era_end_date":     e.end.time(),
		"condition_occurrence_count": e.count,
	}
}

func (e era) drugRow() Row {
	return Row{
		"drug_era_id":         id(eraKey("drug_era", e.person, e.concept, e.start)),
		"person_id":           e.person,
		"drug_concept_id":     e.concept,
		"drug_era_start_date": e.start.time(),
		"drug_era_end_date":   e.end.time(),
		"drug_exposure_count": e.count,
		"gap_days":            e.gap,
	}
}

func eraKey(table string, person int64, concept int32, start day) string {
	return table + "/" + strconv.FormatInt(person, 10) + "/" + strconv.Itoa(int(concept)) + "/" + start.time().Format("2006-01-02")
}

// ConditionEras derives condition_era by OHDSI's standard logic (ETL-CMS
// create_CDMv5_condition_era.sql, which ETL-Synthea and the CDM's own era scripts use):
// per person and condition_concept_id (0 excluded), each occurrence spans
// condition_start_date to condition_end_date, or to the start + 1 day when it has no
// end; occurrences at most 30 days apart (PersistenceWindow) join one era, from the
// earliest start to the latest end, counting its occurrences. Ids are hashes of person,
// concept and era start. The rows of src are taken as they are (no link resolution):
// Refresh and Builder compute the same over resolved rows.
func ConditionEras(src Source) ([]Row, error) {
	b := NewBuilder(nil, Options{})
	if err := addTable(b, src, "condition_occurrence"); err != nil {
		return nil, err
	}
	res, err := b.Finish()
	if err != nil {
		return nil, err
	}
	return collect(res.Rows("condition_era"))
}

// ErrNoVocabulary is the reason drug_era is not built without ingredient data: drug eras
// are per ingredient, which only a vocabulary's CONCEPT_ANCESTOR knows.
var ErrNoVocabulary = errors.New("drug_era needs a vocabulary (CONCEPT and CONCEPT_ANCESTOR) to roll drugs up to their ingredients; none is loaded")

// DrugEras derives drug_era by OHDSI's standard logic (ETL-CMS
// create_CDMv5_drug_era_non_stockpile.sql, which ETL-Synthea uses):
//
//   - each drug_exposure (drug_concept_id not 0, days_supply not negative) counts once
//     for each RxNorm ingredient it descends from (ing);
//   - it ends at drug_exposure_end_date, else start + days_supply when that is not 0,
//     else start + 1 day;
//   - exposures of one ingredient that overlap or touch merge into sub-exposures (no
//     gap bridged), each exposed for end - start days;
//   - sub-exposures at most 30 days apart (PersistenceWindow) join one era, from the
//     earliest start to the latest end, with drug_exposure_count the exposures in it
//     and gap_days the era's length less its days exposed (ETL-CMS's definition).
//
// Without ingredients (nil) it returns ErrNoVocabulary. Rows are taken as they are, as
// in ConditionEras.
func DrugEras(src Source, ing *Ingredients) ([]Row, error) {
	if ing == nil {
		return nil, ErrNoVocabulary
	}
	b := NewBuilder(nil, Options{})
	b.vocab.ingredients = ing
	if err := addTable(b, src, "drug_exposure"); err != nil {
		return nil, err
	}
	res, err := b.Finish()
	if err != nil {
		return nil, err
	}
	return collect(res.Rows("drug_era"))
}

// addTable adds every row of table to b.
func addTable(b *Builder, src Source, table string) error {
	for r, err := range src.Rows(table) {
		if err != nil {
			return err
		}
		if _, _, err := b.Add(table, r); err != nil {
			return err
		}
	}
	return nil
}

// collect gathers the rows of a row sequence.
func collect(rows func(func(Row, error) bool)) ([]Row, error) {
	var out []Row
	for r, err := range rows {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
