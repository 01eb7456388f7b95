// Package demo runs the whole pipeline in one process, as 'fhirstream demo' does: an
// embedded Kafka (franz-go's kfake), the EHR simulator serving generated or given NDJSON
// with SMART auth on, the fetcher, every stage and the lake sinks; then it checks what
// arrived against the input and prints a summary. Nothing to install beyond Go.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
	"github.com/fhirstream/fhirstream/internal/fakebroker"
	"github.com/fhirstream/fhirstream/internal/gold"
	"github.com/fhirstream/fhirstream/internal/goldlake"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/internal/pipeline"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/vocab"
	"github.com/fhirstream/fhirstream/producer"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/smart"
	"github.com/fhirstream/fhirstream/schemas"
)

// Options say what the demo runs on. Zero fields take the defaults stated on each.
type Options struct {
	// Patients to generate (default 0: none; the command's default is 100), with Seed
	// and Bad deliberately bad lines mixed in. Ignored with From.
	Patients int
	Seed     uint64
	Bad      int
	// From serves the NDJSON files of this directory instead of generated data.
	From string
	// Vocab is an Athena vocabulary release directory ("" for none).
	Vocab string
	// Out is the lake directory: <Out>/catalog.db and <Out>/warehouse.
	Out string
	// Timeout bounds the whole run. Default 15 minutes.
	Timeout time.Duration
	// Deid, when set, runs the de-identification stage (see RandomKeys).
	Deid *pipeline.DeidConfig
	// Logger gets the components' logs. Default: discarded.
	Logger *slog.Logger
	// Ready gets the stages' readiness checks (the command's /readyz).
	Ready *obs.Readiness
	// Progress gets the fetcher's progress lines; nil for none.
	Progress io.Writer
}

// Run runs the demo and writes its summary to w. It fails when the export, the mapping
// stage's reconciliation or the dead letters do not add up.
func Run(ctx context.Context, w io.Writer, o Options) error {
	start := time.Now()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	r := &run{o: o, w: w}
	workDir, err := os.MkdirTemp("", "fhirstream-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)

	// 1. An embedded broker, and the contract's topics on it.
	cluster, err := r.startBroker(ctx)
	if err != nil {
		return err
	}
	defer cluster.Close()
	// 2. The EHR, with SMART auth on and a client registered with a fresh key.
	ehr, keyFile, err := r.startEHR(ctx, workDir)
	if err != nil {
		return err
	}
	defer ehr.Close()
	// 3. Every stage, each its own consumer group.
	p, err := r.startStages(ctx)
	if err != nil {
		return err
	}
	defer p.Stop() //nolint:errcheck // the explicit Stop below reports errors

	// 4. The export, end to end.
	sum, err := producer.Fetch(ctx, producer.Config{
		Kafka:       r.kc,
		Partitions:  3,
		Export:      bulk.Request{Base: ehr.URL},
		ClientID:    ClientID,
		KeyFile:     keyFile,
		ManifestDir: filepath.Join(workDir, "manifests"),
		Log:         o.Logger,
		Progress:    o.Progress,
		ProgressTTY: isTerminal(o.Progress),
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	r.say("export fetched: %d resources, %.1f MB in %s", sum.Resources(), float64(sum.Bytes)/1e6, sum.Duration.Round(time.Millisecond))

	// 5. Wait for every stage to catch up, then stop them (the sinks flush).
	if err := p.WaitDrained(ctx); err != nil {
		return err
	}
	if err := p.Stop(); err != nil {
		return err
	}
	// 6. The gold CDM (namespace cdm), as `fhirstream gold refresh` makes it.
	goldReport, err := goldlake.RefreshLake(ctx, lakehouse.Config{Out: r.out}, goldlake.Options{VocabularyDir: o.Vocab,
		Source: gold.SourceInfo{Name: "fhirstream demo EHR", Abbreviation: "demo", Holder: "fhirstream demo", ReleaseDate: sum.TransactionTime}})
	if err != nil {
		return fmt.Errorf("gold refresh FAILED: %w", err)
	}
	r.gold = goldReport
	return r.report(ctx, p, sum, time.Since(start))
}

// run is one demo: its options, and what its steps set up for the later ones.
type run struct {
	o          Options
	w          io.Writer
	kc         kafkaclient.Config
	topics     schemas.Topics
	badLines   []synth.DeadLetter // the bad lines mixed into generated data
	out        string             // the lake directory, absolute
	clean      string             // the layer omop reads: unique, or deid
	omopBefore omop.Reconciliation
	gold       *goldlake.Report // the gold refresh at the end
}

func (r *run) say(format string, args ...any) { fmt.Fprintf(r.w, "demo: "+format+"\n", args...) }

func (r *run) startBroker(ctx context.Context) (*kfake.Cluster, error) {
	cluster, err := fakebroker.New(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		return nil, fmt.Errorf("start embedded Kafka: %w", err)
	}
	r.kc = kafkaclient.Defaults()
	r.kc.Brokers, r.kc.ClientID = cluster.ListenAddrs(), "fhirstream-demo"
	r.topics = schemas.MustTopics(r.kc.TopicPrefix)
	if err := createDemoTopics(ctx, r.kc, r.topics, r.o.Deid != nil); err != nil {
		cluster.Close()
		return nil, err
	}
	r.say("embedded Kafka (kfake) at %s; topics created", strings.Join(r.kc.Brokers, ","))
	return cluster, nil
}

// startEHR serves the export, generating it first unless Options.From names one, and
// registers a client key with it; it returns the key file.
func (r *run) startEHR(ctx context.Context, workDir string) (*ehrsim.Server, string, error) {
	o := r.o
	ehrCfg := ehrsim.Config{Addr: "127.0.0.1:0", Auth: true, Log: o.Logger, Dir: o.From}
	source := o.From
	if o.From == "" {
		// Generated into the work dir rather than by the simulator, so that the bad lines
		// mixed in are known and the summary can check each was dead-lettered.
		if o.Patients < 0 || o.Bad < 0 {
			return nil, "", fmt.Errorf("--patients and --bad must not be negative")
		}
		ehrCfg.Dir = filepath.Join(workDir, "export")
		gen, err := synth.WriteDir(ctx, synth.Config{Patients: o.Patients, Seed: o.Seed, Bad: o.Bad}, ehrCfg.Dir)
		if err != nil {
			return nil, "", fmt.Errorf("generate the export: %w", err)
		}
		r.badLines = gen.Bad
		source = fmt.Sprintf("%d generated patients (%d resources, %d bad lines mixed in)", o.Patients, gen.Total(), len(r.badLines))
	}
	ehr, err := ehrsim.New(ehrCfg)
	if err != nil {
		return nil, "", fmt.Errorf("start EHR simulator: %w", err)
	}
	keyFile, err := ClientKey(ehr, workDir)
	if err != nil {
		ehr.Close()
		return nil, "", err
	}
	r.say("EHR simulator at %s serving %s, SMART Backend Services auth on", ehr.URL, source)
	return ehr, keyFile, nil
}

// startStages replaces an earlier demo's lake and starts every stage.
func (r *run) startStages(ctx context.Context) (*pipeline.Pipeline, error) {
	o := r.o
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	r.out = out
	if replaced, err := replaceDemoLake(out); err != nil {
		return nil, err
	} else if replaced {
		r.say("replaced the lake of an earlier demo in %s (its %s and %s/)", out, lakehouse.CatalogFile, lakehouse.WarehouseDir)
	}
	var voc *vocab.Vocabulary
	if o.Vocab != "" {
		var st vocab.LoadStats
		if voc, st, err = vocab.Load(o.Vocab); err != nil {
			return nil, fmt.Errorf("--vocab: %w", err)
		}
		r.say("vocabulary %s loaded: %d concepts, %d 'Maps to' in %s", o.Vocab, st.Concepts, st.MapsTo, st.Duration.Round(time.Millisecond))
	}
	// The mapping stage's counters are process-wide: its reconciliation is what this run adds.
	if r.omopBefore, err = omop.Reconcile(obs.Registry, r.topics); err != nil {
		return nil, err
	}
	// A second's metadata refresh: the export's types outside the topics created up front
	// (Synthea's Claim, Questionnaire, ...) are consumed a second after they appear, not
	// half a minute per layer.
	pcfg := pipeline.Config{Kafka: r.kc, Lake: lakehouse.Config{Out: out}, Vocab: voc, SinkFlushInterval: time.Second, TopicRefresh: time.Second,
		Deid: o.Deid, Logger: o.Logger, Ready: o.Ready}
	r.clean = schemas.LayerUnique
	if o.Deid != nil {
		r.clean = schemas.LayerDeid
		r.say("de-identification on: omop and the silver lake read %s", r.topics.LayerTopics(r.clean).Name)
	}
	return pipeline.Start(ctx, pcfg)
}

// report counts what arrived, from the topics and the lake, prints the summary and says
// whether everything adds up.
func (r *run) report(ctx context.Context, p *pipeline.Pipeline, sum producer.Summary, took time.Duration) error {
	counts, err := countDemoTopics(ctx, r.kc, r.topics, r.clean)
	if err != nil {
		return err
	}
	rec, err := omop.Reconcile(obs.Registry, r.topics)
	if err != nil {
		return err
	}
	rec = rec.Minus(r.omopBefore)
	tables, err := demoTables(ctx, lakehouse.Config{Out: r.out})
	if err != nil {
		return err
	}
	printDemoSummary(r.w, demoReport{fetch: sum, counts: counts, pipeline: p, out: r.out, took: took, bad: r.badLines, omop: rec, tables: tables, gold: r.gold})
	if !sum.OK() {
		return fmt.Errorf("fetch reconciliation failed: %s", strings.Join(sum.Mismatches, "; "))
	}
	if msg := checkOMOPReconciliation(rec, counts); msg != "" {
		return fmt.Errorf("OMOP reconciliation FAILED: %s", msg)
	}
	return nil
}

// ClientID is the SMART client the demo registers with its EHR.
const ClientID = "fhirstream-demo"

// ClientKey generates an ES384 key, registers its public JWKS with the EHR and
// writes the private JWK where the fetcher reads it (mode 0600).
func ClientKey(ehr *ehrsim.Server, dir string) (string, error) {
	key, err := smart.GenerateKey("ES384", "demo-"+time.Now().UTC().Format("20060102T150405"))
	if err != nil {
		return "", err
	}
	pub, err := key.PublicJWKS()
	if err != nil {
		return "", err
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return "", err
	}
	if err := ehr.RegisterClient(ClientID, pubJSON); err != nil {
		return "", fmt.Errorf("register demo client: %w", err)
	}
	priv, err := key.PrivateJWK()
	if err != nil {
		return "", err
	}
	privJSON, err := json.Marshal(priv)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "client-key.jwk.json")
	return path, os.WriteFile(path, privJSON, 0o600)
}

func createDemoTopics(ctx context.Context, kc kafkaclient.Config, topics schemas.Topics, deidentify bool) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	specs := kafkaclient.ContractTopics(topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: 1, MaxMessageBytes: kc.MaxRecordBytes, Deidentify: deidentify})
	_, err = kafkaclient.EnsureTopics(ctx, kadm.NewClient(cl), specs)
	return err
}

// demoCounts are counted from the topics themselves, independently of the stages.
type demoCounts struct {
	valid, unique map[string]int64 // by resource type
	clean         map[string]int64 // the layer omop reads (unique, or deid): by resource type
	cleanLayer    string
	dead          map[string]int64 // "<stage>: <class>"
	omop          map[string]int64 // by table
}

func countDemoTopics(ctx context.Context, kc kafkaclient.Config, topics schemas.Topics, cleanLayer string) (demoCounts, error) {
	c := demoCounts{valid: map[string]int64{}, unique: map[string]int64{}, dead: map[string]int64{}, omop: map[string]int64{},
		clean: map[string]int64{}, cleanLayer: cleanLayer}
	byType := func(m map[string]int64) func(*kgo.Record) {
		return func(r *kgo.Record) {
			if _, rt, ok := topics.ParseLayerTopic(r.Topic); ok {
				m[rt]++
			}
		}
	}
	steps := []struct {
		pattern string
		each    func(*kgo.Record)
	}{
		{topics.LayerPattern(schemas.LayerValid), byType(c.valid)},
		{topics.LayerPattern(schemas.LayerUnique), byType(c.unique)},
		{topics.LayerPattern(cleanLayer), byType(c.clean)},
		{"^" + strings.ReplaceAll(topics.DLQ(), ".", `\.`) + "$", func(r *kgo.Record) {
			dc, _ := deadletter.Parse(r.Headers)
			c.dead[dc.Stage+": "+dc.Class]++
		}},
		{topics.OMOPPattern(), func(r *kgo.Record) {
			if table, ok := topics.ParseOMOPTopic(r.Topic); ok && r.Value != nil {
				c.omop[table]++
			}
		}},
	}
	for _, s := range steps {
		if err := pipeline.ReadTopics(ctx, kc, s.pattern, s.each); err != nil {
			return c, err
		}
	}
	return c, nil
}

type demoReport struct {
	fetch    producer.Summary
	counts   demoCounts
	pipeline *pipeline.Pipeline
	out      string
	took     time.Duration
	bad      []synth.DeadLetter // the bad lines mixed into generated data
	omop     omop.Reconciliation
	tables   []demoTable
	gold     *goldlake.Report
}

func printDemoSummary(w io.Writer, r demoReport) {
	fmt.Fprintf(w, "\n== fhirstream demo: done in %s ==\n\n", r.took.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE TYPE\tFETCHED\tVALID\tUNIQUE\tIN fhir.<type>\tDEAD LETTERS (fetch)\t")
	silver := r.pipeline.SinkStats(sink.LayerSilver)
	var tf, tv, tu, ts, td int64
	for _, t := range r.fetch.ByType() {
		inLake := silver.Rows[lakehouse.NamespaceFHIR+"."+lakehouse.TableName(t.Type)]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", t.Type, t.Published, r.counts.valid[t.Type], r.counts.unique[t.Type], inLake, t.Dead)
		tf, tv, tu, ts, td = tf+t.Published, tv+r.counts.valid[t.Type], tu+r.counts.unique[t.Type], ts+inLake, td+t.Dead
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", tf, tv, tu, ts, td)
	_ = tw.Flush()
	fmt.Fprintf(w, "duplicates and stale versions dropped by dedupe: %d\n\n", tv-tu)

	fmt.Fprintln(w, "dead letters by stage and reason:")
	printCounts(w, r.counts.dead, "  (none)")
	if len(r.bad) > 0 {
		fmt.Fprintf(w, "  %s\n", checkDeadLetters(r.bad, r.counts.dead))
	}

	fmt.Fprintf(w, "\nOMOP reconciliation, per resource type (records on %s.%s.<Type> read by omop):\n", schemas.DefaultPrefix, r.counts.cleanLayer)
	r.omop.Write(w, "  ")
	if msg := checkOMOPReconciliation(r.omop, r.counts); msg != "" {
		fmt.Fprintf(w, "  FAILED against the topics: %s\n", msg)
	} else {
		fmt.Fprintf(w, "  = the records on the %s topics and omop's dead letters on the dead-letter topic, counted there\n", r.counts.cleanLayer)
	}

	omopSum := r.pipeline.OMOPSummary()
	sinkStats := r.pipeline.SinkStats(sink.LayerOMOP)
	fmt.Fprintln(w, "\nOMOP rows per table (on the topic omop.<table> / in the Iceberg table omop.<table>):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	tables := make([]string, 0, len(r.counts.omop))
	for t := range r.counts.omop {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t\n", t, r.counts.omop[t], sinkStats.Rows[lakehouse.NamespaceOMOP+"."+t])
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nunmapped codes (written with concept_id 0, code kept in *_source_value):")
	if len(omopSum.Unmapped) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, u := range omopSum.Unmapped {
		fmt.Fprintf(w, "  %-12s → %-22s %d\n", u.Vocabulary, u.Table, u.Count)
	}
	if r.gold != nil {
		fmt.Fprintln(w, "\nThe gold CDM (what OHDSI tools read; docs/lakehouse.md):")
		r.gold.Write(w)
	}
	printDemoLake(w, r)
}

// checkOMOPReconciliation checks the mapping stage's reconciliation against counts taken
// from the topics themselves: it balances for every type, its records read are the
// records on the unique topics, and its dead letters are those on the dead-letter topic.
// It returns "" when all hold, else what differs.
func checkOMOPReconciliation(rec omop.Reconciliation, c demoCounts) string {
	var diffs []string
	if !rec.Balanced() {
		diffs = append(diffs, "records read without an outcome")
	}
	types := map[string]bool{}
	for t := range c.clean {
		types[t] = true
	}
	for _, tc := range rec {
		types[tc.ResourceType] = true
	}
	var dead, onTopic int64
	for _, t := range slices.Sorted(maps.Keys(types)) {
		tc := rec.Type(t)
		if tc.Read != c.clean[t] {
			diffs = append(diffs, fmt.Sprintf("%s: omop read %d, the %s topic holds %d", t, tc.Read, c.cleanLayer, c.clean[t]))
		}
		for _, n := range tc.DeadLetters {
			dead += n
		}
	}
	for k, n := range c.dead {
		if strings.HasPrefix(k, omop.StageName+": ") {
			onTopic += n
		}
	}
	if dead != onTopic {
		diffs = append(diffs, fmt.Sprintf("omop counted %d dead letters, the dead-letter topic holds %d", dead, onTopic))
	}
	return strings.Join(diffs, "; ")
}

// checkDeadLetters compares the dead letters by stage and class with the bad lines mixed
// into the generated data: each must have been rejected, by the stage and for the reason
// it was written for, and nothing else.
func checkDeadLetters(bad []synth.DeadLetter, dead map[string]int64) string {
	want := map[string]int64{}
	for _, d := range bad {
		want[d.Stage+": "+d.Class]++
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(dead)) {
		if dead[k] != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s %d, expected %d", k, dead[k], want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := dead[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s 0, expected %d", k, want[k]))
		}
	}
	if len(diffs) > 0 {
		return "UNEXPECTED, compared with the bad lines mixed in: " + strings.Join(diffs, "; ")
	}
	return fmt.Sprintf("= the %d bad lines mixed into the generated data, each rejected as intended", len(bad))
}

func printCounts(w io.Writer, m map[string]int64, none string) {
	if len(m) == 0 {
		fmt.Fprintln(w, none)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-40s %d\n", k, m[k])
	}
}

// RandomKeys fills the keys the configuration did not get with fresh random ones that
// last this run: the demo's pseudonyms then mean nothing outside it.
func RandomKeys(keys *deid.Keys) error {
	for _, k := range []*[]byte{&keys.CryptoHash, &keys.DateShift, &keys.Encrypt} {
		if len(*k) == 0 {
			*k = make([]byte, 32)
			if _, err := rand.Read(*k); err != nil {
				return err
			}
		}
	}
	return nil
}

// isTerminal reports whether w is an interactive terminal (progress redraws in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && obs.IsTerminal(f)
}
