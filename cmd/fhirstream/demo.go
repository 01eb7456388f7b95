package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/consumers/omop"
	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/deadletter"
	"github.com/fhirstream/fhirstream/internal/ehrsim"
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

type demoOptions struct {
	patients int
	seed     uint64
	bad      int
	from     string
	vocab    string
	out      string
	timeout  time.Duration
	obs      *observability
	deid     bool
	deidCfg  deidFlags
}

func newDemoCmd() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline in one process on an embedded Kafka and EHR, writing ./lake",
		Long: `demo runs everything in one process, with nothing to install beyond Go:

  - an embedded Kafka broker (franz-go's kfake, in memory),
  - the EHR simulator serving generated patients (or the NDJSON in --from) over the
    real Bulk Data protocol, with SMART Backend Services auth on,
  - the fetcher, authenticating with a freshly generated ES384 key,
  - every stage: validate, dedupe, omop, and the lake sinks, which commit Apache Iceberg
    tables (omop.<table>, fhir.<type>, bronze.<type>) to an embedded catalog under --out.

Generated data has --bad deliberately bad lines mixed in (malformed JSON, a resource in
the wrong file, an impossible date, a malformed reference, a Coding without system, a
patient OMOP cannot map, ...), so the dead-letter topic has something to show.

It runs one export end to end, waits until every stage has caught up, and prints a
summary: resources per type, dead letters by reason, the mapping stage's reconciliation
per type (records read = mapped + deleted + dropped by rule + dead letters), OMOP rows per
table, unmapped codes, the Iceberg tables and snapshots written, and how to query the lake
with pyiceberg or DuckDB. With --vocab it maps codes through an Athena vocabulary release.
A lake from an earlier demo in --out is replaced (its catalog and warehouse only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	cmd.Flags().IntVar(&o.patients, "patients", 100, "patients to generate (ignored with --from)")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "seed of the generated data")
	cmd.Flags().IntVar(&o.bad, "bad", 6, "deliberately bad lines to mix into the generated data (0: none; ignored with --from)")
	cmd.Flags().StringVar(&o.from, "from", "", "serve the NDJSON files in this directory instead of generated data")
	cmd.Flags().StringVar(&o.out, "out", "lake", "lake directory to write: <out>/catalog.db (the Iceberg catalog) and <out>/warehouse")
	cmd.Flags().StringVar(&o.vocab, "vocab", "", "directory of an OHDSI Athena vocabulary release (optional) (env FHIRSTREAM_VOCAB)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up after this long")
	cmd.Flags().BoolVar(&o.deid, "deid", false, "run the de-identification stage: omop and the silver lake read <prefix>.deid.<Type> (keys: --deid-keys or the environment, else fresh random ones for this run)")
	bindDeidFlags(cmd.Flags(), &o.deidCfg, "safe-harbor-dateshift")
	o.obs = metricsFlag(cmd, defaultMetricsAddr("run"))
	return cmd
}

func runDemo(ctx context.Context, w io.Writer, o *demoOptions) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	say := func(format string, args ...any) { fmt.Fprintf(w, "demo: "+format+"\n", args...) }
	if _, err := o.obs.start(ctx); err != nil {
		return err
	}

	// 1. An embedded broker, and the contract's topics on it.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		return fmt.Errorf("start embedded Kafka: %w", err)
	}
	defer cluster.Close()
	kc := kafkaclient.Defaults()
	kc.Brokers, kc.ClientID = cluster.ListenAddrs(), "fhirstream-demo"
	topics := schemas.MustTopics(kc.TopicPrefix)
	if err := createDemoTopics(ctx, kc, topics); err != nil {
		return err
	}
	say("embedded Kafka (kfake) at %s; topics created", strings.Join(kc.Brokers, ","))

	// 2. The EHR, with SMART auth on and a client registered with a fresh key.
	workDir, err := os.MkdirTemp("", "fhirstream-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workDir)
	ehrCfg := ehrsim.Config{Addr: "127.0.0.1:0", Auth: true, Log: logger, Dir: o.from}
	source := o.from
	var badLines []synth.DeadLetter
	if o.from == "" {
		// Generated into the work dir rather than by the simulator, so that the bad lines
		// mixed in are known and the summary can check each was dead-lettered.
		if o.patients < 0 || o.bad < 0 {
			return fmt.Errorf("--patients and --bad must not be negative")
		}
		ehrCfg.Dir = filepath.Join(workDir, "export")
		gen, err := synth.WriteDir(ctx, synth.Config{Patients: o.patients, Seed: o.seed, Bad: o.bad}, ehrCfg.Dir)
		if err != nil {
			return fmt.Errorf("generate the export: %w", err)
		}
		badLines = gen.Bad
		source = fmt.Sprintf("%d generated patients (%d resources, %d bad lines mixed in)", o.patients, gen.Total(), len(badLines))
	}
	ehr, err := ehrsim.New(ehrCfg)
	if err != nil {
		return fmt.Errorf("start EHR simulator: %w", err)
	}
	defer ehr.Close()
	keyFile, err := demoClientKey(ehr, workDir)
	if err != nil {
		return err
	}
	say("EHR simulator at %s serving %s, SMART Backend Services auth on", ehr.URL, source)

	// 3. Every stage, each its own consumer group.
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if replaced, err := replaceDemoLake(out); err != nil {
		return err
	} else if replaced {
		say("replaced the lake of an earlier demo in %s (its %s and %s/)", out, lakehouse.CatalogFile, lakehouse.WarehouseDir)
	}
	lake := lakehouse.Config{Out: out}
	var voc *vocab.Vocabulary
	if o.vocab != "" {
		var st vocab.LoadStats
		if voc, st, err = vocab.Load(o.vocab); err != nil {
			return fmt.Errorf("--vocab: %w", err)
		}
		say("vocabulary %s loaded: %d concepts, %d 'Maps to' in %s", o.vocab, st.Concepts, st.MapsTo, st.Duration.Round(time.Millisecond))
	}
	// The mapping stage's counters are process-wide: its reconciliation is what this run adds.
	omopBefore, err := omop.Reconcile(obs.Registry, topics)
	if err != nil {
		return err
	}
	pcfg := pipeline.Config{Kafka: kc, Lake: lake, Vocab: voc, SinkFlushInterval: time.Second, Logger: logger, Ready: o.obs.ready}
	clean := schemas.LayerUnique // the layer omop reads
	if o.deid {
		if pcfg.Deid, err = demoDeid(&o.deidCfg); err != nil {
			return err
		}
		clean = schemas.LayerDeid
		say("de-identification on (%s): omop and the silver lake read %s", o.deidCfg.config, topics.LayerTopics(clean).Name)
	}
	p, err := pipeline.Start(ctx, pcfg)
	if err != nil {
		return err
	}
	defer p.Stop() //nolint:errcheck // the explicit Stop below reports errors

	// 4. The export, end to end.
	sum, err := producer.Fetch(ctx, producer.Config{
		Kafka:       kc,
		Partitions:  3,
		Export:      bulk.Request{Base: ehr.URL},
		ClientID:    demoClientID,
		KeyFile:     keyFile,
		ManifestDir: filepath.Join(workDir, "manifests"),
		Log:         logger,
		Progress:    os.Stderr,
		ProgressTTY: obs.IsTerminal(os.Stderr),
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	say("export fetched: %d resources, %.1f MB in %s", sum.Resources(), float64(sum.Bytes)/1e6, sum.Duration.Round(time.Millisecond))

	// 5. Wait for every stage to catch up, then stop them (the sinks flush).
	if err := p.WaitDrained(ctx); err != nil {
		return err
	}
	if err := p.Stop(); err != nil {
		return err
	}
	counts, err := countDemoTopics(ctx, kc, topics, clean)
	if err != nil {
		return err
	}
	rec, err := omop.Reconcile(obs.Registry, topics)
	if err != nil {
		return err
	}
	rec = rec.Minus(omopBefore)
	tables, err := demoTables(ctx, lake)
	if err != nil {
		return err
	}
	printDemoSummary(w, demoReport{fetch: sum, counts: counts, pipeline: p, out: out, took: time.Since(start), bad: badLines, omop: rec, tables: tables})
	if !sum.OK() {
		return fmt.Errorf("fetch reconciliation failed: %s", strings.Join(sum.Mismatches, "; "))
	}
	if msg := checkOMOPReconciliation(rec, counts); msg != "" {
		return fmt.Errorf("OMOP reconciliation FAILED: %s", msg)
	}
	return nil
}

const demoClientID = "fhirstream-demo"

// demoDeid is the deid stage's configuration: the rules of --deid-config, and the keys of
// --deid-keys or the environment, or, given none, fresh random ones that last this run
// (the demo's pseudonyms then mean nothing outside it).
func demoDeid(d *deidFlags) (*pipeline.DeidConfig, error) {
	rules, keys, err := d.load()
	if err != nil {
		return nil, err
	}
	for _, k := range []*[]byte{&keys.CryptoHash, &keys.DateShift, &keys.Encrypt} {
		if len(*k) == 0 {
			*k = make([]byte, 32)
			if _, err := rand.Read(*k); err != nil {
				return nil, err
			}
		}
	}
	if _, err := deid.New(rules, keys); err != nil {
		return nil, err
	}
	return &pipeline.DeidConfig{Rules: rules, Keys: keys}, nil
}

// demoClientKey generates an ES384 key, registers its public JWKS with the EHR and
// writes the private JWK where the fetcher reads it (mode 0600).
func demoClientKey(ehr *ehrsim.Server, dir string) (string, error) {
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
	if err := ehr.RegisterClient(demoClientID, pubJSON); err != nil {
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

func createDemoTopics(ctx context.Context, kc kafkaclient.Config, topics schemas.Topics) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	specs := kafkaclient.ContractTopics(topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: 1, MaxMessageBytes: kc.MaxRecordBytes})
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
