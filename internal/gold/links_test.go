package gold

import (
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/consumers/omop"
)

func device(key string, id, person int64, start, end string, source string) Row {
	r := Row{"_fhir_key": key, "device_exposure_id": id, "person_id": person, "device_concept_id": int32(0),
		"device_exposure_start_date": d(start), "device_exposure_start_datetime": nil, "device_exposure_end_date": nil,
		"device_exposure_end_datetime": nil, "device_type_concept_id": int32(32817), "device_source_value": source}
	if end != "" {
		r["device_exposure_end_date"] = d(end)
	}
	return r
}

// TestLinkResolution: a provider named by NPI becomes the provider with that npi; a
// reference to no row becomes null; a row of an unknown person is left out; references
// that resolve stay. Worked out by hand.
func TestLinkResolution(t *testing.T) {
	pr := omop.ID("Practitioner/pr1")
	byNPI := omop.IdentifierID("Practitioner", omop.NPISystem, "123")
	src := Tables{
		"person":   {{"person_id": int64(1)}},
		"provider": {{"provider_id": pr, "npi": "123"}},
		"visit_occurrence": {
			{"visit_occurrence_id": int64(10), "person_id": int64(1), "provider_id": byNPI, "care_site_id": int64(77)},
			{"visit_occurrence_id": int64(11), "person_id": int64(1), "provider_id": pr, "care_site_id": nil},
			{"visit_occurrence_id": int64(12), "person_id": int64(2), "provider_id": pr},
		},
		"condition_occurrence": {{"condition_occurrence_id": int64(20), "person_id": int64(1), "visit_occurrence_id": int64(99), "provider_id": nil}},
	}
	l, err := NewLinks(src)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := l.Count(src)
	if err != nil {
		t.Fatal(err)
	}
	var visits []Row
	for r, err := range l.Source(src).Rows("visit_occurrence") {
		if err != nil {
			t.Fatal(err)
		}
		visits = append(visits, r)
	}
	if len(visits) != 2 || visits[0]["provider_id"] != pr || visits[0]["care_site_id"] != nil || visits[1]["provider_id"] != pr {
		t.Errorf("visits %v", visits)
	}
	if src["visit_occurrence"][0]["provider_id"] != byNPI {
		t.Error("resolution changed its input row")
	}
	for _, c := range []struct {
		got, want int64
		what      string
	}{
		{counts.ResolvedByNPI["visit_occurrence.provider_id"], 1, "NPI references resolved"},
		{counts.Unresolved["visit_occurrence.care_site_id"], 1, "care sites to no row"},
		{counts.Unresolved["condition_occurrence.visit_occurrence_id"], 1, "visits to no row"},
		{counts.Dropped["visit_occurrence"], 1, "visits of no person"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d (%+v)", c.what, c.got, c.want, counts)
		}
	}
}

// TestDeviceDating: a Device row takes its dates from the procedure and use statement
// naming it, which are then left out; other rows stay as they are.
func TestDeviceDating(t *testing.T) {
	d1 := omop.ID("Device/d1")
	src := Tables{
		"person": {{"person_id": int64(1)}, {"person_id": int64(2)}},
		"device_exposure": {
			device("Device/d1", d1, 1, "2001-01-01", "", ""),                                        // manufactureDate
			device("Procedure/impl", omop.ID("Procedure/impl#1"), 1, "2001-01-21", "", "Device/d1"), // the implant
			device("DeviceUseStatement/u", omop.ID("DeviceUseStatement/u"), 1, "2001-01-22", "2001-03-01", "Device/d1"),
			device("Device/d2", omop.ID("Device/d2"), 2, "2005-05-05", "", ""),                                  // dated by nothing
			device("DeviceUseStatement/v", omop.ID("DeviceUseStatement/v"), 2, "2006-06-06", "", "Device/gone"), // no such Device
		},
	}
	l, err := NewLinks(src)
	if err != nil {
		t.Fatal(err)
	}
	counts, _ := l.Count(src)
	var got []string
	for r, err := range l.Source(src).Rows("device_exposure") {
		if err != nil {
			t.Fatal(err)
		}
		end := "-"
		if e, ok := r["device_exposure_end_date"].(time.Time); ok {
			end = e.Format(time.DateOnly)
		}
		got = append(got, r["_fhir_key"].(string)+" "+r["device_exposure_start_date"].(time.Time).Format(time.DateOnly)+".."+end)
	}
	want := []string{"Device/d1 2001-01-21..2001-03-01", "Device/d2 2005-05-05..-", "DeviceUseStatement/v 2006-06-06..-"}
	if len(got) != len(want) {
		t.Fatalf("rows %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rows %q, want %q", got, want)
			break
		}
	}
	if counts.DevicesDated != 1 || counts.DatingRows != 2 {
		t.Errorf("counts %+v, want 1 device dated by 2 rows", counts)
	}
}
