package synth

import (
	"bytes"
	"fmt"
	"time"
)

// Pipeline stages that reject a deliberately bad line (DeadLetter.Stage), named as in the
// dead letter's fhirstream.errors.stage header.
const (
	StageFetch    = "fetch"
	StageValidate = "validate"
	StageOMOP     = "omop"
)

// DeadLetter is where and why the pipeline must dead-letter one deliberately bad line
// (Config.Bad): the stage and error class of its dead letter, and the line it came from.
// The fetcher and every stage keep the fhir.resource-type and fhir.source.line headers, so
// (File, Line) identifies any dead letter; Key identifies those that got a record key.
type DeadLetter struct {
	Stage string // StageFetch, StageValidate or StageOMOP
	Class string // the fhirstream.errors.class of the dead letter
	File  string // resource type of the file holding the line: FileName(File, gzip)
	Line  int64  // 1-based line number within that file
	// Key is the record key, "<Type>/<id>", or "" when the fetcher rejects the line
	// before it can key it (the dead letter then has no key).
	Key string
	// Path is the element the stage names in fhirstream.errors.path, "" when none.
	Path string
}

// ReachesUnique reports whether the line passes validate and dedupe: a line the OMOP
// stage rejects is valid FHIR, so it is on <prefix>.unique.<Type> and in the bronze lake.
func (d DeadLetter) ReachesUnique() bool { return d.Stage == StageOMOP }

// badKind is one class of deliberately bad line: how the pipeline rejects it and how to
// write it. write appends the line for id (a fresh id no good resource has) to b.
type badKind struct {
	stage, class string
	file         string // file it goes into
	keyType      string // type of the record key; "" when the fetcher cannot key it
	path         string
	write        func(b []byte, id string, lastUpdated string) []byte
}

// badKinds are used in this order, round robin, so that the first few bad lines of a run
// already cover all three rejecting stages. Each line is otherwise valid, so that exactly
// one rule (the one named) rejects it; the package tests check that against the real
// validator and OMOP mapper.
var badKinds = []badKind{
	{StageFetch, "invalid-json", TypeObservation, "", "", func(b []byte, id, _ string) []byte {
		// Cut off mid-string, as a truncated write or a broken export would leave it.
		return fmt.Appendf(b, `{"resourceType":"Observation","id":%q,"status":"final","code":{"text":"Heart rate`, id)
	}},
	{StageValidate, "bad-format", TypeCondition, TypeCondition, "Condition.onsetDateTime", func(b []byte, id, lu string) []byte {
		// February 30th: the right shape, not a real day.
		return fmt.Appendf(b, `{"resourceType":"Condition","id":%q,"meta":{"versionId":"1","lastUpdated":%q},`+
			`"code":{"coding":[{"system":"http://snomed.info/sct","code":"444814009","display":"Viral sinusitis (disorder)"}]},`+
			`"subject":{"reference":"Patient/%s-p"},"onsetDateTime":"2021-02-30T10:00:00Z"}`, id, lu, id)
	}},
	{StageOMOP, "missing-required", TypePatient, TypePatient, "Patient.birthDate", func(b []byte, id, lu string) []byte {
		// Valid FHIR (birthDate is optional), but OMOP's person.year_of_birth is required.
		return fmt.Appendf(b, `{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":%q},`+
			`"name":[{"use":"official","family":"Doe","given":["Jane"]}],"gender":"female"}`, id, lu)
	}},
	{StageFetch, "type-mismatch", TypeEncounter, "", "", func(b []byte, id, lu string) []byte {
		// A well-formed Patient in the Encounter file.
		return fmt.Appendf(b, `{"resourceType":"Patient","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"gender":"male","birthDate":"1970-01-01"}`, id, lu)
	}},
	{StageValidate, "bad-reference", TypeEncounter, TypeEncounter, "Encounter.subject.reference", func(b []byte, id, lu string) []byte {
		return fmt.Appendf(b, `{"resourceType":"Encounter","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"finished",`+
			`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},`+
			`"subject":{"reference":"Patient//%s"},"period":{"start":"2020-05-01T09:00:00Z","end":"2020-05-01T09:30:00Z"}}`, id, lu, id)
	}},
	{StageValidate, "bad-coding", TypeObservation, TypeObservation, "Observation.code.coding[0].system", func(b []byte, id, lu string) []byte {
		return fmt.Appendf(b, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"final",`+
			`"code":{"coding":[{"code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/%s-p"},`+
			`"effectiveDateTime":"2020-05-01T09:10:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`, id, lu, id)
	}},
	{StageFetch, "missing-id", TypeProcedure, "", "", func(b []byte, _, lu string) []byte {
		return fmt.Appendf(b, `{"resourceType":"Procedure","meta":{"versionId":"1","lastUpdated":%q},"status":"completed",`+
			`"code":{"coding":[{"system":"http://snomed.info/sct","code":"710824005"}]},"subject":{"reference":"Patient/unknown"},`+
			`"performedDateTime":"2020-05-01T09:10:00Z"}`, lu)
	}},
	{StageValidate, "missing-required", TypeObservation, TypeObservation, "Observation.status", func(b []byte, id, lu string) []byte {
		return fmt.Appendf(b, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s-p"},`+
			`"effectiveDateTime":"2020-05-01T09:10:00Z"}`, id, lu, id)
	}},
	{StageOMOP, "unmapped-reference", TypeCondition, TypeCondition, "Condition.subject.reference", func(b []byte, id, lu string) []byte {
		// A well-formed reference, but to a Group: an OMOP row needs a person.
		return fmt.Appendf(b, `{"resourceType":"Condition","id":%q,"meta":{"versionId":"1","lastUpdated":%q},`+
			`"code":{"coding":[{"system":"http://snomed.info/sct","code":"444814009"}]},`+
			`"subject":{"reference":"Group/%s-g"},"onsetDateTime":"2021-02-03T10:00:00Z","recordedDate":"2021-02-03T10:00:00Z"}`, id, lu, id)
	}},
	{StageValidate, "bad-code", TypeObservation, TypeObservation, "Observation.status", func(b []byte, id, lu string) []byte {
		return fmt.Appendf(b, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"done",`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s-p"},`+
			`"effectiveDateTime":"2020-05-01T09:10:00Z"}`, id, lu, id)
	}},
	{StageFetch, "bad-id", TypeObservation, "", "", func(b []byte, id, lu string) []byte {
		// Underscores are not allowed in FHIR ids.
		return fmt.Appendf(b, `{"resourceType":"Observation","id":"%s_x","meta":{"versionId":"1","lastUpdated":%q},"status":"final",`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`, id, lu)
	}},
}

// longLineKind is the over-long line, in the rotation only when Config.LongLineBytes > 0.
var longLineKind = badKind{stage: StageFetch, class: "line-too-long", file: TypeObservation}

// badKinds returns the rotation of bad-line classes for c.
func (c Config) badKinds() []badKind {
	if c.LongLineBytes > 0 {
		return append(badKinds[:len(badKinds):len(badKinds)], longLineKind)
	}
	return badKinds
}

// BadKinds is the number of distinct classes of bad line cfg rotates through: Config.Bad
// of at least this covers every one.
func BadKinds(cfg Config) int { return len(cfg.badKinds()) }

// badBefore is the patient index before which bad line i of n is mixed in: the lines are
// spread evenly over the export, the last ones never after the last patient.
func badBefore(i, n, patients int) int { return (i + 1) * patients / (n + 1) }

// badLine builds bad line i of the run into buf and says how it must be dead-lettered;
// the line number is filled in by the caller, which counts lines per file.
func (g *gen) badLine(i int) DeadLetter {
	k := &g.badKindList[i%len(g.badKindList)]
	// Ids no good resource has (those are UUIDs), unique per seed and line, and valid
	// FHIR ids, so every rejection is for the one intended reason.
	id := fmt.Sprintf("bad-%d-%d", g.cfg.Seed, i)
	lu := g.end.Add(-time.Duration(i+1) * time.Hour).Format(time.RFC3339)
	g.badBuf = g.badBuf[:0]
	if k.class == longLineKind.class {
		g.badBuf = longLine(g.badBuf, id, lu, g.cfg.LongLineBytes)
	} else {
		g.badBuf = k.write(g.badBuf, id, lu)
	}
	d := DeadLetter{Stage: k.stage, Class: k.class, File: k.file, Path: k.path}
	if k.keyType != "" {
		d.Key = k.keyType + "/" + id
	}
	return d
}

// longLine appends a valid Observation of exactly n bytes (or the shortest possible, if n
// is smaller), padded in a note: a line only a length limit rejects.
func longLine(b []byte, id, lu string, n int) []byte {
	start := len(b)
	b = fmt.Appendf(b, `{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":%q},"status":"final",`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"note":[{"text":"`, id, lu)
	const tail = `"}]}`
	if pad := n - (len(b) - start) - len(tail); pad > 0 {
		b = append(b, bytes.Repeat([]byte{'x'}, pad)...)
	}
	return append(b, tail...)
}
