package gold

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fhirstream/fhirstream/schemas"
)

// ClinicalTables are the tables of the mapping stage that a refresh passes through link
// resolution and takes its events from, in the order it reads them: every table the
// stage writes except observation_period, which the refresh derives.
var ClinicalTables = func() []string {
	var out []string
	for _, t := range schemas.OMOPTables() {
		if t != "observation_period" {
			out = append(out, t)
		}
	}
	return out
}()

// DerivedTables are the tables a refresh computes.
var DerivedTables = []string{"observation_period", "condition_era", "drug_era", "cdm_source"}

// event is one occurrence or exposure of a concept for a person as the era logic keeps
// it: 16 bytes, the person held as its index in the builder's numbering of persons.
type event struct {
	person     int32
	concept    int32
	start, end day
}

// span is the dates a person's events cover; first > last while none is seen.
type span struct{ first, last day }

var noSpan = span{first: math.MaxInt32, last: math.MinInt32}

// Builder derives the gold tables from clinical rows handed to Add one at a time (in any
// order, tables interleaved or not): it resolves each row's links (Links.Resolve) and
// keeps, of the rows that remain, only what the derived tables need: a span of dates per
// person (observation_period) and 16 bytes per condition occurrence and per drug exposure
// and ingredient (the eras). The clinical rows themselves flow through to the caller, so
// a refresh keeps that much whatever the size of the CDM. Finish computes the tables.
type Builder struct {
	links     *Links // nil: rows are taken as they are (the era functions of one table)
	opts      Options
	vocab     vocabularyInfo
	counts    LinkCounts
	personIDs []int64         // person index → person_id
	personIdx map[int64]int32 // person_id → index
	spans     []span          // by person index
	persons   int             // person rows seen
	conds     []event
	drugs     []event
}

// NewBuilder returns a Builder resolving links with links (nil: rows are not resolved)
// and reading o.Vocabulary, when set, for drug_era's ingredients and cdm_source's
// vocabulary_version. A vocabulary that cannot be read makes the tables that need it
// not built (Result.NotBuilt), not an error.
func NewBuilder(links *Links, o Options) *Builder {
	b := &Builder{links: links, opts: o, personIdx: map[int64]int32{}}
	b.vocab = readVocabulary(o.Vocabulary)
	return b
}

// person returns the index of person_id id, numbering it when new.
func (b *Builder) person(id int64) int32 {
	if i, ok := b.personIdx[id]; ok {
		return i
	}
	if len(b.personIDs) == math.MaxInt32 {
		panic("gold: more than 2^31 persons") // unreachable: ids would exhaust memory first
	}
	i := int32(len(b.personIDs))
	b.personIDs = append(b.personIDs, id)
	b.personIdx[id] = i
	b.spans = append(b.spans, noSpan)
	return i
}

// Add takes row r of table: it returns the row as the gold CDM holds it (links
// resolved; a copy when anything changed) and whether it stays (false: its person does
// not exist, or it only dated a device), and records what the derived tables need. An
// error means a malformed row (a column of the wrong type, an event without its start).
func (b *Builder) Add(table string, r Row) (Row, bool, error) {
	if b.links != nil {
		var keep bool
		if r, keep = b.links.Resolve(table, r, &b.counts); !keep {
			return nil, false, nil
		}
	}
	if table == "person" {
		pid, ok, err := longCol(r, table, "person_id")
		if err != nil || !ok {
			return nil, false, errors.Join(err, errors.New("person row without person_id"))
		}
		b.person(pid)
		b.persons++
		return r, true, nil
	}
	if err := b.addSpan(table, r); err != nil {
		return nil, false, err
	}
	var err error
	switch table {
	case "condition_occurrence":
		err = b.addCondition(r)
	case "drug_exposure":
		err = b.addDrug(r)
	}
	return r, err == nil, err
}

// addSpan widens the person's observed span by an event of table (eventSpans).
func (b *Builder) addSpan(table string, r Row) error {
	i := slices.IndexFunc(eventSpans, func(e eventSpan) bool { return e.table == table })
	if i < 0 {
		return nil
	}
	e := eventSpans[i]
	pid, ok, err := longCol(r, table, "person_id")
	if err != nil || !ok {
		return err
	}
	if b.links == nil {
		if _, known := b.personIdx[pid]; !known {
			return nil // the person table decides who is observed
		}
	}
	d0, ok, err := dateCol(r, table, e.start)
	if err != nil || !ok {
		return err
	}
	d1 := d0
	if e.end != "" {
		end, ok, err := dateCol(r, table, e.end)
		if err != nil {
			return err
		}
		if ok {
			d1 = end
		}
	}
	p := b.person(pid)
	s := &b.spans[p]
	s.first, s.last = min(s.first, d0, d1), max(s.last, d0, d1)
	return nil
}

// addCondition keeps a condition occurrence for condition_era (ConditionEras).
func (b *Builder) addCondition(r Row) error {
	const t = "condition_occurrence"
	concept, _, err := intCol(r, t, "condition_concept_id")
	if err != nil || concept == 0 {
		return err
	}
	pid, _, err := longCol(r, t, "person_id")
	if err != nil {
		return err
	}
	start, ok, err := dateCol(r, t, "condition_start_date")
	if err != nil || !ok {
		return errors.Join(err, fmt.Errorf("%s row without condition_start_date", t))
	}
	end, ok, err := dateCol(r, t, "condition_end_date")
	if err != nil {
		return err
	}
	if !ok {
		end = start + 1
	}
	b.conds = append(b.conds, event{person: b.person(pid), concept: concept, start: start, end: end})
	return nil
}

// addDrug keeps a drug exposure, once per ingredient, for drug_era (DrugEras).
func (b *Builder) addDrug(r Row) error {
	ing := b.vocab.ingredients
	if ing == nil {
		return nil
	}
	const t = "drug_exposure"
	concept, _, err := intCol(r, t, "drug_concept_id")
	if err != nil {
		return err
	}
	ingredients := ing.Of(concept)
	if concept == 0 || len(ingredients) == 0 {
		return nil
	}
	supply, hasSupply, err := longCol(r, t, "days_supply")
	if err != nil {
		return err
	}
	if hasSupply && supply < 0 {
		return nil // a data-quality problem the OHDSI script leaves out too
	}
	pid, _, err := longCol(r, t, "person_id")
	if err != nil {
		return err
	}
	start, ok, err := dateCol(r, t, "drug_exposure_start_date")
	if err != nil || !ok {
		return errors.Join(err, fmt.Errorf("%s row without drug_exposure_start_date", t))
	}
	end, ok, err := dateCol(r, t, "drug_exposure_end_date")
	if err != nil {
		return err
	}
	switch {
	case ok:
	case hasSupply && supply != 0:
		end = start + day(supply)
	default:
		end = start + 1
	}
	p := b.person(pid)
	for _, in := range ingredients {
		b.drugs = append(b.drugs, event{person: p, concept: in, start: start, end: end})
	}
	return nil
}

// Counts is what link resolution did to the rows added so far.
func (b *Builder) Counts() LinkCounts { return b.counts }

// Finish computes observation_period, condition_era, drug_era and cdm_source from the
// rows added. The builder is spent afterwards.
func (b *Builder) Finish() (*Result, error) {
	r := &Result{Links: b.counts, Resolver: b.links, NotBuilt: map[string]error{}}
	for p, s := range b.spans {
		if s.first <= s.last {
			r.periods = append(r.periods, period{person: b.personIDs[p], start: s.first, end: s.last})
		}
	}
	slices.SortFunc(r.periods, func(x, y period) int { return cmpInt64(x.person, y.person) })
	r.PersonsWithoutEvents = b.persons - len(r.periods)
	if r.PersonsWithoutEvents < 0 {
		r.PersonsWithoutEvents = 0 // events of persons the person table lacks (no links)
	}
	b.spans = nil

	r.conditionEras = b.eras(b.conds, false)
	b.conds = nil
	if b.vocab.ingredients == nil {
		r.NotBuilt["drug_era"] = b.vocab.noIngredients
	} else {
		r.drugEras = b.eras(b.drugs, true)
	}
	b.drugs = nil

	info := b.opts.Source
	info.VocabularyVersion = b.vocab.version
	if b.vocab.noVersion != nil {
		r.NotBuilt["cdm_source"] = b.vocab.noVersion
	} else if row, err := CDMSource(info); err != nil {
		r.NotBuilt["cdm_source"] = err
	} else {
		r.cdmSource = row
	}
	return r, nil
}

// eras merges events into eras by OHDSI's logic (see ConditionEras and DrugEras): drug
// exposures first into sub-exposures (overlapping or touching ones), then occurrences or
// sub-exposures at most PersistenceWindow days apart into one era.
func (b *Builder) eras(ev []event, drugs bool) []era {
	slices.SortFunc(ev, func(x, y event) int {
		if x.person != y.person {
			return cmpInt64(b.personIDs[x.person], b.personIDs[y.person])
		}
		if x.concept != y.concept {
			return int(x.concept) - int(y.concept)
		}
		return int(x.start) - int(y.start)
	})
	var out []era
	if !drugs {
		merge(ev, PersistenceWindow, func(run []event, end day) {
			out = append(out, era{person: b.personIDs[run[0].person], concept: run[0].concept, start: run[0].start, end: end, count: int32(len(run))})
		})
		return out
	}
	// Sub-exposures: overlapping or touching exposures, no gap bridged; each keeps the
	// exposures it merges and its days exposed.
	type sub struct {
		event
		count, exposed int32
	}
	var subs []sub
	merge(ev, 0, func(run []event, end day) {
		e := run[0]
		e.end = end
		subs = append(subs, sub{event: e, count: int32(len(run)), exposed: int32(end - e.start)})
	})
	for i := 0; i < len(subs); {
		j, end := i+1, subs[i].end
		var count, exposed int32 = subs[i].count, subs[i].exposed
		for j < len(subs) && subs[j].person == subs[i].person && subs[j].concept == subs[i].concept && subs[j].start <= end+PersistenceWindow {
			end = max(end, subs[j].end)
			count += subs[j].count
			exposed += subs[j].exposed
			j++
		}
		s := subs[i]
		out = append(out, era{person: b.personIDs[s.person], concept: s.concept, start: s.start, end: end, count: count,
			gap: int32(end-s.start) - exposed})
		i = j
	}
	return out
}

// merge groups events sorted by person, concept and start into runs of one person and
// concept where each event starts at most gap days after the latest end so far (an
// event starting exactly gap days after it joins the run), and calls run with each.
// This is what OHDSI's era SQL computes with its sweep over start and padded end events
// (ETL-CMS create_CDMv5_condition_era.sql and ..._drug_era_non_stockpile.sql): a run
// ends where every interval so far, its end padded by gap, has closed.
func merge(ev []event, gap day, run func([]event, day)) {
	for i := 0; i < len(ev); {
		j, end := i+1, ev[i].end
		for j < len(ev) && ev[j].person == ev[i].person && ev[j].concept == ev[i].concept && ev[j].start <= end+gap {
			end = max(end, ev[j].end)
			j++
		}
		run(ev[i:j], end)
		i = j
	}
}
