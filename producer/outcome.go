package producer

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// SetWindow sets the export's time window from --since and --until: since is an RFC 3339
// instant, "auto" (SinceAuto) or empty; until an RFC 3339 instant or empty.
func (c *Config) SetWindow(since, until string) error {
	switch since {
	case "":
	case "auto":
		c.SinceAuto = true
	default:
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			return fmt.Errorf("--since %q: want an RFC 3339 instant or auto", since)
		}
		c.Export.Since = t
	}
	if until != "" {
		t, err := time.Parse(time.RFC3339Nano, until)
		if err != nil {
			return fmt.Errorf("--until %q: want an RFC 3339 instant", until)
		}
		c.Export.Until = t
	}
	return nil
}

// WriteOutcome writes what 'fhirstream fetch' prints of a Fetch(cfg) that returned sum
// and err, and returns the command's error: a cancelled export says so; an export
// already published says it was released; otherwise the summary table, and an error
// other than a failed reconciliation (which the table explains) is marked FAILED.
func WriteOutcome(w io.Writer, cfg Config, sum Summary, err error) error {
	if cfg.Cancel && err == nil {
		fmt.Fprintln(w, "export cancelled")
		return nil
	}
	if sum.AlreadyComplete {
		fmt.Fprintf(w, "export %s was already published; released it\n", sum.ExportID)
		return err
	}
	if len(sum.Files) > 0 {
		sum.WriteTable(w)
	}
	if err != nil && !errors.Is(err, ErrReconcile) {
		return fmt.Errorf("fetch FAILED: %w", err)
	}
	return err
}
