// Package pipeline runs every stage of fhirstream in one process against one Kafka
// cluster: validate, dedupe, omop, and the two Parquet sinks. `fhirstream demo` runs it on
// an embedded broker, `fhirstream run` against a real cluster for small sites, and the end
// to end tests and `fhirstream bench` use it too. Each stage is still its own consumer
// group, exactly as when run one per process.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/schemas"
)

// Config is what the pipeline runs with.
type Config struct {
	Kafka kafkaclient.Config
	// Out is the lake root (a directory or an object-store URL).
	Out string
	// Vocab is an optional Athena vocabulary for the OMOP stage.
	Vocab *vocab.Vocabulary
	// SinkFlushInterval bounds how long rows wait before a Parquet file is written.
	// Zero keeps the sink's default.
	SinkFlushInterval time.Duration
	Logger            *slog.Logger
	Ready             *obs.Readiness
}

// Pipeline is a running set of stages.
type Pipeline struct {
	cfg    Config
	omop   *omop.Processor
	sinks  map[string]*sink.Sink
	groups []string // in data-flow order

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
	p := &Pipeline{cfg: cfg, omop: mapper, sinks: map[string]*sink.Sink{}, ctx: ctx, cancel: cancel}

	defs := []runtime.Definition{
		validate.Definition(topics, validate.Options{}),
		dedupe.Definition(topics),
		omop.Definition(mapper),
	}
	opts := runtime.Options{Logger: cfg.Logger, Ready: cfg.Ready}
	for _, def := range defs {
		p.groups = append(p.groups, def.Group)
		p.goRun(def.Name, func() error { return runtime.Run(ctx, cfg.Kafka, def, opts) })
	}
	for _, layer := range []string{sink.LayerBronze, sink.LayerOMOP} {
		s, err := sink.New(ctx, cfg.Kafka, sink.Config{Layer: layer, Out: cfg.Out, Logger: cfg.Logger,
			FlushInterval: cfg.SinkFlushInterval})
		if err != nil {
			cancel()
			p.wg.Wait()
			return nil, fmt.Errorf("sink %s: %w", layer, err)
		}
		p.sinks[layer] = s
		p.groups = append(p.groups, s.Group())
		p.goRun("sink-"+layer, func() error { return s.Run(ctx) })
	}
	return p, nil
}

func (p *Pipeline) goRun(name string, run func() error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := run(); err != nil && !errors.Is(err, context.Canceled) {
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

// SinkStats are the statistics of the sink of a layer (sink.LayerOMOP, sink.LayerBronze).
func (p *Pipeline) SinkStats(layer string) sink.Stats { return p.sinks[layer].Stats() }

// WaitDrained returns once every stage has consumed and committed everything in its
// input topics, checking the groups in data-flow order until all report zero lag twice
// in a row (a stage may still be writing what the next one will read), or when ctx ends.
func (p *Pipeline) WaitDrained(ctx context.Context) error {
	cl, err := p.cfg.Kafka.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	quiet := 0
	for {
		if err := p.Err(); err != nil {
			return err
		}
		lag, err := totalLag(ctx, adm, p.groups)
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

// totalLag sums the lag of groups; a group that has not committed yet, or a member
// still joining, counts as not drained.
func totalLag(ctx context.Context, adm *kadm.Client, groups []string) (int64, error) {
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
		total += l.Lag.Total()
	}
	return total, nil
}

// Stop ends every stage (sinks flush what they hold) and waits for them.
func (p *Pipeline) Stop() error {
	p.cancel()
	p.wg.Wait()
	return p.Err()
}
