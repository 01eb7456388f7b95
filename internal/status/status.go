// Package status reports on a running pipeline from the cluster alone: for each stage and
// sink of the topology, its consumer group's state and members, its lag on every input
// topic, the dead letters it produced, and the open transactions on the pipeline's
// partitions, with the hanging ones (a lost commit marker) found and, when asked, ended.
// 'fhirstream status' prints it; the chaos test resolves hanging transactions with it.
package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/fhirstream/fhirstream/consumers/dlq"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// stageGroup is a stage's consumer group and the topics it reads.
type stageGroup struct {
	stage string
	group string
	input *regexp.Regexp
}

// pipelineStages lists the stages and sinks in data-flow order with their groups and
// inputs, read off the declared topology.
func pipelineStages(t schemas.Topics, o schemas.TopologyOptions) ([]stageGroup, error) {
	var out []stageGroup
	for _, n := range t.Topology(o).Consumers() {
		re, err := regexp.Compile(n.InputPattern())
		if err != nil {
			return nil, fmt.Errorf("stage %s: input pattern: %w", n.Name, err)
		}
		out = append(out, stageGroup{stage: n.Name, group: n.Group, input: re})
	}
	return out, nil
}

// ParseGroupOverrides reads STAGE=GROUP entries.
func ParseGroupOverrides(entries []string) (map[string]string, error) {
	out := map[string]string{}
	for _, e := range entries {
		stage, group, ok := strings.Cut(e, "=")
		if !ok || stage == "" || group == "" {
			return nil, fmt.Errorf("--stage-group %q: want STAGE=GROUP, e.g. validate=site-a-validate", e)
		}
		out[stage] = group
	}
	return out, nil
}

type Options struct {
	// Groups maps a stage name to the consumer group it runs with, when not its default.
	Groups map[string]string
	// DeadLetters counts the dead-letter topic's records.
	DeadLetters bool
	// Transactions lists open transactions; ResolveHanging ends the hanging ones.
	Transactions, ResolveHanging bool
	// Topology is the variant of the pipeline that runs (with the deid stage or not).
	Topology schemas.TopologyOptions
}

// Report is what 'fhirstream status' prints.
type Report struct {
	TopicPrefix string  `json:"topic_prefix"`
	Stages      []Stage `json:"stages"`
	// DeadLetters is nil when not counted.
	DeadLetters *DeadLetterCounts `json:"dead_letters,omitempty"`
	// OpenTransactions are the open transactions (when checked, and the check worked;
	// otherwise TransactionCheckError says why not). AbortedHanging counts the hanging
	// ones ended by --resolve-hanging.
	OpenTransactions      []OpenTxn `json:"open_transactions,omitempty"`
	TransactionCheckError string    `json:"transaction_check_error,omitempty"`
	ResolvedHanging       int       `json:"resolved_hanging,omitempty"`
}

type Stage struct {
	Stage string `json:"stage"`
	Group string `json:"group"`
	// State is the group's state (Stable, Empty, PreparingRebalance, …), or "none" when
	// the group does not exist.
	State   string   `json:"state"`
	Members []Member `json:"members"`
	// Lag is the sum over Topics.
	Lag    int64      `json:"lag"`
	Topics []TopicLag `json:"topics"`
	// DeadLetters is the number of records this stage dead-lettered, and
	// DeadLettersByClass the same by error class (when counted).
	DeadLetters        int            `json:"dead_letters"`
	DeadLettersByClass map[string]int `json:"dead_letters_by_class,omitempty"`
	// Error is why the group or part of its lag could not be read.
	Error string `json:"error,omitempty"`
}

type Member struct {
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	Partitions int    `json:"partitions"`
}

type TopicLag struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	Lag        int64  `json:"lag"`
	// MaxLag is the largest partition lag, on MaxPartition.
	MaxLag       int64 `json:"max_partition_lag"`
	MaxPartition int32 `json:"max_partition"`
	// Uncommitted counts partitions without a committed offset (their lag is all of them).
	Uncommitted int `json:"uncommitted_partitions"`
}

// DeadLetterCounts are dlq.Counts named for JSON.
type DeadLetterCounts struct {
	Topic     string         `json:"topic"`
	Total     int            `json:"total"`
	ByStage   map[string]int `json:"by_stage"`
	ByClass   map[string]int `json:"by_stage_class"` // "<stage>/<class>"
	BySource  map[string]int `json:"by_source_topic"`
	NoContext int            `json:"without_context"`
	counts    *dlq.Counts
}

// Collect gathers the report from the cluster: groups described with kadm's Lag,
// completed by the backlog of input partitions the group has not committed yet (or of
// every input partition when the group does not exist), and dead letters counted with
// dlq.Stats.
func Collect(ctx context.Context, kc kafkaclient.Config, o Options) (*Report, error) {
	t, err := schemas.NewTopics(kc.TopicPrefix)
	if err != nil {
		return nil, err
	}
	stages, err := pipelineStages(t, o.Topology)
	if err != nil {
		return nil, err
	}
	for stage, group := range o.Groups {
		i := slices.IndexFunc(stages, func(s stageGroup) bool { return s.stage == stage })
		if i < 0 {
			names := make([]string, len(stages))
			for j, s := range stages {
				names[j] = s.stage
			}
			return nil, fmt.Errorf("--stage-group %s=%s: no stage %q (stages: %s)", stage, group, stage, strings.Join(names, ", "))
		}
		stages[i].group = group
	}

	cl, err := kc.NewClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	inputs := map[string][]string{} // stage → its input topics
	var inputTopics []string
	for _, s := range stages {
		for _, name := range all.Names() {
			if s.input.MatchString(name) {
				inputs[s.stage] = append(inputs[s.stage], name)
				if !slices.Contains(inputTopics, name) {
					inputTopics = append(inputTopics, name)
				}
			}
		}
	}
	var starts, ends kadm.ListedOffsets
	if len(inputTopics) > 0 {
		if starts, err = adm.ListStartOffsets(ctx, inputTopics...); err != nil {
			return nil, fmt.Errorf("start offsets: %w", err)
		}
		if ends, err = adm.ListEndOffsets(ctx, inputTopics...); err != nil {
			return nil, fmt.Errorf("end offsets: %w", err)
		}
	}
	groupNames := make([]string, len(stages))
	for i, s := range stages {
		groupNames[i] = s.group
	}
	lags, err := kafkaclient.WaitCoordinator(ctx, func() (kadm.DescribedGroupLags, error) { return adm.Lag(ctx, groupNames...) })
	if err != nil {
		return nil, fmt.Errorf("consumer groups: %w", err)
	}

	rep := &Report{TopicPrefix: t.Prefix}
	for _, s := range stages {
		rep.Stages = append(rep.Stages, stageStatusOf(s, lags[s.group], inputs[s.stage], starts, ends))
	}

	if o.Transactions {
		topics := kadm.TopicDetails{}
		for name, d := range all {
			if strings.HasPrefix(name, t.Prefix+".") {
				topics[name] = d
			}
		}
		txns, err := collectOpenTxns(ctx, kc, adm, topics, groupNames)
		switch {
		case err != nil:
			rep.TransactionCheckError = err.Error()
		case o.ResolveHanging:
			rep.OpenTransactions = txns
			if rep.ResolvedHanging, err = resolveHanging(ctx, adm, txns); err != nil {
				return nil, err
			}
		default:
			rep.OpenTransactions = txns
		}
	}

	if o.DeadLetters {
		c := dlq.NewCounts()
		if _, exists := all[t.DLQ()]; exists {
			if c, err = dlq.Stats(ctx, kc, t.DLQ(), dlq.Filter{}); err != nil {
				return nil, fmt.Errorf("dead letters: %w", err)
			}
		}
		rep.DeadLetters = &DeadLetterCounts{Topic: t.DLQ(), Total: c.Total, ByStage: c.ByStage, ByClass: c.ByClass,
			BySource: c.BySource, NoContext: c.NoContext, counts: c}
		for i := range rep.Stages {
			st := &rep.Stages[i]
			st.DeadLetters = c.ByStage[st.Stage]
			for key, n := range c.ByClass {
				if class, ok := strings.CutPrefix(key, st.Stage+"/"); ok {
					if st.DeadLettersByClass == nil {
						st.DeadLettersByClass = map[string]int{}
					}
					st.DeadLettersByClass[class] = n
				}
			}
		}
	}
	return rep, nil
}

// stageStatusOf puts one stage's group description and lag together with the backlog of
// the input partitions the group has no lag entry for.
func stageStatusOf(s stageGroup, l kadm.DescribedGroupLag, inputs []string, starts, ends kadm.ListedOffsets) Stage {
	st := Stage{Stage: s.stage, Group: s.group, State: l.State, Members: []Member{}, Topics: []TopicLag{}}
	switch err := l.Error(); {
	case errors.Is(err, kerr.GroupIDNotFound), err == nil && l.State == "Dead":
		// Kafka 4 answers GROUP_ID_NOT_FOUND for a group that does not exist; older
		// brokers (and kfake) describe it as Dead.
		st.State = "none"
	case err != nil:
		st.Error = err.Error()
	}
	for _, m := range l.Members {
		ms := Member{ClientID: m.ClientID, Host: m.ClientHost, MemberID: m.MemberID}
		if m.InstanceID != nil {
			ms.InstanceID = *m.InstanceID
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, at := range a.Topics {
				ms.Partitions += len(at.Partitions)
			}
		}
		st.Members = append(st.Members, ms)
	}
	slices.SortFunc(st.Members, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.ClientID, b.ClientID), cmp.Compare(a.Host, b.Host), cmp.Compare(a.MemberID, b.MemberID))
	})

	byTopic := map[string]*TopicLag{}
	add := func(topic string, p int32, lag int64, committed bool) {
		tl := byTopic[topic]
		if tl == nil {
			tl = &TopicLag{Topic: topic, MaxPartition: -1}
			byTopic[topic] = tl
		}
		tl.Partitions++
		tl.Lag += lag
		if lag > tl.MaxLag || tl.MaxPartition < 0 {
			tl.MaxLag, tl.MaxPartition = lag, p
		}
		if !committed {
			tl.Uncommitted++
		}
	}
	var lagErrs []string
	for _, ml := range l.Lag.Sorted() {
		if ml.Err != nil {
			lagErrs = append(lagErrs, fmt.Sprintf("%s/%d: %v", ml.Topic, ml.Partition, ml.Err))
			continue
		}
		add(ml.Topic, ml.Partition, ml.Lag, ml.Commit.At >= 0)
	}
	for _, topic := range inputs {
		for p, end := range ends[topic] {
			if _, known := l.Lag.Lookup(topic, p); known {
				continue
			}
			start, ok := starts.Lookup(topic, p)
			if end.Err != nil || !ok || start.Err != nil {
				lagErrs = append(lagErrs, fmt.Sprintf("%s/%d: offsets unavailable", topic, p))
				continue
			}
			add(topic, p, max(0, end.Offset-start.Offset), false)
		}
	}
	if len(lagErrs) > 0 {
		slices.Sort(lagErrs)
		st.Error = strings.Join(append(slices.DeleteFunc([]string{st.Error}, func(s string) bool { return s == "" }), lagErrs...), "; ")
	}
	for _, tl := range byTopic {
		st.Lag += tl.Lag
		st.Topics = append(st.Topics, *tl)
	}
	slices.SortFunc(st.Topics, func(a, b TopicLag) int { return cmp.Compare(a.Topic, b.Topic) })
	return st
}

// WriteTable prints the report for a person: one line per stage, then members, lag per
// topic and dead letters.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tGROUP\tSTATE\tMEMBERS\tLAG\tDEAD LETTERS")
	for _, s := range r.Stages {
		dead := "-"
		if r.DeadLetters != nil {
			dead = fmt.Sprint(s.DeadLetters)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", s.Stage, s.Group, s.State, len(s.Members), s.Lag, dead)
	}
	var members, topics int
	for _, s := range r.Stages {
		members += len(s.Members)
		topics += len(s.Topics)
	}
	if members > 0 {
		fmt.Fprintln(tw, "\nSTAGE\tMEMBER CLIENT ID\tHOST\tPARTITIONS\tINSTANCE ID")
		for _, s := range r.Stages {
			for _, m := range s.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.Stage, m.ClientID, m.Host, m.Partitions, cmp.Or(m.InstanceID, "-"))
			}
		}
	}
	if topics > 0 {
		fmt.Fprintln(tw, "\nSTAGE\tINPUT TOPIC\tPARTITIONS\tLAG\tMAX PARTITION LAG\tUNCOMMITTED PARTITIONS")
		for _, s := range r.Stages {
			for _, tl := range s.Topics {
				maxLag := fmt.Sprint(tl.MaxLag)
				if tl.MaxLag > 0 {
					maxLag += fmt.Sprintf(" (partition %d)", tl.MaxPartition)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\n", s.Stage, tl.Topic, tl.Partitions, tl.Lag, maxLag, tl.Uncommitted)
			}
		}
	}
	_ = tw.Flush()
	for _, s := range r.Stages {
		if s.Error != "" {
			fmt.Fprintf(w, "\n%s: %s\n", s.Stage, s.Error)
		}
	}
	writeOpenTxns(w, r.OpenTransactions, r.TransactionCheckError, r.ResolvedHanging)
	if r.DeadLetters != nil {
		fmt.Fprintln(w)
		r.DeadLetters.counts.WriteTable(w, r.DeadLetters.Topic)
	}
}
