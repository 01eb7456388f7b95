package schemas

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

var (
	// A location east of UTC with a late-evening time: a date taken from the instant in
	// UTC would be a day early, and one before 1970 truncated by division a day late.
	plus5 = time.FixedZone("UTC+5", 5*3600)
	// fullDate has a time of day that must be dropped; its calendar day is 1950-03-04.
	fullDate = time.Date(1950, 3, 4, 2, 30, 0, 0, plus5)
	// fullTime is before the epoch, has microseconds, and is not in UTC.
	fullTime = time.Date(1969, 12, 31, 23, 59, 59, 123456000, plus5)
)

// fullRow sets every column of t to a non-null value of its Go type, with values that
// exercise the edges: ids beyond 32 bits, strings at their exact length in multi-byte
// characters, dates before 1970 in a non-UTC location.
func fullRow(t *Table) map[string]any {
	row := make(map[string]any, len(t.Columns))
	for i, c := range t.Columns {
		switch c.Type {
		case TypeInt:
			row[c.Name] = int32(1_000_000 + i)
		case TypeLong:
			row[c.Name] = int64(1)<<62 + int64(i)
		case TypeDouble:
			row[c.Name] = -12.25 + float64(i)
		case TypeString:
			n := c.MaxLength
			if n == 0 {
				n = 5000
			}
			row[c.Name] = strings.Repeat("é", n) // 2 bytes a character
		case TypeBoolean:
			row[c.Name] = true
		case TypeDate:
			row[c.Name] = fullDate
		case TypeTimestamp, TypeLocalTimestamp:
			row[c.Name] = fullTime
		}
	}
	row[ColFHIRKey] = "Observation/abc-123"
	return row
}

// minimalRow sets only the required columns without a default.
func minimalRow(t *Table) map[string]any {
	row := make(map[string]any)
	for k, v := range fullRow(t) {
		if c, _ := t.Column(k); c.Required && !c.HasDefault {
			row[k] = v
		}
	}
	return row
}

// wantDecoded is what decoding an encoded row must give: every column present, nulls and
// defaults filled in, dates as UTC midnight of their calendar day, timestamps in UTC.
func wantDecoded(t *Table, row map[string]any) map[string]any {
	want := make(map[string]any, len(t.Columns))
	for _, c := range t.Columns {
		v := row[c.Name]
		switch {
		case v == nil && c.Required:
			v = c.def
		case v == nil:
		case c.Type == TypeDate:
			y, m, d := v.(time.Time).Date()
			v = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		case c.Type == TypeTimestamp:
			v = v.(time.Time).UTC()
		case c.Type == TypeLocalTimestamp:
			v = wallClockUTC(v.(time.Time))
		}
		want[c.Name] = v
	}
	return want
}

// wallClockUTC is t's clock reading in its own location, as the same reading in UTC:
// what a local timestamp stores and decodes to.
func wallClockUTC(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond()/1e3*1e3, time.UTC)
}

func assertRow(t *testing.T, table string, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: decoded %d columns, want %d", table, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s.%s missing from decoded row", table, name)
			continue
		}
		if wt, isTime := w.(time.Time); isTime {
			gt, ok := g.(time.Time)
			if !ok || !gt.Equal(wt) || gt.Location() != time.UTC {
				t.Errorf("%s.%s = %#v, want %v in UTC", table, name, g, wt)
			}
			continue
		}
		if g != w { // all other values are comparable scalars of the exact Go type
			t.Errorf("%s.%s = %#v (%T), want %#v (%T)", table, name, g, g, w, w)
		}
	}
}

func mustCodecs(t testing.TB) *Codec {
	t.Helper()
	c, err := NewCodecs()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCRC64AvroReference(t *testing.T) {
	// Test cases 004 and 019 of apache/avro share/test/data/schema-tests.txt.
	for canonical, want := range map[string]int64{
		`"int"`: 8247732601305521295,
		`{"name":"foo","type":"record","fields":[]}`: -4824392279771201922,
	} {
		if got := crc64Avro([]byte(canonical)); int64(got) != want {
			t.Errorf("crc64Avro(%s) = %d, want %d", canonical, int64(got), want)
		}
	}
}

// Our canonical form must be goavro's except where goavro departs from the specification
// for logical types; anything else would mean our builder misses part of a schema.
func TestCanonicalFormMatchesGoavroBesidesLogicalTypes(t *testing.T) {
	fix := strings.NewReplacer(`{"type":"int"}`, `"int"`, `{"type":"long"}`, `"long"`)
	for _, name := range OMOPTables() {
		tab, _ := OMOPTable(name)
		ac, err := goavro.NewCodec(tab.Schema)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := canonicalForm(tab), fix.Replace(ac.CanonicalSchema()); got != want {
			t.Errorf("%s:\n got  %s\n want %s", name, got, want)
		}
	}
}

func TestSingleObjectRoundTripEveryTable(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	for _, name := range OMOPTables() {
		tab, _ := OMOPTable(name)
		for kind, row := range map[string]map[string]any{"full": fullRow(tab), "minimal": minimalRow(tab)} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				b, err := c.Encode(ctx, name, row)
				if err != nil {
					t.Fatal(err)
				}
				fp := crc64Avro([]byte(canonicalForm(tab)))
				if b[0] != 0xC3 || b[1] != 0x01 || binary.LittleEndian.Uint64(b[2:10]) != fp {
					t.Fatalf("header % x, want c3 01 + little-endian %#016x", b[:10], fp)
				}
				if got, _ := c.Fingerprint(name); got != fp {
					t.Errorf("Fingerprint = %#x, want %#x", got, fp)
				}
				gotTable, got, err := c.Decode(ctx, b)
				if err != nil {
					t.Fatal(err)
				}
				if gotTable != name {
					t.Errorf("decoded table %q", gotTable)
				}
				assertRow(t, name, got, wantDecoded(tab, row))

				// AppendEncode writes the same bytes after what is already there.
				prefix := []byte("prefix")
				app, err := c.AppendEncode(ctx, prefix, name, row)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(app[:len(prefix)], prefix) || !bytes.Equal(app[len(prefix):], b) {
					t.Error("AppendEncode differs from Encode")
				}
			})
		}
	}
}

func newRegistry(t testing.TB) (*srfake.Registry, SchemaRegistry) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, srRegistry{cl}
}

// srRegistry is a SchemaRegistry over franz-go's client for these tests: the product's
// (schemas/srclient) imports this package, so a test here cannot import it.
type srRegistry struct{ cl *sr.Client }

func (r srRegistry) Register(ctx context.Context, subject, schema string) (int, error) {
	return r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema}, -1, -1)
}

func (r srRegistry) Lookup(ctx context.Context, id int) (RegisteredSchema, bool, error) {
	s, err := r.cl.SchemaByID(ctx, id)
	var re *sr.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return RegisteredSchema{}, false, nil
	}
	if err != nil {
		return RegisteredSchema{}, false, err
	}
	typ := ""
	if s.Type != sr.TypeAvro {
		typ = s.Type.String()
	}
	return RegisteredSchema{Schema: s.Schema, Type: typ}, true, nil
}

func TestConfluentRoundTripEveryTable(t *testing.T) {
	ctx := context.Background()
	reg, cl := newRegistry(t)
	var posts, idLookups atomic.Int32
	reg.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodPost:
			posts.Add(1)
		case strings.HasPrefix(r.URL.Path, "/schemas/ids/"):
			idLookups.Add(1)
		}
		return false
	})
	c := mustCodecs(t)
	enc := NewRegistryCodec(c, cl, Topics{})
	var encoded []struct {
		table string
		value []byte
		want  map[string]any
	}
	for _, name := range OMOPTables() {
		tab, _ := OMOPTable(name)
		for _, row := range []map[string]any{fullRow(tab), minimalRow(tab), fullRow(tab)} {
			b, err := enc.Encode(ctx, name, row)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			id, err := enc.SchemaID(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != id {
				t.Fatalf("%s: header % x, want 00 + big-endian id %d", name, b[:5], id)
			}
			encoded = append(encoded, struct {
				table string
				value []byte
				want  map[string]any
			}{name, b, wantDecoded(tab, row)})
		}
		subject := "omop." + name + "-value"
		if enc.Subject(name) != subject {
			t.Errorf("Subject(%s) = %q, want %q", name, enc.Subject(name), subject)
		}
		ss, ok := reg.GetSchema(subject, 1)
		if !ok || ss.Schema.Schema != tab.Schema {
			t.Errorf("subject %s does not hold the %s schema (found=%v)", subject, name, ok)
		}
	}
	// One registration per table however many rows: ids are cached.
	if n := int(posts.Load()); n != len(OMOPTables()) {
		t.Errorf("%d POSTs to the registry for %d tables", n, len(OMOPTables()))
	}

	// A fresh codec knows no ids: decoding must look them up in the registry.
	dec := NewRegistryCodec(mustCodecs(t), cl, Topics{})
	for _, e := range encoded {
		table, got, err := dec.Decode(ctx, e.value)
		if err != nil {
			t.Fatalf("%s: %v", e.table, err)
		}
		if table != e.table {
			t.Errorf("decoded table %q, want %q", table, e.table)
		}
		assertRow(t, e.table, got, e.want)
	}
	if n := int(idLookups.Load()); n != len(OMOPTables()) {
		t.Errorf("%d id lookups in the registry to decode %d values of %d tables", n, len(encoded), len(OMOPTables()))
	}

	// The registry codec reads single-object values too; the plain codec refuses
	// Confluent ones with a reason.
	tab, _ := OMOPTable("person")
	single, _ := c.Encode(ctx, "person", fullRow(tab))
	if table, _, err := dec.Decode(ctx, single); err != nil || table != "person" {
		t.Errorf("RegistryCodec.Decode(single-object) = %q, %v", table, err)
	}
	if _, _, err := c.Decode(ctx, encoded[0].value); !errors.Is(err, ErrNoRegistry) {
		t.Errorf("Codec.Decode(Confluent) error = %v, want ErrNoRegistry", err)
	}
}

func TestConfluentPrefixedSubjectAndRegistryDown(t *testing.T) {
	ctx := context.Background()
	reg, cl := newRegistry(t)
	enc := NewRegistryCodec(mustCodecs(t), cl, Topics{Prefix: "test"})
	tab, _ := OMOPTable("death")
	if _, err := enc.Encode(ctx, "death", minimalRow(tab)); err != nil {
		t.Fatal(err)
	}
	if !reg.SubjectExists("test.omop.death-value") {
		t.Error("subject test.omop.death-value not registered")
	}

	reg.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, `{"error_code":50001,"message":"down"}`, http.StatusInternalServerError)
		return true
	})
	_, err := enc.Encode(ctx, "person", minimalRow(tab))
	if err == nil || errors.Is(err, ErrInvalidRow) || errors.Is(err, ErrUnknownSchema) {
		t.Errorf("Encode with registry down: %v; want an infrastructure error, not a data error", err)
	}
	_, _, err = enc.Decode(ctx, []byte{0, 0, 0, 0, 99, 0})
	if err == nil || errors.Is(err, ErrUnknownSchema) || errors.Is(err, ErrMalformed) {
		t.Errorf("Decode with registry down: %v; want an infrastructure error, not a data error", err)
	}
}

// A schema registered by an older or newer release for the same table is read with the
// writer's own schema, so a consumer upgraded before or after the producer keeps going.
func TestConfluentDecodesOtherSchemaVersions(t *testing.T) {
	ctx := context.Background()
	reg, cl := newRegistry(t)
	older := `{"type":"record","name":"person","namespace":"io.fhirstream.omop.v54","fields":[
		{"name":"person_id","type":"long"},
		{"name":"year_of_birth","type":"int"},
		{"name":"birth_datetime","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null}]}`
	reg.SeedSchema("omop.person-value", 1, 41, sr.Schema{Schema: older})
	foreign := `{"type":"record","name":"person","namespace":"com.example","fields":[{"name":"x","type":"int"}]}`
	reg.SeedSchema("other-value", 1, 42, sr.Schema{Schema: foreign})

	ac, err := goavro.NewCodec(older)
	if err != nil {
		t.Fatal(err)
	}
	body, err := ac.BinaryFromNative(nil, map[string]any{
		"person_id": int64(7), "year_of_birth": int32(1980),
		"birth_datetime": goavro.Union("long.timestamp-micros", fullTime),
	})
	if err != nil {
		t.Fatal(err)
	}
	dec := NewRegistryCodec(mustCodecs(t), cl, Topics{})
	table, row, err := dec.Decode(ctx, append([]byte{0, 0, 0, 0, 41}, body...))
	if err != nil {
		t.Fatal(err)
	}
	if table != "person" {
		t.Errorf("table %q", table)
	}
	assertRow(t, "person", row, map[string]any{"person_id": int64(7), "year_of_birth": int32(1980), "birth_datetime": fullTime.UTC()})

	if _, _, err := dec.Decode(ctx, []byte{0, 0, 0, 0, 42, 2}); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("foreign namespace: error = %v, want ErrUnknownSchema", err)
	}
	if _, _, err := dec.Decode(ctx, []byte{0, 0, 0, 1, 0, 2}); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("id not in registry: error = %v, want ErrUnknownSchema", err)
	}
}

// Values written by goavro's own single-object encoder (and the Python avro library),
// which fingerprint logical types differently, are still read.
func TestSingleObjectAcceptsGoavroFingerprint(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	tab, _ := OMOPTable("death")
	ac, err := goavro.NewCodec(tab.Schema)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := c.Fingerprint("death")
	if ac.Rabin == ours {
		t.Fatal("goavro's fingerprint equals ours; linkedin/goavro#174 is fixed, drop the alias")
	}
	v, err := ac.SingleFromNative(nil, map[string]any{
		"person_id": int64(1), "death_date": fullDate, "_fhir_key": "Patient/1",
		"_fhir_component": int32(0), "_fhir_deleted": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	table, row, err := c.Decode(ctx, v)
	if err != nil || table != "death" || row["person_id"] != int64(1) {
		t.Errorf("Decode(goavro single-object) = %q, %v, %v", table, row, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	_, cl := newRegistry(t)
	rc := NewRegistryCodec(c, cl, Topics{})
	tab, _ := OMOPTable("measurement")
	good, err := c.Encode(ctx, "measurement", fullRow(tab))
	if err != nil {
		t.Fatal(err)
	}
	unknownFP := bytes.Clone(good)
	unknownFP[5] ^= 0xff
	for _, tc := range []struct {
		name  string
		value []byte
		want  error
		text  string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"unknown magic", []byte{0x42, 1, 2}, ErrMalformed, "first byte 0x42"},
		{"bad single-object version", append([]byte{0xC3, 0x02}, good[2:]...), ErrMalformed, "single-object header"},
		{"short single-object header", good[:7], ErrMalformed, "single-object header"},
		{"unknown fingerprint", unknownFP, ErrUnknownSchema, "fingerprint"},
		{"trailing bytes", append(bytes.Clone(good), 0), ErrMalformed, "1 trailing bytes"},
		{"short Confluent header", []byte{0, 0, 1}, ErrMalformed, "Confluent header"},
	} {
		for _, d := range []Decoder{c, rc} {
			_, _, err := d.Decode(ctx, tc.value)
			if tc.name == "short Confluent header" && d == Decoder(c) {
				continue // the plain codec stops at "needs a registry"
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("%s (%T): error = %v, want %v mentioning %q", tc.name, d, err, tc.want, tc.text)
			}
		}
	}
	// Every truncation of the body is detected, never decoded into a short row.
	for n := singleObjectHeader; n < len(good); n++ {
		if _, _, err := c.Decode(ctx, good[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: error = %v, want ErrMalformed", n, len(good), err)
		}
	}
}

func TestEncodeRejectsBadRows(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	person, _ := OMOPTable("person")
	with := func(k string, v any) map[string]any {
		r := minimalRow(person)
		r[k] = v
		return r
	}
	without := func(k string) map[string]any {
		r := minimalRow(person)
		delete(r, k)
		return r
	}
	for _, tc := range []struct {
		name string
		row  map[string]any
		text string
	}{
		{"unknown column", with("person_sourcevalue", "x"), `no column "person_sourcevalue"`},
		{"missing required", without("year_of_birth"), "required column year_of_birth"},
		{"nil required", with("person_id", nil), "required column person_id"},
		{"nil envelope key", with(ColFHIRKey, nil), "required column _fhir_key"},
		{"string for int", with("year_of_birth", "1980"), "int column given string"},
		{"int beyond 32 bits", with("gender_concept_id", int64(1)<<31), "does not fit in a 32-bit int"},
		{"uint64 beyond 63 bits", with("person_id", uint64(1)<<63), "does not fit in a 64-bit signed long"},
		{"float for long", with("person_id", 1.0), "long column given float64"},
		{"too long", with("person_source_value", strings.Repeat("é", 51)), "51 characters, more than its varchar(50)"},
		{"zero timestamp", with("birth_datetime", time.Time{}), "zero time.Time"},
		{"int for timestamp", with("birth_datetime", int64(5)), "timestamp-micros column given int64"},
		{"string for bool", with(ColFHIRDeleted, "true"), "boolean column given string"},
	} {
		_, err := c.Encode(ctx, "person", tc.row)
		if !errors.Is(err, ErrInvalidRow) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: error = %v, want ErrInvalidRow mentioning %q", tc.name, err, tc.text)
		}
		dst := []byte("keep")
		if out, err := c.AppendEncode(ctx, dst, "person", tc.row); err == nil || string(out) != "keep" {
			t.Errorf("%s: AppendEncode returned %q, %v; want dst unchanged and an error", tc.name, out, err)
		}
	}
	if _, err := c.Encode(ctx, "persons", minimalRow(person)); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("unknown table: error = %v, want ErrUnknownTable", err)
	}
	_, cl := newRegistry(t)
	if _, err := NewRegistryCodec(c, cl, Topics{}).Encode(ctx, "persons", minimalRow(person)); !errors.Is(err, ErrUnknownTable) {
		t.Errorf("unknown table via registry: error = %v, want ErrUnknownTable", err)
	}
	// A row of the wrong table fails on the first column the tables do not share.
	if _, err := c.Encode(ctx, "death", minimalRow(person)); !errors.Is(err, ErrInvalidRow) {
		t.Errorf("person row as death: error = %v, want ErrInvalidRow", err)
	}
}

func TestPlainGoValuesAreConverted(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	row := map[string]any{
		"measurement_id": 12, "person_id": uint32(34), "measurement_concept_id": int64(3004249),
		"measurement_date":            time.Date(2024, 2, 29, 23, 30, 0, 0, time.FixedZone("PST", -8*3600)),
		"measurement_type_concept_id": uint16(32817), "value_as_number": float32(1.5),
		"range_low": 3, "_fhir_key": "Observation/1", "_fhir_component": 2, "_fhir_deleted": true,
	}
	b, err := c.Encode(ctx, "measurement", row)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"measurement_id": int64(12), "person_id": int64(34), "measurement_concept_id": int32(3004249),
		"measurement_date":            time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), // the calendar day where it was taken
		"measurement_type_concept_id": int32(32817), "value_as_number": 1.5, "range_low": 3.0,
		"_fhir_component": int32(2), "_fhir_deleted": true, "unit_concept_id": nil,
	} {
		if g := got[k]; g != want {
			t.Errorf("%s = %#v, want %#v", k, g, want)
		}
	}
}

func TestEpochDays(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int32
	}{
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(1970, 1, 1, 23, 59, 0, 0, plus5), 0},
		{time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC), -1},
		{time.Date(1900, 1, 1, 6, 0, 0, 0, time.UTC), -25567},
		{time.Date(2000, 3, 1, 0, 30, 0, 0, plus5), 11017},
	} {
		if got := EpochDays(tc.t); got != tc.want {
			t.Errorf("EpochDays(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

func TestTruncateStrings(t *testing.T) {
	person, _ := OMOPTable("person")
	row := minimalRow(person)
	row["person_source_value"] = strings.Repeat("é", 60)
	row["gender_source_value"] = "F"
	cut := person.TruncateStrings(row)
	if len(cut) != 1 || cut[0] != "person_source_value" {
		t.Fatalf("TruncateStrings cut %v", cut)
	}
	if row["person_source_value"] != strings.Repeat("é", 50) {
		t.Errorf("truncated to %q", row["person_source_value"])
	}
	if _, err := mustCodecs(t).Encode(context.Background(), "person", row); err != nil {
		t.Errorf("truncated row does not encode: %v", err)
	}
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"}, {"abcdef", 3, "abc"}, {"日本語テキスト", 3, "日本語"}, {"aé", 1, "a"}, {"", 0, ""},
	} {
		if got := TruncateString(tc.s, tc.n); got != tc.want {
			t.Errorf("TruncateString(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// The pooled buffers must not leak values between concurrent encodes.
func TestConcurrentEncodeDecode(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	tab, _ := OMOPTable("observation")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				row := minimalRow(tab)
				key := fmt.Sprintf("Observation/%d-%d", g, i)
				row[ColFHIRKey] = key
				if i%2 == 0 {
					row["value_as_string"] = key
				}
				b, err := c.Encode(ctx, "observation", row)
				if err != nil {
					errs <- err
					return
				}
				_, got, err := c.Decode(ctx, b)
				if err != nil {
					errs <- err
					return
				}
				wantVS := any(nil)
				if i%2 == 0 {
					wantVS = key
				}
				if got[ColFHIRKey] != key || got["value_as_string"] != wantVS {
					errs <- fmt.Errorf("row %s decoded as key=%v value_as_string=%v", key, got[ColFHIRKey], got["value_as_string"])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// benchMeasurement is a typical vital-sign row: what the mapper emits most.
func benchMeasurement() map[string]any {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	return map[string]any{
		"measurement_id": int64(5_123_456_789_012), "person_id": int64(9_876_543_210_987),
		"measurement_concept_id": int32(3027018), "measurement_date": at, "measurement_datetime": at,
		"measurement_type_concept_id": int32(32817), "operator_concept_id": nil,
		"value_as_number": 72.0, "unit_concept_id": int32(8541), "range_low": 60.0, "range_high": 100.0,
		"visit_occurrence_id": int64(1_234_567_890_123), "measurement_source_value": "8867-4",
		"measurement_source_concept_id": int32(3027018), "unit_source_value": "/min",
		"value_source_value": "72", "_fhir_key": "Observation/3f9a2b6c-0d1e-4f5a-8b7c-9d0e1f2a3b4c",
		"_fhir_version": "1", "_fhir_last_updated": at, "_fhir_component": int32(0),
	}
}

func BenchmarkMeasurementSingleObject(b *testing.B) {
	benchRoundTrip(b, mustCodecs(b), mustCodecs(b))
}

func BenchmarkMeasurementConfluent(b *testing.B) {
	_, registry := newRegistry(b)
	rc := NewRegistryCodec(mustCodecs(b), registry, Topics{})
	benchRoundTrip(b, rc, rc)
}

type appendEncoder interface {
	AppendEncode(ctx context.Context, dst []byte, table string, row map[string]any) ([]byte, error)
}

func benchRoundTrip(b *testing.B, enc Encoder, dec Decoder) {
	ctx := context.Background()
	row := benchMeasurement()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := enc.Encode(ctx, "measurement", row); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("append-encode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = enc.(appendEncoder).AppendEncode(ctx, buf[:0], "measurement", row); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	value, err := enc.Encode(ctx, "measurement", row)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := dec.Decode(ctx, value); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("encode+decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v, err := enc.Encode(ctx, "measurement", row)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := dec.Decode(ctx, v); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(len(value)), "bytes/row")
	})
}

// TestLocalTimestampIsWallClock pins what the CDM's datetime columns hold: the clock
// reading where the event was recorded, with no time-zone conversion, in both encoders;
// the envelope's _fhir_last_updated stays an instant.
func TestLocalTimestampIsWallClock(t *testing.T) {
	ctx := context.Background()
	c := mustCodecs(t)
	tab, err := OMOPTable("visit_occurrence")
	if err != nil {
		t.Fatal(err)
	}
	recorded := time.Date(2024, 3, 1, 23, 30, 0, 0, time.FixedZone("EST", -5*3600))
	// 1969-12-31 23:59:59.5 on the wall clock: microseconds below zero floor, as instants do.
	before1970 := time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		in, wantWall time.Time
		wantMicros   int64
	}{
		{recorded, time.Date(2024, 3, 1, 23, 30, 0, 0, time.UTC), 1709335800_000000},
		{before1970, time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), -500_000},
	} {
		i, _ := tab.ColumnIndex("visit_start_datetime")
		lu, _ := tab.ColumnIndex(ColFHIRLastUpdated)
		r := tab.NewRow()
		r.SetLocalTimestamp(i, tc.in)
		r.SetTimestamp(lu, tc.in)
		if got := r.vals[i].n; got != tc.wantMicros {
			t.Errorf("%v: stored %d µs, want %d", tc.in, got, tc.wantMicros)
		}
		m := r.Map()
		for name, want := range map[string]time.Time{"visit_start_datetime": tc.wantWall, ColFHIRLastUpdated: tc.in.UTC()} {
			if got := m[name].(time.Time); !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("%v: Map()[%s] = %v, want %v", tc.in, name, got, want)
			}
		}
		// Both encoders, decoded by goavro: the datetime is the wall clock, the envelope
		// time the instant.
		full := fullRow(tab)
		full["visit_start_datetime"] = tc.in
		full[ColFHIRLastUpdated] = tc.in
		enc, err := c.Encode(ctx, "visit_occurrence", full)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Decode(ctx, enc)
		if err != nil {
			t.Fatal(err)
		}
		if g := got["visit_start_datetime"].(time.Time); !g.Equal(tc.wantWall) {
			t.Errorf("%v: decoded visit_start_datetime %v, want %v", tc.in, g, tc.wantWall)
		}
		if g := got[ColFHIRLastUpdated].(time.Time); !g.Equal(tc.in) {
			t.Errorf("%v: decoded _fhir_last_updated %v, want the instant %v", tc.in, g, tc.in)
		}
	}
}
