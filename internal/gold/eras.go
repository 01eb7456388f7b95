package gold

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// PersistenceWindow is the gap, in days, that OHDSI's standard era logic bridges: two
// occurrences of the same condition (or exposures to the same ingredient) whose gap is
// at most this long belong to one era.
const PersistenceWindow = 30

// interval is one occurrence or exposure of a concept for a person, in days.
type interval struct {
	person     int64
	concept    int32
	start, end day
	count      int32 // occurrences it stands for (sub-exposures merge several)
	exposed    int32 // days exposed (drug sub-exposures)
}

func byPersonConceptStart(a, b interval) int {
	if c := cmp.Compare(a.person, b.person); c != 0 {
		return c
	}
	if c := cmp.Compare(a.concept, b.concept); c != 0 {
		return c
	}
	return cmp.Compare(a.start, b.start)
}

// merge groups intervals sorted by person, concept and start into runs of one person and
// concept where each interval starts at most gap days after the latest end so far (an
// interval starting exactly gap days after it joins the run), and calls run with each.
// This is what OHDSI's era SQL computes with its sweep over start and padded end events
// (ETL-CMS create_CDMv5_condition_era.sql and ..._drug_era_non_stockpile.sql): a run
// ends where every interval so far, its end padded by gap, has closed.
func merge(iv []interval, gap day, run func([]interval, day)) {
	for i := 0; i < len(iv); {
		j, end := i+1, iv[i].end
		for j < len(iv) && iv[j].person == iv[i].person && iv[j].concept == iv[i].concept && iv[j].start <= end+gap {
			end = max(end, iv[j].end)
			j++
		}
		run(iv[i:j], end)
		i = j
	}
}

// ConditionEras derives condition_era by OHDSI's standard logic (ETL-CMS
// create_CDMv5_condition_era.sql, which ETL-Synthea and the CDM's own era scripts use):
// per person and condition_concept_id (0 excluded), each occurrence spans
// condition_start_date to condition_end_date, or to the start + 1 day when it has no
// end; occurrences at most 30 days apart (PersistenceWindow) join one era, from the
// earliest start to the latest end, counting its occurrences. Ids are hashes of person,
// concept and era start.
func ConditionEras(src Source) ([]Row, error) {
	var iv []interval
	for r, err := range src.Rows("condition_occurrence") {
		if err != nil {
			return nil, err
		}
		const t = "condition_occurrence"
		concept, _, err := intCol(r, t, "condition_concept_id")
		if err != nil {
			return nil, err
		}
		if concept == 0 {
			continue
		}
		pid, _, err := longCol(r, t, "person_id")
		if err != nil {
			return nil, err
		}
		start, ok, err := dateCol(r, t, "condition_start_date")
		if err != nil || !ok {
			return nil, errors.Join(err, fmt.Errorf("%s row without condition_start_date", t))
		}
		end, ok, err := dateCol(r, t, "condition_end_date")
		if err != nil {
			return nil, err
		}
		if !ok {
			end = start + 1
		}
		iv = append(iv, interval{person: pid, concept: concept, start: start, end: end, count: 1})
	}
	slices.SortFunc(iv, byPersonConceptStart)
	var out []Row
	merge(iv, PersistenceWindow, func(run []interval, end day) {
		p, c, start := run[0].person, run[0].concept, run[0].start
		out = append(out, Row{
			"condition_era_id":           id(eraKey("condition_era", p, c, start)),
			"person_id":                  p,
			"condition_concept_id":       c,
			"condition_era_start_date":   start.time(),
			"condition_era_end_date":     end.time(),
			"condition_occurrence_count": int32(len(run)),
		})
	})
	return out, nil
}

func eraKey(table string, person int64, concept int32, start day) string {
	return table + "/" + strconv.FormatInt(person, 10) + "/" + strconv.Itoa(int(concept)) + "/" + start.time().Format("2006-01-02")
}

// ErrNoVocabulary is returned by DrugEras without ingredient data: drug eras are per
// ingredient, which only a vocabulary's CONCEPT_ANCESTOR knows.
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
// Without ingredients (nil) it returns ErrNoVocabulary.
func DrugEras(src Source, ing *Ingredients) ([]Row, error) {
	if ing == nil {
		return nil, ErrNoVocabulary
	}
	var iv []interval
	for r, err := range src.Rows("drug_exposure") {
		if err != nil {
			return nil, err
		}
		const t = "drug_exposure"
		concept, _, err := intCol(r, t, "drug_concept_id")
		if err != nil {
			return nil, err
		}
		ingredients := ing.Of(concept)
		if concept == 0 || len(ingredients) == 0 {
			continue
		}
		supply, hasSupply, err := longCol(r, t, "days_supply")
		if err != nil {
			return nil, err
		}
		if hasSupply && supply < 0 {
			continue // a data-quality problem the OHDSI script leaves out too
		}
		pid, _, err := longCol(r, t, "person_id")
		if err != nil {
			return nil, err
		}
		start, ok, err := dateCol(r, t, "drug_exposure_start_date")
		if err != nil || !ok {
			return nil, errors.Join(err, fmt.Errorf("%s row without drug_exposure_start_date", t))
		}
		end, ok, err := dateCol(r, t, "drug_exposure_end_date")
		if err != nil {
			return nil, err
		}
		switch {
		case ok:
		case hasSupply && supply != 0:
			end = start + day(supply)
		default:
			end = start + 1
		}
		for _, in := range ingredients {
			iv = append(iv, interval{person: pid, concept: in, start: start, end: end, count: 1})
		}
	}
	slices.SortFunc(iv, byPersonConceptStart)
	// Sub-exposures: overlapping or touching exposures, no gap bridged.
	var subs []interval
	merge(iv, 0, func(run []interval, end day) {
		subs = append(subs, interval{person: run[0].person, concept: run[0].concept, start: run[0].start, end: end,
			count: int32(len(run)), exposed: int32(end - run[0].start)})
	})
	var out []Row
	merge(subs, PersistenceWindow, func(run []interval, end day) {
		p, c, start := run[0].person, run[0].concept, run[0].start
		var count, exposed int32
		for _, s := range run {
			count += s.count
			exposed += s.exposed
		}
		out = append(out, Row{
			"drug_era_id":         id(eraKey("drug_era", p, c, start)),
			"person_id":           p,
			"drug_concept_id":     c,
			"drug_era_start_date": start.time(),
			"drug_era_end_date":   end.time(),
			"drug_exposure_count": count,
			"gap_days":            int32(end-start) - exposed,
		})
	})
	return out, nil
}
