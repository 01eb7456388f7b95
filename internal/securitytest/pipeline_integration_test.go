package securitytest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/dedupe"
	"github.com/fhirstream/fhirstream/consumers/dlq"
	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/runtime"
	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/consumers/validate"
	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/securitytest"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/schemas"
)

func TestMain(m *testing.M) {
	code := m.Run()
	securitytest.StopShared()
	os.Exit(code)
}

// The commands of the pipeline run here, each under its own principal.
var pipelineCommands = []string{acl.CommandTopicsCreate, schemas.NodeFetch, schemas.NodeValidate,
	schemas.NodeDedupe, schemas.NodeOMOP, schemas.NodeSinkBronze, schemas.NodeSinkSilver, schemas.NodeSinkOMOP, schemas.NodeDLQReplay}

// TestIntegrationSecuredPipeline runs the whole pipeline on a broker that requires
// SASL_SSL (SCRAM-SHA-512) or mutual TLS and enforces ACLs: topics create, the fetcher
// (from the EHR simulator), every stage and both sinks, each under its own principal
// holding only the grants acl.Derive reads off the topology. The lake must equal the
// export. Then, one grant at a time, it revokes a grant of each command and checks that
// the command fails, naming the refused resource and operation.
func TestIntegrationSecuredPipeline(t *testing.T) {
	b := securitytest.Shared(t)
	for _, mode := range []securitytest.Mode{securitytest.SASLSSL, securitytest.MTLS} {
		t.Run(string(mode), func(t *testing.T) { securedPipeline(t, b, mode) })
	}
}

// run is the secured pipeline of one test: its topics, principals and export.
type run struct {
	t      *testing.T
	b      *securitytest.Broker
	adm    *kadm.Client // the super user's
	prefix string
	topics schemas.Topics
	topo   schemas.Topology
	cfg    map[string]kafkaclient.Config // each command's principal
	grants map[string][]acl.Grant
}

func securedPipeline(t *testing.T, b *securitytest.Broker, mode securitytest.Mode) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	r := &run{t: t, b: b, adm: b.Admin(t), prefix: "sec" + securitytest.Suffix()}
	r.topics = schemas.MustTopics(r.prefix)
	r.topo = r.topics.Topology(schemas.TopologyOptions{})
	r.cfg, r.grants = map[string]kafkaclient.Config{}, map[string][]acl.Grant{}
	for _, command := range pipelineCommands {
		c, err := b.NewPrincipal(ctx, r.adm, mode, r.prefix+"-"+command)
		if err != nil {
			t.Fatal(err)
		}
		c.TopicPrefix = r.prefix
		gs, err := acl.Derive(r.topo, command, acl.Options{})
		if err != nil {
			t.Fatal(err)
		}
		securitytest.Grant(t, r.adm, c, gs...)
		r.cfg[command], r.grants[command] = c, gs
	}

	// topics create, first without Create on the raw topics.
	rawCreate := r.grant(acl.CommandTopicsCreate, acl.Topic, r.topics.Raw(""), acl.Create)
	r.expectDenied(ctx, acl.CommandTopicsCreate, rawCreate, "Create on topic "+r.topics.Raw(""), r.topicsCreate)
	if err := r.topicsCreate(ctx); err != nil {
		t.Fatalf("topics create as %s: %v", securitytest.Principal(r.cfg[acl.CommandTopicsCreate]), err)
	}

	dir := t.TempDir()
	input := synth.Config{Patients: 3, Seed: 18, Bad: 9}
	counts, err := synth.WriteDir(ctx, input, filepath.Join(dir, "export"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ehrsim.New(ehrsim.Config{Dir: filepath.Join(dir, "export")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fetch := func(ctx context.Context) error {
		_, err := producer.Fetch(ctx, producer.Config{Kafka: r.cfg[schemas.NodeFetch], Partitions: 3,
			Export: bulk.Request{Base: srv.URL}, ManifestDir: t.TempDir(), MinPoll: 5 * time.Millisecond,
			Backoff: bulk.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}})
		return err
	}
	if err := fetch(ctx); err != nil {
		t.Fatalf("fetch: %v", r.explain(schemas.NodeFetch, err))
	}

	lake := filepath.Join(dir, "lake")
	p := r.start(ctx, lake, "")
	for _, name := range []string{schemas.NodeValidate, schemas.NodeDedupe, schemas.NodeOMOP, schemas.NodeSinkBronze, schemas.NodeSinkSilver, schemas.NodeSinkOMOP} {
		r.waitCaughtUp(p, name)
	}
	p.stop()
	if err := p.err(); err != nil {
		t.Fatalf("a stage failed under its least-privilege principal: %v", r.explain("", err))
	}
	lakeMatchesInput(t, r, lake, counts)

	// dlq replay sends every dead letter back (and makes its parked topic).
	replay := func(ctx context.Context) error {
		res, err := dlq.Replay(ctx, r.cfg[schemas.NodeDLQReplay], r.topics, dlq.ReplayOptions{Logger: slog.New(slog.DiscardHandler)})
		if err == nil && res.Replayed+res.Parked != len(counts.Bad) {
			t.Errorf("dlq replay: %d replayed, %d parked; there are %d dead letters", res.Replayed, res.Parked, len(counts.Bad))
		}
		return err
	}
	replayGroup := r.topo.MustNode(schemas.NodeDLQReplay).Group
	r.expectDenied(ctx, schemas.NodeDLQReplay, r.grant(schemas.NodeDLQReplay, acl.Group, replayGroup, acl.Read), "Read on group prefix "+replayGroup, replay)
	if err := replay(ctx); err != nil {
		t.Fatalf("dlq replay: %v", r.explain(schemas.NodeDLQReplay, err))
	}

	// Each command without one of its grants fails, naming what it lacked. Over mTLS
	// one case shows the certificate's principal in the message; the rest is the same
	// code under another authentication.
	stageGroup := func(name string) acl.Grant { return r.grant(name, acl.Group, r.topo.MustNode(name).Group, acl.Read) }
	removals := []struct {
		command string
		revoke  acl.Grant
		want    string
	}{
		{schemas.NodeValidate, stageGroup(schemas.NodeValidate), "Read on group " + r.topo.MustNode(schemas.NodeValidate).Group},
		{schemas.NodeValidate, r.grant(schemas.NodeValidate, acl.Topic, r.topics.DLQ(), acl.Write), "on topic " + r.topics.DLQ()},
		{schemas.NodeDedupe, r.grant(schemas.NodeDedupe, acl.Topic, r.topics.Valid(""), acl.Read), "Read on topic " + r.topics.Valid("")},
		{schemas.NodeOMOP, stageGroup(schemas.NodeOMOP), "Read on group " + r.topo.MustNode(schemas.NodeOMOP).Group},
		{schemas.NodeSinkBronze, stageGroup(schemas.NodeSinkBronze), "Read on group " + r.topo.MustNode(schemas.NodeSinkBronze).Group},
		{schemas.NodeSinkSilver, r.grant(schemas.NodeSinkSilver, acl.Topic, r.topics.Unique(""), acl.Read), "Read on topic " + r.topics.Unique("")},
		{schemas.NodeSinkOMOP, r.grant(schemas.NodeSinkOMOP, acl.Topic, r.topics.OMOP(""), acl.Read), "Read on topic " + r.topics.OMOP("")},
		{schemas.NodeFetch, r.grant(schemas.NodeFetch, acl.TransactionalID, r.topo.MustNode(schemas.NodeFetch).TransactionalIDPrefix, acl.Write),
			"Write on transactional-id prefix " + r.topo.MustNode(schemas.NodeFetch).TransactionalIDPrefix},
	}
	if mode == securitytest.MTLS {
		removals = removals[:1]
	}
	for _, c := range removals {
		run := func(ctx context.Context) error {
			if c.command == schemas.NodeFetch {
				return fetch(ctx)
			}
			p := r.start(ctx, filepath.Join(dir, "lake-denied"), c.command)
			<-p.ctx.Done() // the command failed, or ctx ended
			p.stop()
			return p.err()
		}
		r.expectDenied(ctx, c.command, c.revoke, c.want, run)
	}

	if mode == securitytest.MTLS {
		return
	}
	// The record path of a stage: new input, refused first for the transactional id,
	// then for the output topics, then processed once both are granted back.
	again := r.readRaw(ctx, 5)
	produceAsAdmin(t, r.b.AdminConfig(securitytest.SASLSSL), again)
	validateAlone := func(ctx context.Context) error {
		p := r.start(ctx, filepath.Join(dir, "lake-denied"), schemas.NodeValidate)
		<-p.ctx.Done() // the stage failed, or ctx ended
		p.stop()
		return p.err()
	}
	validateNode := r.topo.MustNode(schemas.NodeValidate)
	r.expectDenied(ctx, schemas.NodeValidate, r.grant(schemas.NodeValidate, acl.TransactionalID, validateNode.TransactionalIDPrefix, acl.Write),
		"Write on transactional-id "+validateNode.TransactionalIDPrefix, validateAlone)
	r.expectDenied(ctx, schemas.NodeValidate, r.grant(schemas.NodeValidate, acl.Topic, r.topics.Valid(""), acl.Write),
		"Write on topic prefix "+r.topics.Valid(""), validateAlone)
	p = r.start(ctx, filepath.Join(dir, "lake-denied"), schemas.NodeValidate)
	r.waitCaughtUp(p, schemas.NodeValidate)
	p.stop()
	if err := p.err(); err != nil {
		t.Fatalf("validate with its grants back: %v", err)
	}
}

// grant is command's derived grant on the named resource for op; the test fails if the
// derivation has none (the removal checks only remove grants that are documented).
func (r *run) grant(command string, rt acl.ResourceType, name string, op acl.Operation) acl.Grant {
	r.t.Helper()
	for _, g := range r.grants[command] {
		if g.Resource == rt && g.Name == name && g.Operation == op {
			return g
		}
	}
	r.t.Fatalf("%s has no grant %s on %s %s: %v", command, op, rt, name, r.grants[command])
	return acl.Grant{}
}

// expectDenied revokes g from command's principal, runs fn (which must fail within a
// minute, not hang or retry), checks that the explained error names want, and grants
// g back.
func (r *run) expectDenied(ctx context.Context, command string, g acl.Grant, want string, fn func(context.Context) error) {
	r.t.Helper()
	c := r.cfg[command]
	securitytest.Revoke(r.t, r.adm, c, g)
	defer func() {
		securitytest.Grant(r.t, r.adm, c, g)
		waitACL(r.t, r.adm, securitytest.Principal(c), g, true)
	}()
	// ACL changes reach the authorizer through the metadata log; a run that starts
	// before this one has arrived would still be allowed.
	waitACL(r.t, r.adm, securitytest.Principal(c), g, false)
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := fn(fctx)
	if fctx.Err() != nil {
		r.t.Fatalf("%s without %s: still running after a minute (err %v); want a failure naming the grant", command, g, err)
	}
	if err == nil {
		r.t.Fatalf("%s without %s: succeeded", command, g)
	}
	msg := r.explain(command, err).Error()
	if !strings.Contains(msg, securitytest.Principal(c)) {
		r.t.Errorf("%s without %s: error does not name the principal %s:\n%s", command, g, securitytest.Principal(c), msg)
	}
	if !strings.Contains(msg, want) {
		r.t.Errorf("%s without %s: error does not name %q:\n%s", command, g, want, msg)
	} else {
		r.t.Logf("%s without %s:\n%s", command, g, msg)
	}
}

func (r *run) explain(command string, err error) error {
	return acl.Explain(err, r.cfg[command], r.topo, command)
}

// waitACL polls until the broker lists g for principal (present) or no longer does.
func waitACL(t *testing.T, adm *kadm.Client, principal string, g acl.Grant, present bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := adm.DescribeACLs(context.Background(), kadm.NewACLs().Allow(principal).AnyResource().
			ResourcePatternType(kadm.ACLPatternAny).Operations(kadm.OpAny).AllowHosts())
		if err == nil {
			found := false
			for _, rr := range res {
				for _, d := range rr.Described {
					if strings.EqualFold(d.Operation.String(), string(g.Operation)) && d.Name == g.Name {
						found = true
					}
				}
			}
			if found == present {
				// Listed by the controller is not yet applied by every authorizer;
				// a single node applies its own metadata right after.
				time.Sleep(200 * time.Millisecond)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ACL %s of %s: still %v after 30 s", g, principal, !present)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *run) topicsCreate(ctx context.Context) error {
	c := r.cfg[acl.CommandTopicsCreate]
	cl, err := c.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	specs := kafkaclient.ContractTopics(r.topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: -1})
	_, err = kafkaclient.EnsureTopics(ctx, kadm.NewClient(cl), specs)
	return err
}

// stages is the stages and sinks running, each under its own principal.
type stages struct {
	ctx    context.Context
	cancel context.CancelFunc
	errs   chan error
	n      int
	failed []error
}

// start runs every stage and sink ("") or only the one called only.
func (r *run) start(ctx context.Context, lake, only string) *stages {
	r.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	s := &stages{ctx: ctx, cancel: cancel, errs: make(chan error, 8)}
	logger := slog.New(slog.DiscardHandler)
	goRun := func(name string, fn func(context.Context) error) {
		s.n++
		go func() {
			err := fn(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("%s: %w", name, err)
				cancel()
			} else {
				err = nil
			}
			s.errs <- err
		}()
	}
	mapper, err := omop.New(omop.Config{Topics: r.topics})
	if err != nil {
		r.t.Fatal(err)
	}
	stageDefs := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{schemas.NodeValidate, func(ctx context.Context) error {
			return runtime.Run(ctx, r.cfg[schemas.NodeValidate], validate.Definition(r.topo, validate.Options{}), runtime.Options{Logger: logger})
		}},
		{schemas.NodeDedupe, func(ctx context.Context) error {
			return runtime.Run(ctx, r.cfg[schemas.NodeDedupe], dedupe.Definition(r.topo), runtime.Options{Logger: logger})
		}},
		{schemas.NodeOMOP, func(ctx context.Context) error {
			return runtime.Run(ctx, r.cfg[schemas.NodeOMOP], omop.Definition(mapper, r.topo), runtime.Options{Logger: logger})
		}},
	}
	for _, d := range stageDefs {
		if only == "" || only == d.name {
			goRun(d.name, d.run)
		}
	}
	for _, name := range []string{schemas.NodeSinkBronze, schemas.NodeSinkSilver, schemas.NodeSinkOMOP} {
		if only != "" && only != name {
			continue
		}
		layer := strings.TrimPrefix(name, "sink-")
		sk, err := sink.New(ctx, r.cfg[name], sink.Config{Layer: layer, Catalog: lakehouse.Config{Out: lake}, Logger: logger, FlushInterval: 100 * time.Millisecond})
		if err != nil {
			r.t.Fatalf("%s: %v", name, r.explain(name, err))
		}
		goRun(name, sk.Run)
	}
	return s
}

// stop ends every stage (sinks commit what they hold) and waits for them.
func (s *stages) stop() {
	s.cancel()
	for ; s.n > 0; s.n-- {
		if err := <-s.errs; err != nil {
			s.failed = append(s.failed, err)
		}
	}
}

func (s *stages) err() error { return errors.Join(s.failed...) }

// waitCaughtUp waits until the group of node name has committed every record of its
// inputs, as the super user sees them; a stage that stops first fails the test.
func (r *run) waitCaughtUp(s *stages, name string) {
	r.t.Helper()
	n := r.topo.MustNode(name)
	all, err := r.adm.ListTopics(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	re := regexp.MustCompile(n.InputPattern())
	var inputs []string
	for _, t := range all.Names() {
		if re.MatchString(t) {
			inputs = append(inputs, t)
		}
	}
	ends := testkafka.EndOffsets(r.t, r.adm, inputs...)
	stopped := make(chan error, 1)
	go func() {
		<-s.ctx.Done()
		stopped <- errors.New("the stages stopped")
	}()
	testkafka.WaitCommitted(r.t, r.adm, n.Group, ends, stopped)
}

// readRaw reads up to n committed raw records, to send again.
func (r *run) readRaw(ctx context.Context, n int) []*kgo.Record {
	r.t.Helper()
	var out []*kgo.Record
	c := r.b.AdminConfig(securitytest.SASLSSL)
	c.TopicPrefix = r.prefix
	err := kafkaclient.ReadCommitted(ctx, c, []string{r.topics.Raw("Patient")}, func(rec *kgo.Record) {
		if len(out) < n {
			out = append(out, &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers})
		}
	})
	if err != nil || len(out) == 0 {
		r.t.Fatalf("read raw Patient records: %d, %v", len(out), err)
	}
	return out
}

func produceAsAdmin(t *testing.T, c kafkaclient.Config, recs []*kgo.Record) {
	t.Helper()
	cl, err := c.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
