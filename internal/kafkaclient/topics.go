package kafkaclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	// Deidentify adds the de-identified layer's topics, <prefix>.deid.<Type>, for a
	// pipeline that runs the deid stage.
	Deidentify bool
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
		if o.Deidentify {
			specs = append(specs, data(t.LayerTopics(schemas.LayerDeid).Prefix+rt))
		}
	}
	for _, table := range omopTables {
		specs = append(specs, data(t.OMOP(table)))
	}
	dlq := data(t.DLQ())
	dlq.Configs["retention.ms"] = strconv.FormatInt(o.DLQRetentionMs, 10)
	specs = append(specs, dlq)
	// The state topics are those the topology's nodes keep (fetch checkpoints, the
	// dedupe changelog), each listed once.
	seen := map[string]bool{}
	for _, n := range t.Topology(schemas.TopologyOptions{}).Nodes {
		for _, s := range n.State {
			if !seen[s.Prefix] {
				seen[s.Prefix] = true
				specs = append(specs, StateTopicNamed(s.Prefix, o))
			}
		}
	}
	return specs
}

// StateTopic is the compacted topic holding state called name.
func StateTopic(t schemas.Topics, name string, o TopicOptions) TopicSpec {
	return StateTopicNamed(t.State(name), o)
}

// StateTopicNamed is the spec of the compacted state topic called topic.
func StateTopicNamed(topic string, o TopicOptions) TopicSpec {
	o.defaults()
	return TopicSpec{Name: topic, Partitions: o.Partitions, ReplicationFactor: o.ReplicationFactor,
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
// in line. It is idempotent: a second run creates and alters nothing. A topic named more
// than once is ensured once, as its first spec says (a fetcher lists a type's topic for
// each of the type's files).
//
// Checking and altering configs needs DescribeConfigs and AlterConfigs on the topics,
// which an operator's 'fhirstream topics create' has and a stage's principal has not:
// stages and the fetcher call EnsureTopicsExist.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (EnsureResult, error) {
	return ensureTopics(ctx, adm, specs, true)
}

// EnsureTopicsExist creates the missing topics, as EnsureTopics does, and leaves the
// configs of existing ones alone. It is what a stage, the fetcher and dlq replay need
// before they write: their principals may describe and write their topics (and create
// them, where an operator allows that), not manage their configs.
func EnsureTopicsExist(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (EnsureResult, error) {
	return ensureTopics(ctx, adm, specs, false)
}

func ensureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec, align bool) (EnsureResult, error) {
	var res EnsureResult
	specs = firstByName(specs)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(uncached(ctx), names...)
	if err != nil {
		if IsDenied(err) {
			names = deniedTopics(ctx, adm, names)
		}
		return res, fmt.Errorf("list topics: %w", Denied(err, "Describe", "topic", names...))
	}
	var existing, missing []TopicSpec
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
			return res, fmt.Errorf("describe topic %s: %w", s.Name, Denied(d.Err, "Describe", "topic", s.Name))
		}
		missing = append(missing, s)
	}
	created, raced, err := createTopics(ctx, adm, missing)
	if err != nil {
		return res, err
	}
	res.Created = created
	existing = append(existing, raced...)
	// A topic another process just created is no more visible yet than one we created:
	// reading its configs before then fails with "unknown topic".
	visible := slices.Clone(created)
	for _, s := range raced {
		visible = append(visible, s.Name)
	}
	if err := WaitTopicsVisible(ctx, adm, visible); err != nil {
		return res, err
	}
	if len(existing) == 0 {
		return res, nil
	}
	if !align {
		for _, s := range existing {
			res.Existing = append(res.Existing, s.Name)
		}
		return res, checkRecordLimits(ctx, adm, existing)
	}
	altered, unchanged, err := alignConfigs(ctx, adm, existing)
	if err != nil {
		return res, err
	}
	res.Altered, res.Existing = altered, unchanged
	return res, nil
}

// deniedTopics are the topics of names this client may not describe, found by asking for
// each alone: a metadata request refused for one of several topics does not say which.
func deniedTopics(ctx context.Context, adm *kadm.Client, names []string) []string {
	if len(names) < 2 {
		return names
	}
	var denied []string
	for _, n := range names {
		if _, err := adm.ListTopics(uncached(ctx), n); IsDenied(err) {
			denied = append(denied, n)
		}
	}
	if len(denied) == 0 {
		return names
	}
	return denied
}

// firstByName returns specs without the later specs of a name already listed: a create
// request naming a topic twice fails as a whole.
func firstByName(specs []TopicSpec) []TopicSpec {
	seen := make(map[string]bool, len(specs))
	out := specs[:0:0]
	for _, s := range specs {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	return out
}

// createTopics creates the topics of specs, returning those it created and those another
// process created between our listing and our create (TopicAlreadyExists), both in
// specs' order. On KRaft each CreateTopics request costs a controller commit (about
// 30 ms on a local broker, whatever the number of topics in it), so creating a dozen
// topics one request each took most of a fetch's setup (about 340 ms for 12 raw topics):
// specs are sent in as few requests as kadm allows, one per distinct partitions,
// replication factor and configs (one for the raw topics of an export). kadm takes one
// set of configs per request; the requests are sent together, though the controller
// still commits them one after another.
func createTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (created []string, raced []TopicSpec, err error) {
	if len(specs) == 0 {
		return nil, nil, nil
	}
	type group struct {
		first int // index in specs of the group's first topic, whose shape the group shares
		names []string
		resp  kadm.CreateTopicResponses
		err   error
	}
	var groups []*group
	byShape := map[string]*group{}
	for i, s := range specs {
		shape := topicShape(s)
		g := byShape[shape]
		if g == nil {
			g = &group{first: i}
			byShape[shape] = g
			groups = append(groups, g)
		}
		g.names = append(g.names, s.Name)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			s := specs[g.first]
			cfg := make(map[string]*string, len(s.Configs))
			for k, v := range s.Configs {
				cfg[k] = kadm.StringPtr(v)
			}
			g.resp, g.err = adm.CreateTopics(ctx, s.Partitions, s.ReplicationFactor, cfg, g.names...)
		})
	}
	wg.Wait()
	responses := make(map[string]kadm.CreateTopicResponse, len(specs))
	for _, g := range groups {
		if g.err != nil {
			return nil, nil, fmt.Errorf("create topics %s: %w", strings.Join(g.names, ", "), Denied(g.err, "Create", "topic", g.names...))
		}
		maps.Copy(responses, g.resp)
	}
	for _, s := range specs {
		r, ok := responses[s.Name]
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("create topic %s: the broker's response does not mention it", s.Name)
		case r.Err == nil:
			created = append(created, s.Name)
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			// Another process created it between our list and create.
			raced = append(raced, s)
		default:
			return nil, nil, fmt.Errorf("create topic %s: %w (%s)", s.Name, Denied(r.Err, "Create", "topic", s.Name), r.ErrMessage)
		}
	}
	return created, raced, nil
}

// topicShape is what topics created in one request must share: partitions, replication
// factor and configs, as a comparable string.
func topicShape(s TopicSpec) string {
	keys := slices.Sorted(maps.Keys(s.Configs))
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d", s.Partitions, s.ReplicationFactor)
	for _, k := range keys {
		fmt.Fprintf(&b, "/%q=%q", k, s.Configs[k])
	}
	return b.String()
}

// ErrTopicRecordLimit is the error of a topic whose max.message.bytes is below the
// client's --max-record-bytes; retrying cannot fix it.
var ErrTopicRecordLimit = errors.New("record size limit")

// checkRecordLimits refuses existing topics whose max.message.bytes is below the
// spec's: the producer builds record batches up to its own limit, and a broker refuses a
// larger batch (MESSAGE_TOO_LARGE) whole, so a stage writing there would abort and redo
// its transactions without end. A client that may not read the topics' configs (the
// least ACLs give a stage none) skips the check; the broker's refusal then names the
// limit.
func checkRecordLimits(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	want := map[string]int64{}
	var names []string
	for _, s := range specs {
		if v, err := strconv.ParseInt(s.Configs["max.message.bytes"], 10, 64); err == nil {
			want[s.Name] = v
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	described, err := adm.DescribeTopicConfigs(ctx, names...)
	if IsDenied(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	for _, rc := range described {
		if IsDenied(rc.Err) {
			continue
		} else if rc.Err != nil {
			return fmt.Errorf("describe configs of %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if got, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && got < want[rc.Name] {
				return fmt.Errorf("%w: topic %s accepts record batches of at most %d bytes (max.message.bytes) and this client produces batches of up to %d (--max-record-bytes): raise the topic's limit ('fhirstream topics create' aligns it) or lower --max-record-bytes to %d", ErrTopicRecordLimit, rc.Name, got, want[rc.Name], got)
			}
		}
	}
	return nil
}

// alignConfigs sets the managed configs of existing topics where they differ.
func alignConfigs(ctx context.Context, adm *kadm.Client, specs []TopicSpec) (altered, unchanged []string, err error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	described, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, nil, fmt.Errorf("describe topic configs: %w", Denied(err, "DescribeConfigs", "topic", names...))
	}
	current := make(map[string]map[string]string, len(described))
	for _, rc := range described {
		if rc.Err != nil {
			return nil, nil, fmt.Errorf("describe configs of %s: %w", rc.Name, Denied(rc.Err, "DescribeConfigs", "topic", rc.Name))
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
			return nil, nil, fmt.Errorf("alter configs of %s: %w", s.Name, Denied(err, "AlterConfigs", "topic", s.Name))
		}
		for _, r := range resp {
			if r.Err != nil {
				return nil, nil, fmt.Errorf("alter configs of %s: %w (%s)", r.Name, Denied(r.Err, "AlterConfigs", "topic", r.Name), r.ErrMessage)
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
	// A local KRaft broker shows new topics in its metadata 0-150 ms after the create
	// returns: poll often, backing off only a little, since the wait is on every fetch's
	// path to its first record and each poll is one small metadata request.
	backoff := 10 * time.Millisecond
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
		backoff = min(backoff*3/2, 40*time.Millisecond)
	}
}

// uncached makes kadm ask the broker for metadata instead of answering from the client's
// cache (kept up to 5 s), which still says "unknown topic" right after a create. Asking
// for authorized operations is kadm's documented way to bypass that cache.
func uncached(ctx context.Context) context.Context { return kadm.WithAuthorizedOps(ctx) }
