package synth

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Resource types the generator writes, in the order their files are listed.
const (
	TypePatient            = "Patient"
	TypeEncounter          = "Encounter"
	TypeCondition          = "Condition"
	TypeObservation        = "Observation"
	TypeDiagnosticReport   = "DiagnosticReport"
	TypeMedicationRequest  = "MedicationRequest"
	TypeProcedure          = "Procedure"
	TypeImmunization       = "Immunization"
	TypeAllergyIntolerance = "AllergyIntolerance"
	TypePractitioner       = "Practitioner"
	TypeOrganization       = "Organization"
	TypeLocation           = "Location"
)

// ResourceTypes lists every type Generate can emit. Do not modify.
var ResourceTypes = []string{
	TypePatient, TypeEncounter, TypeCondition, TypeObservation, TypeDiagnosticReport,
	TypeMedicationRequest, TypeProcedure, TypeImmunization, TypeAllergyIntolerance,
	TypePractitioner, TypeOrganization, TypeLocation,
}

// PatientsPerGroup is how many patients share one Organization, one Location and
// PractitionersPerGroup Practitioners. A run of N patients has ceil(N/PatientsPerGroup)
// groups, so every pool has at least one member.
const (
	PatientsPerGroup      = 20
	PractitionersPerGroup = 3
)

// DefaultEnd is the export's point in time when Config.End is zero. It is fixed rather
// than time.Now so that output does not change from one day to the next.
var DefaultEnd = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// Config describes one synthetic export.
type Config struct {
	// Patients is the number of patients; 0 yields an empty export.
	Patients int
	// Seed selects the population. The same Seed and Patients give byte-identical output,
	// and the first k patients do not depend on Patients.
	Seed uint64
	// Gzip makes WriteDir write Type.ndjson.gz files; Generate ignores it.
	Gzip bool
	// End is the export's transactionTime: nothing happens, and nothing is updated, after
	// it except planned future encounters. Zero means DefaultEnd.
	End time.Time
	// Bad mixes this many deliberately bad lines into the export, for testing that the
	// pipeline dead-letters them: malformed JSON, a resource in the wrong type's file, a
	// missing or malformed id, an impossible dateTime, a malformed reference, a Coding
	// without system, a missing required element, a code outside its value set, and
	// resources valid in FHIR that OMOP cannot map. The classes are used round robin
	// (BadKinds says how many there are) and the lines are spread evenly between patients;
	// ExpectedDeadLetters says where each one is and how it must be rejected. Bad lines
	// have ids of their own and do not change the good resources, which stay
	// byte-identical to a run without them.
	Bad int
	// LongLineBytes, when positive, adds an over-long line of this many bytes to the
	// classes of Bad: a valid Observation that a fetcher whose line limit
	// (--max-line-bytes) is below LongLineBytes dead-letters as "line-too-long".
	LongLineBytes int
}

func (c Config) end() time.Time {
	if c.End.IsZero() {
		return DefaultEnd
	}
	return c.End
}

// EmitFunc receives one resource as an NDJSON line without its trailing newline. The
// slice is reused for the next resource: copy it to keep it beyond the call. An error
// stops Generate, which returns it.
type EmitFunc func(resourceType string, line []byte) error

// Generate streams cfg's export to emit, patient by patient. Each patient's Patient line
// comes first, then each encounter followed by what was recorded in it; the shared
// Organization, Location and Practitioners of a group come before its first patient, so
// every reference points backwards. It stops early, returning ctx.Err(), when ctx ends.
//
// With cfg.Bad, the bad lines go to emit like every other line, under the type of the file
// they belong in; ExpectedDeadLetters tells them apart.
func Generate(ctx context.Context, cfg Config, emit EmitFunc) error {
	return generateMixed(ctx, cfg, emit, nil)
}

// ExpectedDeadLetters runs cfg's export without writing it and returns its bad lines
// (cfg.Bad of them), in the order they appear, with the stage and class that must
// dead-letter each. WriteDir returns the same list in Counts.Bad.
func ExpectedDeadLetters(ctx context.Context, cfg Config) ([]DeadLetter, error) {
	var out []DeadLetter
	err := generateMixed(ctx, cfg, func(string, []byte) error { return nil }, func(d DeadLetter, _ []byte) error {
		out = append(out, d)
		return nil
	})
	return out, err
}

// badEmitFunc receives a bad line, its line number filled in. Nil sends bad lines to the
// EmitFunc like good ones.
type badEmitFunc func(d DeadLetter, line []byte) error

func generateMixed(ctx context.Context, cfg Config, emit EmitFunc, emitBad badEmitFunc) error {
	if cfg.Patients < 0 {
		return fmt.Errorf("synth: negative patient count %d", cfg.Patients)
	}
	if cfg.Bad < 0 || cfg.LongLineBytes < 0 {
		return fmt.Errorf("synth: negative bad line count %d or length %d", cfg.Bad, cfg.LongLineBytes)
	}
	zs, err := zones()
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	g := &gen{cfg: cfg, end: cfg.end(), emit: emit, zones: zs}
	g.r = rand.New(&g.src)
	if cfg.Bad > 0 {
		g.setupBad(emitBad)
	}
	for i := 0; i < cfg.Patients; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if g.mixBad(i); g.err != nil {
			return g.err
		}
		if i%PatientsPerGroup == 0 {
			g.pool(i / PatientsPerGroup)
		}
		g.patient(i)
		if g.err != nil {
			return g.err
		}
	}
	g.mixBad(cfg.Patients)
	return g.err
}

// setupBad counts lines per file, which bad lines need for their line numbers, by
// wrapping emit; runs without bad lines do not pay for it.
func (g *gen) setupBad(emitBad badEmitFunc) {
	g.badKindList = g.cfg.badKinds()
	g.lines = map[string]int64{}
	good := g.emit
	g.emit = func(resourceType string, line []byte) error {
		g.lines[resourceType]++
		return good(resourceType, line)
	}
	g.emitBad = emitBad
	if g.emitBad == nil {
		g.emitBad = func(d DeadLetter, line []byte) error { return good(d.File, line) }
	}
}

// mixBad writes the bad lines due before patient index i.
func (g *gen) mixBad(i int) {
	for g.err == nil && g.nextBad < g.cfg.Bad && badBefore(g.nextBad, g.cfg.Bad, g.cfg.Patients) <= i {
		d := g.badLine(g.nextBad)
		g.lines[d.File]++
		d.Line = g.lines[d.File]
		g.err = g.emitBad(d, g.badBuf)
		g.nextBad++
	}
}

// gen is the state of one Generate call. Everything in it is either per run (config,
// buffers), per group (the current pool) or per patient (reset for each), so its size does
// not depend on the number of patients.
type gen struct {
	cfg   Config
	end   time.Time
	emit  EmitFunc
	err   error // first emit error; later writes are skipped
	e     enc
	src   rand.PCG
	r     *rand.Rand
	zones []*time.Location

	grp      group
	p        patient
	v        visit
	slots    []int64   // encounter start times (Unix seconds) of the current patient
	slotsEnd time.Time // no slot is later
	final    time.Time // start of a deceased patient's last stay
	labIDs   []uuid

	// Bad lines (Config.Bad): the classes in rotation, the next one to write, lines
	// written per file so far, and where bad lines go.
	badKindList []badKind
	nextBad     int
	lines       map[string]int64
	emitBad     badEmitFunc
	badBuf      []byte
}

// write hands the finished resource in g.e to emit.
func (g *gen) write(resourceType string) {
	if g.err == nil {
		g.err = g.emit(resourceType, g.e.b)
	}
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }
func (g *gen) intn(n int) int        { return g.r.IntN(n) }
func (g *gen) uniform(lo, hi float64) float64 {
	return lo + (hi-lo)*g.r.Float64()
}

// normal draws from N(mean, sd) clamped to [lo, hi]: physiological values have hard limits.
func (g *gen) normal(mean, sd, lo, hi float64) float64 {
	return math.Max(lo, math.Min(hi, mean+sd*g.r.NormFloat64()))
}

// days returns a duration of between lo and hi days, to the second.
func (g *gen) days(lo, hi float64) time.Duration {
	return time.Duration(g.uniform(lo, hi)*86400) * time.Second
}

func pick[T any](g *gen, s []T) *T { return &s[g.r.IntN(len(s))] }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// year is the mean Gregorian year.
const year = 31556952 * time.Second

func yearsBetween(a, b time.Time) float64 { return float64(b.Sub(a)) / float64(year) }

func addYears(t time.Time, y float64) time.Time {
	return t.Add(time.Duration(y*float64(year)) / time.Second * time.Second)
}
