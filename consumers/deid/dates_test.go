package deid

import (
	"testing"
	"time"
)

// TestShiftedMatchesTime holds the day arithmetic of dateShift to the time package's
// calendar, over four centuries of dates and every shift.
func TestShiftedMatchesTime(t *testing.T) {
	for day := time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC); day.Year() < 2200; day = day.AddDate(0, 0, 37) {
		for shift := -50; shift <= 50; shift += 7 {
			y, m, d := day.Date()
			got := fhirDate{year: y, month: int(m), day: d, rest: "T12:34:56.789+02:00"}.shifted(shift)
			want := day.AddDate(0, 0, shift).Format("2006-01-02") + "T00:00:00.000+02:00"
			if got != want {
				t.Fatalf("%s shifted by %d: %s, want %s", day.Format(time.DateOnly), shift, got, want)
			}
		}
	}
}

func TestOverThreshold(t *testing.T) {
	today := fhirDate{year: 2026, month: 12, day: 6}
	for _, c := range []struct {
		date string
		over bool
	}{
		{"1936-12-06", true}, // 90 today: over 89
		{"1936-12-07", false},
		{"1936-12-05", true},
		{"1937", false},
		{"1936", true}, // read as 1936-01-01
		{"2026-01-01", false},
	} {
		d, ok := datePrefix(c.date)
		if !ok {
			t.Fatal(c.date)
		}
		if got := d.overThreshold(today); got != c.over {
			t.Errorf("%s: over 89 %v, want %v", c.date, got, c.over)
		}
	}
}
