package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/fhirstream/fhirstream/schemas"
)

// TopicSpec is a topic as the contract wants it.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16 // -1: the broker's default.replication.factor
	// Configs are the topic configs fhirstream manages; others are left alone.
	Configs map[string]string
}

// TopicOptions shape the contract's topics.
type TopicOptions struct {
	// Partitions of every data topic. Default 6: enough to spread a stage over a few
	// instances; the partition count of a keyed topic must not change later, because
	// dedupe state and row replacement rely on a key staying in its partition.
	Partitions int32
	// ReplicationFactor of every topic; -1 takes the broker default. Default -1.
	ReplicationFactor int16
	// MaxMessageBytes is the max.message.bytes of the FHIR and dead-letter topics, so a
	// large resource fits in one record. Default DefaultMaxRecordBytes.
	MaxMessageBytes int32
	// DLQRetentionMs is how long dead letters are kept. Default 30 days.
	DLQRetentionMs int64
}

func (o *TopicOptions) defaults() {
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = -1
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxRecordBytes
	}
	if o.DLQRetentionMs <= 0 {
		o.DLQRetentionMs = 30 * 24 * 3600 * 1000
	}
}

// StateTopicNames are the compacted state topics of the contract, by purpose.
var StateTopicNames = []string{
	"fetcher", // fetch checkpoints and the last export's transactionTime
	"dedupe",  // dedupe changelog: last forwarded version per resource key
}

// ContractTopics lists every topic of the contract for the given resource types and OMOP
// tables.
func ContractTopics(t schemas.Topics, resourceTypes, omopTables []string, o TopicOptions) []TopicSpec {
	o.defaults()
	maxBytes := strconv.Itoa(int(o.MaxMessageBytes))
	data := func(name string) TopicSpec {
		return TopicSpec{Name: name, Partitions: o.Partitions, ReplicationFactor: o.ReplicationFactor,
			Configs: map[string]string{"max.message.bytes": maxBytes, "cleanup.policy": "delete"}}
	}
	var specs []TopicSpec
	for _, rt := range resourceTypes {
		specs = append(specs, data(t.Raw(rt)), data(t.Valid(rt)), data(t.Unique(rt)))
	}
	for _, table := range omopTables {
		specs = append(specs, data(t.OMOP(table)))
	}
	dlq := data(t.DLQ())
	dlq.Configs["retention.ms"] = strconv.FormatInt(o.DLQRetentionMs, 10)
	specs = append(specs, dlq)
	for _, name := range StateTopicNames {
		specs = append(specs, StateTopic(t, name, o))
	}
	return specs
}

// StateTopic is the compacted topic holding state called name.
func StateTopic(t schemas.Topics, name string, o TopicOptions) TopicSpec {
	o.defaults()
	return TopicSpec{Name: t.State(name), Partitions: o.Partitions, ReplicationFactor: o.ReplicationFactor,
		Configs: map[string]string{"cleanup.policy": "compact", "max.message.bytes": strconv.Itoa(int(o.MaxMessageBytes))}}
}

// EnsureResult says what EnsureTopics did.
type EnsureResult struct {
	Created  []string
	Altered  []string // existing topics whose managed configs were corrected
	Existing []string // existing topics left as they were
	// Warnings are differences fhirstream will not fix by itself, such as a partition
	// count that differs from the one asked for.
	Warnings []string
}

// EnsureTopics creates the missing topics and brings the managed configs of existing ones
// in line. It is idempotent: a second run creates and alters nothing.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (EnsureResult, error) {
	var res EnsureResult
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(uncached(ctx), names...)
	if err != nil {
		return res, fmt.Errorf("list topics: %w", err)
	}
	var existing []TopicSpec
	for _, s := range specs {
		d, ok := details[s.Name]
		if ok && d.Err == nil {
			existing = append(existing, s)
			if got := int32(len(d.Partitions)); got != s.Partitions {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s has %d partitions, the configuration asks for %d; left as is (changing it moves keys between partitions)", s.Name, got, s.Partitions))
			}
			continue
		}
		if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return res, fmt.Errorf("describe topic %s: %w", s.Name, d.Err)
		}
		cfg := make(map[string]*string, len(s.Configs))
		for k, v := range s.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		cr, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, cfg, s.Name)
		switch {
		case err == nil && cr.Err == nil:
			res.Created = append(res.Created, s.Name)
		case errors.Is(err, kerr.TopicAlreadyExists) || errors.Is(cr.Err, kerr.TopicAlreadyExists):
			// Another process created it between our list and create.
			existing = append(existing, s)
		case err != nil:
			return res, fmt.Errorf("create topic %s: %w", s.Name, err)
		default:
			return res, fmt.Errorf("create topic %s: %w (%s)", s.Name, cr.Err, cr.ErrMessage)
		}
	}
	if err := WaitTopicsVisible(ctx, adm, res.Created); err != nil {
		return res, err
	}
	if len(existing) == 0 {
		return res, nil
	}
	altered, unchanged, err := alignConfigs(ctx, adm, existing)
	if err != nil {
		return res, err
	}
	res.Altered, res.Existing = altered, unchanged
	return res, nil
}

// alignConfigs sets the managed configs of existing topics where they differ.
func alignConfigs(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (altered, unchanged []string, err error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	described, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, nil, fmt.Errorf("describe topic configs: %w", err)
	}
	current := make(map[string]map[string]string, len(described))
	for _, rc := range described {
		if rc.Err != nil {
			return nil, nil, fmt.Errorf("describe configs of %s: %w", rc.Name, rc.Err)
		}
		m := make(map[string]string, len(rc.Configs))
		for _, c := range rc.Configs {
			if c.Value != nil {
				m[c.Key] = *c.Value
			}
		}
		current[rc.Name] = m
	}
	for _, s := range specs {
		var alters []kadm.AlterConfig
		keys := make([]string, 0, len(s.Configs))
		for k := range s.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v := s.Configs[k]; current[s.Name][k] != v {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
			}
		}
		if len(alters) == 0 {
			unchanged = append(unchanged, s.Name)
			continue
		}
		resp, err := adm.AlterTopicConfigs(ctx, alters, s.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("alter configs of %s: %w", s.Name, err)
		}
		for _, r := range resp {
			if r.Err != nil {
				return nil, nil, fmt.Errorf("alter configs of %s: %w (%s)", r.Name, r.Err, r.ErrMessage)
			}
		}
		altered = append(altered, s.Name)
	}
	return altered, unchanged, nil
}

// WaitTopicsVisible returns once the metadata of every topic in names shows all its partitions
// with a leader. A real broker acknowledges a create before its metadata cache has the
// topic, and a command returning earlier would leave its caller to race that.
func WaitTopicsVisible(ctx context.Context, adm *kadm.Client, names []string) error {
	if len(names) == 0 {
		return nil
	}
	backoff := 20 * time.Millisecond
	for {
		details, err := adm.ListTopics(uncached(ctx), names...)
		if err == nil {
			pending := 0
			for _, n := range names {
				d, ok := details[n]
				if !ok || d.Err != nil || len(d.Partitions) == 0 {
					pending++
					continue
				}
				for _, p := range d.Partitions {
					if p.Err != nil || p.Leader < 0 {
						pending++
						break
					}
				}
			}
			if pending == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics created but not visible in metadata: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// uncached makes kadm ask the broker for metadata instead of answering from the client's
// cache (kept up to 5 s), which still says "unknown topic" right after a create. Asking
// for authorized operations is kadm's documented way to bypass that cache.
func uncached(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }
