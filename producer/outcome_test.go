package producer

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestSetWindow(t *testing.T) {
	var c Config
	if err := c.SetWindow("2024-05-01T12:00:00.5Z", "2024-06-01T00:00:00+02:00"); err != nil {
		t.Fatal(err)
	}
	if !c.Export.Since.Equal(time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)) || !c.Export.Until.Equal(time.Date(2024, 5, 31, 22, 0, 0, 0, time.UTC)) || c.SinceAuto {
		t.Errorf("window %v .. %v, auto %v", c.Export.Since, c.Export.Until, c.SinceAuto)
	}
	c = Config{}
	if err := c.SetWindow("auto", ""); err != nil || !c.SinceAuto || !c.Export.Since.IsZero() || !c.Export.Until.IsZero() {
		t.Errorf("auto: %v, %+v", err, c.Export)
	}
	for _, w := range [][2]string{{"yesterday", ""}, {"", "2024-05-01"}} {
		c = Config{}
		if err := c.SetWindow(w[0], w[1]); err == nil || !strings.Contains(err.Error(), "want an RFC 3339 instant") {
			t.Errorf("%q: %v", w, err)
		}
	}
}

func TestWriteOutcome(t *testing.T) {
	files := []FileSummary{{Kind: "output", Type: "Patient"}}
	transient := errors.New("broker down")
	reconcile := fmt.Errorf("2 mismatches: %w", ErrReconcile)
	for _, c := range []struct {
		name    string
		cfg     Config
		sum     Summary
		err     error
		out     string // a part of the output; "" for none
		wantErr string // "" for none
	}{
		{"cancelled", Config{Cancel: true}, Summary{}, nil, "export cancelled\n", ""},
		{"cancel failed", Config{Cancel: true}, Summary{}, transient, "", "fetch FAILED: broker down"},
		{"already published", Config{}, Summary{AlreadyComplete: true, ExportID: "e1"}, nil, "export e1 was already published; released it\n", ""},
		{"ok", Config{}, Summary{Files: files}, nil, "Patient", ""},
		{"does not reconcile", Config{}, Summary{Files: files}, reconcile, "Patient", "2 mismatches: reconciliation failed"},
		{"failed", Config{}, Summary{}, transient, "", "fetch FAILED: broker down"},
	} {
		var b bytes.Buffer
		err := WriteOutcome(&b, c.cfg, c.sum, c.err)
		if (c.out == "") != (b.Len() == 0) || !strings.Contains(b.String(), c.out) {
			t.Errorf("%s: printed %q, want %q", c.name, b.String(), c.out)
		}
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || err.Error() != c.wantErr) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
		}
		if c.wantErr != "" && !strings.Contains(c.wantErr, "FAILED") && strings.Contains(err.Error(), "FAILED") {
			t.Errorf("%s: a failed reconciliation is marked FAILED twice", c.name)
		}
	}
}
