package kafkaclient

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/schemas"
)

// CreateContractTopics creates the contract's topics on the cluster of c (its topic
// prefix, its record size limit as max.message.bytes) for the resource types given and
// every OMOP table, as 'fhirstream topics create' does, within two minutes. It returns
// what EnsureTopics did and how many topics the contract has.
func CreateContractTopics(ctx context.Context, c Config, resourceTypes []string, o TopicOptions) (EnsureResult, int, error) {
	t, err := schemas.NewTopics(c.TopicPrefix)
	if err != nil {
		return EnsureResult{}, 0, err
	}
	o.MaxMessageBytes = c.MaxRecordBytes
	cl, err := c.NewClient()
	if err != nil {
		return EnsureResult{}, 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	specs := ContractTopics(t, resourceTypes, schemas.OMOPTables(), o)
	res, err := EnsureTopics(ctx, kadm.NewClient(cl), specs)
	return res, len(specs), err
}

// WriteSummary writes what creating the contract's topics did: the counts, then each
// topic created and aligned.
func (r EnsureResult) WriteSummary(w io.Writer, contractTopics int) {
	fmt.Fprintf(w, "topics: %d created, %d configs aligned, %d already as wanted (of %d in the contract)\n",
		len(r.Created), len(r.Altered), len(r.Existing), contractTopics)
	for _, n := range r.Created {
		fmt.Fprintf(w, "  created %s\n", n)
	}
	for _, n := range r.Altered {
		fmt.Fprintf(w, "  aligned %s\n", n)
	}
}

// TopicRecords is a topic with its partition count and the offsets it holds: the records
// in it, transaction markers included.
type TopicRecords struct {
	Name       string
	Partitions int
	Offsets    int64
}

// ListContractTopics lists the topics of the contract under c's topic prefix (all: every
// topic of the cluster) by name, within a minute.
func ListContractTopics(ctx context.Context, c Config, all bool) ([]TopicRecords, error) {
	t, err := schemas.NewTopics(c.TopicPrefix)
	if err != nil {
		return nil, err
	}
	cl, err := c.NewClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var names []string
	for name := range details {
		if all || strings.HasPrefix(name, t.Prefix+".") || strings.HasPrefix(name, t.OMOP("")) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	out := make([]TopicRecords, len(names))
	for i, name := range names {
		out[i] = TopicRecords{Name: name, Partitions: len(details[name].Partitions)}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Topic == name && o.Err == nil {
				if s, ok := starts.Lookup(name, o.Partition); ok && s.Err == nil {
					out[i].Offsets += o.Offset - s.Offset
				}
			}
		})
	}
	return out, nil
}

// WriteTopicRecords writes topics as a table, as 'fhirstream topics list' prints them.
func WriteTopicRecords(w io.Writer, topics []TopicRecords) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tOFFSETS (records incl. transaction markers)\t")
	for _, r := range topics {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", r.Name, r.Partitions, r.Offsets)
	}
	return tw.Flush()
}
