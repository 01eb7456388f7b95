// Package pipeline runs every stage of fhirstream in one process against one Kafka
// cluster: validate, dedupe, omop, and the three lake sinks. `fhirstream demo` runs it on
// an embedded broker, `fhirstream run` against a real cluster for small sites, and the end
// to end tests and `fhirstream bench` use it too. Each stage is still its own consumer
// group, exactly as when run one per process.
//
// Every goroutine of a stage runs under the pprof label ProfileLabel=<stage name>
// (goroutines inherit the labels of the goroutine that starts them, so this covers the
// stage's Kafka clients too): one CPU profile of the process splits per stage with
// `go tool pprof -tagfocus stage=omop`. Progress reports what each stage has committed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// Config is what the pipeline runs with.
type Config struct {
	Kafka kafkaclient.Config
	// Lake is the Iceberg catalog the sinks commit to (Lake.Out is the lake directory of
	// the embedded catalog).
	Lake lakehouse.Config
	// Vocab is an optional Athena vocabulary for the OMOP stage.
	Vocab *vocab.Vocabulary
	// Deid, when set, runs the de-identification stage with these rules and keys, and
	// omop and the silver sink read its topics (the topology's Deidentify variant).
	Deid *DeidConfig
	// SinkFlushInterval bounds how long rows wait before a sink commits them. Zero keeps
	// the sink's default.
	SinkFlushInterval time.Duration
	// TopicRefresh is how often every stage and sink refreshes topic metadata, which is
	// how soon it consumes a topic created after it started (a new resource type's). Zero
	// keeps their defaults (30 s and 10 s); an embedded cluster can afford a second.
	TopicRefresh time.Duration
	// MeasureBytes counts the bytes each stage reads and emits, for Progress. It wraps
	// every stage's processor in a counter: one atomic add per record.
	MeasureBytes bool
	Logger       *slog.Logger
	Ready        *obs.Readiness
}

// DeidConfig is the de-identification stage's configuration.
type DeidConfig struct {
	Rules *deid.Config
	Keys  deid.Keys
}

// ProfileLabel is the pprof label key every stage goroutine runs under; its value is
// the stage name (Stage* constants).
const ProfileLabel = "stage"

// Stage names, as used in logs, metrics, dead-letter headers and ProfileLabel.
const (
	StageValidate   = validate.Name
	StageDedupe     = dedupe.Name
	StageDeid       = schemas.NodeDeid
	StageOMOP       = omop.StageName
	StageSinkBronze = schemas.NodeSinkBronze
	StageSinkSilver = schemas.NodeSinkSilver
	StageSinkOMOP   = schemas.NodeSinkOMOP
)

// Stages lists the names of the stages a pipeline with these options runs, in data-flow
// order (the order of Progress and Groups): the topology's consumer nodes.
func Stages(o schemas.TopologyOptions) []string {
	var names []string
	for _, n := range schemas.MustTopics(schemas.DefaultPrefix).Topology(o).Consumers() {
		names = append(names, n.Name)
	}
	return names
}

// Pipeline is a running set of stages.
type Pipeline struct {
	cfg    Config
	topics schemas.Topics
	omop   *omop.Processor
	sinks  map[string]*sink.Sink
	groups []string                    // in data-flow order
	stages []string                    // names, in the order of groups
	inputs []*regexp.Regexp            // input topics, in the order of groups
	meters map[string]*stage.ByteMeter // by stage name, when Config.MeasureBytes

	ctx    context.Context // ends when Stop is called or any stage fails
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
}

// Start launches every stage and returns at once; Stop ends them.
func Start(ctx context.Context, cfg Config) (*Pipeline, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = obs.NewReadiness()
	}
	topics, err := schemas.NewTopics(cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	mapper, err := omop.New(omop.Config{Topics: topics, Vocab: cfg.Vocab})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Pipeline{cfg: cfg, topics: topics, omop: mapper, sinks: map[string]*sink.Sink{},
		meters: map[string]*stage.ByteMeter{}, ctx: ctx, cancel: cancel}

	topo := topics.Topology(schemas.TopologyOptions{Deidentify: cfg.Deid != nil})
	defs := []stage.Definition{
		validate.Definition(topo, validate.Options{}),
		dedupe.Definition(topo),
	}
	if cfg.Deid != nil {
		defs = append(defs, deid.Definition(topo, cfg.Deid.Rules, cfg.Deid.Keys))
	}
	defs = append(defs, omop.Definition(mapper, topo))
	for _, def := range defs {
		opts := runtime.Options{Logger: cfg.Logger, Ready: cfg.Ready, TopicRefresh: cfg.TopicRefresh}
		if cfg.MeasureBytes {
			m := &stage.ByteMeter{}
			p.meters[def.Name()] = m
			opts.Middleware = []stage.Middleware{m.Middleware()}
		}
		p.groups = append(p.groups, def.Node.Group)
		p.stages = append(p.stages, def.Name())
		p.inputs = append(p.inputs, regexp.MustCompile(def.Node.InputPattern()))
		p.goRun(def.Name(), func(ctx context.Context) error { return runtime.Run(ctx, cfg.Kafka, def, opts) })
	}
	for _, layer := range sink.Layers {
		name := sink.StageName(layer)
		scfg := sink.Config{Layer: layer, Catalog: cfg.Lake, Logger: cfg.Logger, FlushInterval: cfg.SinkFlushInterval,
			TopicRefresh: cfg.TopicRefresh, Deidentify: cfg.Deid != nil}
		var s *sink.Sink
		// Labelled too: whatever New starts (catalog clients) belongs to the sink.
		pprof.Do(ctx, pprof.Labels(ProfileLabel, name), func(ctx context.Context) {
			s, err = sink.New(ctx, cfg.Kafka, scfg)
		})
		if err != nil {
			cancel()
			p.wg.Wait()
			return nil, fmt.Errorf("sink %s: %w", layer, err)
		}
		p.sinks[layer] = s
		p.groups = append(p.groups, s.Group())
		p.stages = append(p.stages, name)
		p.inputs = append(p.inputs, regexp.MustCompile(topo.MustNode(name).InputPattern()))
		p.goRun(name, s.Run)
	}
	return p, nil
}

// goRun runs one stage in its own goroutine under the pprof label of its name.
func (p *Pipeline) goRun(name string, run func(context.Context) error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var err error
		pprof.Do(p.ctx, pprof.Labels(ProfileLabel, name), func(ctx context.Context) { err = run(ctx) })
		if err != nil && !errors.Is(err, context.Canceled) {
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Errorf("stage %s: %w", name, err))
			p.mu.Unlock()
			p.cancel() // one stage failing stops the others: the pipeline is all or nothing here
		}
	}()
}

// Err returns the first stage failure, if any stage has failed.
func (p *Pipeline) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// Done is closed when the pipeline stops: Stop was called, the parent context ended,
// or a stage failed (Err says which).
func (p *Pipeline) Done() <-chan struct{} { return p.ctx.Done() }

// Groups are the consumer groups of the stages, in data-flow order.
func (p *Pipeline) Groups() []string { return p.groups }

// OMOPSummary is what the mapper has done so far.
func (p *Pipeline) OMOPSummary() omop.Summary { return p.omop.Summary() }

// SinkStats are the statistics of the sink of a layer (sink.LayerOMOP, LayerSilver, LayerBronze).
func (p *Pipeline) SinkStats(layer string) sink.Stats { return p.sinks[layer].Stats() }

// WaitDrained returns once every stage has consumed and committed everything in its
// input topics (WaitGroupsDrained over the pipeline's groups), or when ctx ends or a
// stage fails.
func (p *Pipeline) WaitDrained(ctx context.Context) error {
	return WaitGroupsDrained(ctx, p.cfg.Kafka, p.groups, p.inputs, p.Err)
}

// WaitGroupsDrained returns once every group has consumed and committed everything in
// the topics matching its input pattern (inputs[i] is groups[i]'s), checking the groups
// in data-flow order until all report zero lag twice in a row (a stage may still be
// writing what the next one will read), or when ctx ends or failed returns an error. A
// topic matching a group's input that the group has not committed on yet (one created
// after the group last refreshed its metadata) counts as lag too, so a late topic is
// never taken for a drained one. The groups may run in this process or in others.
func WaitGroupsDrained(ctx context.Context, kc kafkaclient.Config, groups []string, inputs []*regexp.Regexp, failed func() error) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	quiet := 0
	for {
		if err := failed(); err != nil {
			return err
		}
		lag, err := totalLag(ctx, cl, adm, groups, inputs)
		switch {
		case err != nil:
			quiet = 0
		case lag == 0:
			quiet++
			if quiet >= 2 {
				return nil
			}
		default:
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the stages to catch up: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// totalLag sums the lag of the groups; a group that has not committed yet, or a member
// still joining, counts as not drained. Only when the committed partitions show no lag
// does it list the cluster's topics (a large request on a shared cluster) to add the
// partitions of input topics a group has never committed on. It asks the brokers for
// the topics directly: kadm's ListTopics answers from the client's metadata cache, up to
// MetadataMinAge (5 s) old, and would miss a topic a stage created moments ago (dedupe
// creates fhir.unique.<Type> when a type first appears), which the next stage has not
// read yet.
func totalLag(ctx context.Context, cl *kgo.Client, adm *kadm.Client, groups []string, inputs []*regexp.Regexp) (int64, error) {
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, g := range groups {
		l, ok := lags[g]
		if !ok || l.Error() != nil {
			return 0, fmt.Errorf("group %s: no lag yet", g)
		}
		if len(l.Lag) == 0 {
			return 0, fmt.Errorf("group %s: nothing committed yet", g)
		}
		// A partition whose lag kadm could not compute (its end offset not listed yet,
		// as for a topic created moments ago) has lag -1, which Total leaves out: it is
		// not drained.
		for _, ps := range l.Lag {
			for _, pl := range ps {
				if pl.Err != nil {
					return 0, fmt.Errorf("group %s: lag of %s/%d: %w", g, pl.Topic, pl.Partition, pl.Err)
				}
			}
		}
		total += l.Lag.Total()
	}
	if total > 0 {
		return total, nil
	}
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl) // nil Topics: all of them
	if err != nil {
		return 0, fmt.Errorf("list topics: %w", err)
	}
	var names []string // only these groups' inputs
	for _, t := range meta.Topics {
		if t.Topic == nil {
			continue
		}
		name := *t.Topic
		for _, re := range inputs {
			if re.MatchString(name) {
				names = append(names, name)
				break
			}
		}
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return 0, err
	}
	var missed error
	ends.Each(func(end kadm.ListedOffset) {
		for i, g := range groups {
			if !inputs[i].MatchString(end.Topic) {
				continue
			}
			if end.Err != nil {
				missed = fmt.Errorf("end offset of %s/%d: %w", end.Topic, end.Partition, end.Err)
				continue
			}
			if _, ok := lags[g].Lag.Lookup(end.Topic, end.Partition); !ok {
				total += end.Offset // never committed on: all of it is lag
			}
		}
	})
	return total, missed
}

// Stop ends every stage (sinks flush what they hold) and waits for them.
func (p *Pipeline) Stop() error {
	p.cancel()
	p.wg.Wait()
	return p.Err()
}
