package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// ParseWhen reads a --since or --until value: an RFC 3339 time, or a duration before now
// (24h). Empty is the zero time, no bound.
func ParseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// List writes the dead letters on topic that match f to w, one line each without the
// payload, at most max of them (0: all), then their counts, which cover every match.
func List(ctx context.Context, cfg kafkaclient.Config, topic string, f Filter, max int, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSTAGE\tCLASS\tSOURCE\tKEY\tPATH")
	c := NewCounts()
	err := Scan(ctx, cfg, topic, f, func(l Letter) error {
		c.Add(l)
		if max == 0 || c.Total <= max {
			writeListLine(tw, l)
		}
		return nil
	})
	_ = tw.Flush()
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	c.WriteTable(w, topic)
	return nil
}

func writeListLine(w io.Writer, l Letter) {
	x := l.Context
	fmt.Fprintf(w, "%s\t%s\t%s\t%s/%d@%d\t%s\t%s\n", x.Time.UTC().Format(time.RFC3339), x.Stage, x.Class,
		x.SourceTopic, x.Partition, x.Offset, l.Record.Key, x.Path)
}

// ShowOptions say how many dead letters Show prints and whether with their payloads.
type ShowOptions struct {
	// Max is the most letters shown; 0 shows all.
	Max int
	// Payload prints each record's value. FHIR resources are PHI: only where that is
	// allowed. Without it the value's size is printed.
	Payload bool
}

// errEnough ends a scan once Show has shown its Max letters.
var errEnough = errors.New("enough")

// Show writes the dead letters on topic that match f to w with their full context and
// headers, then how many it showed.
func Show(ctx context.Context, cfg kafkaclient.Config, topic string, f Filter, o ShowOptions, w io.Writer) error {
	n := 0
	err := Scan(ctx, cfg, topic, f, func(l Letter) error {
		if o.Max > 0 && n >= o.Max {
			return errEnough
		}
		n++
		writeLetter(w, l, o.Payload)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	fmt.Fprintf(w, "%d shown\n", n)
	return nil
}

// writeLetter writes one letter as Show does; the value only when payload is set.
func writeLetter(w io.Writer, l Letter, payload bool) {
	r, x := l.Record, l.Context
	fmt.Fprintf(w, "--- %s/%d@%d key=%s\n", r.Topic, r.Partition, r.Offset, r.Key)
	if !l.HasContext {
		fmt.Fprintln(w, "  (no dead-letter context)")
	} else {
		fmt.Fprintf(w, "  stage:    %s\n  source:   %s/%d@%d\n  class:    %s\n  path:     %s\n  message:  %s\n  attempts: %d\n  time:     %s\n",
			x.Stage, x.SourceTopic, x.Partition, x.Offset, x.Class, x.Path, x.Message, x.Attempts, x.Time.UTC().Format(time.RFC3339Nano))
	}
	for _, h := range r.Headers {
		fmt.Fprintf(w, "  header %s: %s\n", h.Key, h.Value)
	}
	switch {
	case r.Value == nil:
		fmt.Fprintln(w, "  value: (tombstone)")
	case payload:
		fmt.Fprintf(w, "  value: %s\n", r.Value)
	default:
		fmt.Fprintf(w, "  value: %d bytes (hidden; --show-payload prints it)\n", len(r.Value))
	}
}

// WriteSummary writes what the replay did (or, for a dry run, would do): the totals, the
// group, and the histogram, largest first.
func (res ReplayResult) WriteSummary(w io.Writer, dryRun bool) {
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(w, "%s %d, parked %d (group %s)\n", verb, res.Replayed, res.Parked, res.Group)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range SortedByCount(res.Histogram) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, res.Histogram[k])
	}
	_ = tw.Flush()
}
