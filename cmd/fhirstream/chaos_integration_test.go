package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/internal/synth"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// Consumer groups of the chaos run, and the layer each reads.
const (
	chaosValidate   = "chaos-validate"
	chaosDedupe     = "chaos-dedupe"
	chaosOMOP       = "chaos-omop"
	chaosSinkOMOP   = "chaos-sink-omop"
	chaosSinkBronze = "chaos-sink-bronze"
)

var chaosInputs = map[string]string{
	chaosValidate: schemas.LayerRaw, chaosDedupe: schemas.LayerValid, chaosOMOP: schemas.LayerUnique,
	chaosSinkBronze: schemas.LayerUnique, chaosSinkOMOP: "omop",
}

// The fetcher reads lines up to chaosMaxLine bytes; the export has one bad line longer.
const (
	chaosMaxLine  = 128 << 10
	chaosLongLine = 256 << 10
)

// TestIntegrationChaos runs the pipeline as separate processes of the binary (serve-ehr,
// fetch, consume validate|dedupe|omop|sink-omop|sink-bronze) over a generated export with
// deliberately bad lines mixed in, SIGKILLs the fetcher, one random stage and one random
// sink at random points of their progress and restarts each with the same command, and on
// a real broker also restarts the broker once. Then the lake must equal the input exactly
// and the dead letters must be exactly the bad lines.
//
// Kills are placed by progress (a fraction of the records a process must get through,
// drawn from the seed), not by time, so they land mid-stream on a fast or slow machine.
// FHIRSTREAM_CHAOS_SEED repeats a run; FHIRSTREAM_CHAOS_PATIENTS changes its size
// (default 1,000 on a real broker, 150 on kfake, where the test process runs the broker);
// FHIRSTREAM_CHAOS_LOGS names a directory to keep each process's log in.
func TestIntegrationChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos test builds the binary and runs the whole pipeline")
	}
	began := time.Now()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FHIRSTREAM_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("FHIRSTREAM_CHAOS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("chaos seed %d (FHIRSTREAM_CHAOS_SEED=%d repeats this run's choices)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	realBroker := testkafka.Real()
	patients := 150
	if realBroker {
		patients = 1000
	}
	if v := os.Getenv("FHIRSTREAM_CHAOS_PATIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FHIRSTREAM_CHAOS_PATIENTS=%q: want a positive number", v)
		}
		patients = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	work := t.TempDir()
	logs := work
	if d := os.Getenv("FHIRSTREAM_CHAOS_LOGS"); d != "" {
		logs = d
		if err := os.MkdirAll(logs, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	waitBinary := buildChaosBinary(t)

	// The input: a generated export with two of each class of bad line mixed in.
	export := filepath.Join(work, "export")
	gen := synth.Config{Patients: patients, Seed: seed % 1000, LongLineBytes: chaosLongLine}
	gen.Bad = 2 * synth.BadKinds(gen)
	counts, err := synth.WriteDir(ctx, gen, export)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("export: %d patients, %d resources, %.1f MB, %d bad lines", patients, counts.Total(), float64(counts.TotalBytes())/1e6, len(counts.Bad))

	// The broker: a dedicated real one this test may restart, never the shared one of
	// FHIRSTREAM_TEST_BROKERS; or kfake in this process.
	var broker *chaosBroker
	var cluster *testkafka.Cluster
	if realBroker {
		t0 := time.Now()
		broker = startChaosBroker(t, work)
		cluster = &testkafka.Cluster{Brokers: []string{broker.addr}, Prefix: "chaos"}
		t.Logf("dedicated Kafka broker at %s, ready in %s", broker.addr, time.Since(t0).Round(time.Millisecond))
	} else {
		cluster = testkafka.New(t)
	}
	topics := schemas.MustTopics(cluster.Prefix)

	// What the run must produce, from the input files alone, worked out while the
	// pipeline runs (it maps every resource, which takes a while under -race).
	type expectation struct {
		x    *chaosExpect
		err  error
		took time.Duration
	}
	expected := make(chan expectation, 1)
	go func() {
		t0 := time.Now()
		x, err := chaosExpectFromInput(export, topics, counts.Bad)
		expected <- expectation{x, err, time.Since(t0)}
	}()
	var want *chaosExpect
	awaitExpected := func(block bool) bool {
		if want != nil {
			return true
		}
		var e expectation
		if block {
			e = <-expected
		} else {
			select {
			case e = <-expected:
			default:
				return false
			}
		}
		if e.err != nil {
			t.Fatalf("working out the expected output: %v", e.err)
		}
		want = e.x
		t.Logf("expected output worked out from the input in %s: %d raw records, %d OMOP rows", e.took.Round(time.Millisecond), want.raw, want.omopRows)
		return true
	}
	// The records the fetcher publishes, and those reaching fhir.unique, follow from the
	// counts; they place the kills.
	rawTotal, uniqueTotal := counts.Total(), counts.Total()
	for _, d := range counts.Bad {
		if d.Key != "" {
			rawTotal++
		}
		if d.ReachesUnique() {
			uniqueTotal++
		}
	}

	t0 := time.Now()
	bin := waitBinary()
	t.Logf("%s: binary built (waited %s)", time.Since(began).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	kafkaArgs := []string{"--brokers", strings.Join(cluster.Brokers, ","), "--topic-prefix", cluster.Prefix,
		"--log-format", "json", "--metrics-addr", "off"}
	withKafka := func(args ...string) []string { return append(args, kafkaArgs...) }
	runChaosCommand(t, bin, "topics", "create", "--brokers", strings.Join(cluster.Brokers, ","),
		"--topic-prefix", cluster.Prefix, "--partitions", "3", "--replication-factor", "1")
	keyFile := filepath.Join(work, "client.jwk")
	jwks := runChaosCommand(t, bin, "keys", "generate", "--alg", "ES384", "--kid", "chaos", "--out", keyFile)
	jwksFile := filepath.Join(work, "client.jwks")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	ehr := newChaosProc(t, logs, "serve-ehr", bin, "serve-ehr", "--dir", export, "--auth", "--client", "chaos="+jwksFile,
		"--retry-after", "100ms")
	ehrURL := startChaosEHR(t, ehr)

	// The pipeline, one process per piece. Small batches and transactions, so that a kill
	// lands between many commits, not before the first or after the last.
	lake := filepath.Join(work, "lake")
	stageArgs := func(stage, group string) []string {
		return withKafka("consume", stage, "--group", group, "--instance-id", "chaos", "--max-poll-records", "500")
	}
	sinkArgs := func(layer, group string) []string {
		return withKafka("consume", "sink-"+layer, "--out", lake, "--group", group, "--instance-id", "chaos",
			"--flush-rows", "3000", "--flush-interval", "500ms")
	}
	procs := map[string]*chaosProc{
		"fetch": newChaosProc(t, logs, "fetch", bin, withKafka("fetch", ehrURL, "--smart-client-id", "chaos", "--key", keyFile,
			"--max-line-bytes", strconv.Itoa(chaosMaxLine), "--manifest-dir", filepath.Join(work, "manifests"),
			"--partitions", "3", "--min-poll", "100ms", "--commit-bytes", strconv.Itoa(2<<20), "--commit-interval", "500ms")...),
		"validate":    newChaosProc(t, logs, "validate", bin, stageArgs("validate", chaosValidate)...),
		"dedupe":      newChaosProc(t, logs, "dedupe", bin, stageArgs("dedupe", chaosDedupe)...),
		"omop":        newChaosProc(t, logs, "omop", bin, stageArgs("omop", chaosOMOP)...),
		"sink-omop":   newChaosProc(t, logs, "sink-omop", bin, sinkArgs(sink.LayerOMOP, chaosSinkOMOP)...),
		"sink-bronze": newChaosProc(t, logs, "sink-bronze", bin, sinkArgs(sink.LayerBronze, chaosSinkBronze)...),
	}
	groupOf := map[string]string{"validate": chaosValidate, "dedupe": chaosDedupe, "omop": chaosOMOP,
		"sink-omop": chaosSinkOMOP, "sink-bronze": chaosSinkBronze}
	// How many input records each piece must get through, to place its kill.
	inputOf := map[string]int64{"fetch": rawTotal, "validate": rawTotal, "dedupe": uniqueTotal,
		"omop": uniqueTotal, "sink-bronze": uniqueTotal}
	totalOf := func(name string) int64 {
		if name == "sink-omop" { // known once the expectation is
			return want.omopRows
		}
		return inputOf[name]
	}
	for _, name := range []string{"validate", "dedupe", "omop", "sink-omop", "sink-bronze", "fetch"} {
		procs[name].start(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range chaosSortedKeys(procs) {
				t.Logf("%s log tail (%d runs):\n%s", name, procs[name].runs, procs[name].tail(15))
			}
		}
	})
	t.Logf("%s: every piece started", time.Since(began).Round(time.Millisecond))

	// The chaos: which pieces die, and how far into their input.
	victims := []string{"fetch", []string{"validate", "dedupe", "omop"}[rng.IntN(3)], []string{"sink-omop", "sink-bronze"}[rng.IntN(2)]}
	type event struct {
		name string
		at   float64 // fraction of the piece's input done
		done bool
	}
	var events []*event
	for _, v := range victims {
		events = append(events, &event{name: v, at: 0.1 + 0.6*rng.Float64()})
	}
	if realBroker {
		events = append(events, &event{name: "broker", at: 0.2 + 0.5*rng.Float64()})
	}
	for _, e := range events {
		t.Logf("plan: kill %s at %.0f%% of its input", e.name, 100*e.at)
	}

	adm := cluster.Admin(t)
	var allTopics []string
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range listed.Names() {
		if strings.HasPrefix(name, cluster.Prefix+".") {
			allTopics = append(allTopics, name)
		}
	}
	layerOf := func(topic string) string {
		if _, ok := topics.ParseOMOPTopic(topic); ok {
			return "omop"
		}
		layer, _, _ := topics.ParseLayerTopic(topic)
		return layer
	}

	// progress reads end offsets and committed offsets. done[name] is how far a piece is
	// (offsets committed, or for the fetcher published); drained is true when every group
	// has committed up to the end of every partition of its input. behind keeps a few of
	// the partitions that are not, for the report if the run never finishes.
	var behind []string
	progress := func() (done map[string]int64, drained bool, err error) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(pctx, allTopics...)
		if err != nil {
			return nil, false, err
		}
		done = map[string]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if layerOf(o.Topic) == schemas.LayerRaw && o.Offset > 0 {
				done["fetch"] += o.Offset
			}
		})
		drained = true
		behind = behind[:0]
		for name, group := range groupOf {
			offs, err := adm.FetchOffsets(pctx, group)
			if err != nil {
				return nil, false, err
			}
			ends.Each(func(o kadm.ListedOffset) {
				if layerOf(o.Topic) != chaosInputs[group] || o.Offset <= 0 {
					return
				}
				c, ok := offs.Lookup(o.Topic, o.Partition)
				if ok && c.At > 0 {
					done[name] += c.At
				}
				if !ok || c.At != o.Offset {
					drained = false
					if len(behind) < 12 {
						behind = append(behind, fmt.Sprintf("%s %s/%d committed %d of %d", group, o.Topic, o.Partition, c.At, o.Offset))
					}
				}
			})
		}
		return done, drained, nil
	}

	var lastDone map[string]int64
	var progressTotal int64
	progressAt, resolves := time.Now(), 0
	fetcherDone := false
	brokerRestarted := false
	unexpected := 0
	quiet := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Where the groups that are behind are stuck: their goroutines.
			stuck := map[string]bool{}
			for _, b := range behind {
				stuck[strings.Fields(b)[0]] = true
			}
			for _, name := range chaosSortedKeys(procs) {
				if g := groupOf[name]; g != "" && stuck[g] {
					t.Logf("%s goroutines running fhirstream code:\n%s", name, procs[name].stacks(10*time.Second))
				}
			}
			t.Fatalf("the pipeline did not finish within the deadline (fetcher done: %v); last progress %v; behind:\n  %s",
				fetcherDone, lastDone, strings.Join(behind, "\n  "))
		case <-tick.C:
		}
		// A piece that exits by itself: the fetcher when the export is published; any
		// other exit is a failure, unless the broker restart caused it, in which case it is
		// restarted as a supervisor would.
		for name, p := range procs {
			exited, err := p.exited()
			if !exited {
				continue
			}
			if name == "fetch" && err == nil {
				if !fetcherDone {
					t.Logf("%s: fetcher finished (run %d)", time.Since(began).Round(time.Millisecond), p.runs)
				}
				fetcherDone = true
				continue
			}
			unexpected++
			if !brokerRestarted || unexpected > 10 {
				t.Fatalf("%s exited by itself: %v; log:\n%s", name, err, p.tail(30))
			}
			t.Logf("%s exited after the broker restart (%v), restarting it; log:\n%s", name, err, p.tail(5))
			p.start(t)
		}
		done, drained, err := progress()
		if err != nil {
			quiet = 0
			continue // the broker is restarting, or a group is not yet known
		}
		lastDone = done
		// Kafka 4.4 can lose transaction markers when the broker restarts, crash or not
		// (docs/architecture.md, "Graceful shutdown and open transactions"): a group then
		// waits for ever on a hanging transaction, with no error. After a minute without
		// progress, do what the README tells an operator to do and count it in the log.
		var total int64
		for _, n := range done {
			total += n
		}
		if total != progressTotal {
			progressTotal, progressAt = total, time.Now()
		}
		if brokerRestarted && time.Since(progressAt) > time.Minute && resolves < 3 {
			resolves++
			var stageGroups []string
			for _, name := range chaosSortedKeys(groupOf) {
				stageGroups = append(stageGroups, name+"="+groupOf[name])
			}
			out := runChaosCommand(t, bin, "status", "--brokers", strings.Join(cluster.Brokers, ","), "--topic-prefix", cluster.Prefix,
				"--dead-letters=false", "--resolve-hanging", "--stage-group", strings.Join(stageGroups, ","))
			t.Logf("%s: no progress for a minute after the broker restart; 'fhirstream status --resolve-hanging' said:\n%s",
				time.Since(began).Round(time.Millisecond), out)
			progressAt = time.Now()
		}
		pending := false
		for _, e := range events {
			if e.done {
				continue
			}
			pending = true
			switch {
			case e.name == "broker":
				if float64(done["validate"]) < e.at*float64(rawTotal) {
					continue
				}
				t.Logf("%s: restarting the broker (validate at %d of %d)", time.Since(began).Round(time.Millisecond), done["validate"], rawTotal)
				t0 := time.Now()
				broker.restart(t)
				brokerRestarted = true
				t.Logf("broker back after %s", time.Since(t0).Round(time.Millisecond))
			case e.name == "sink-omop" && !awaitExpected(false):
				continue
			case float64(done[e.name]) >= e.at*float64(totalOf(e.name)):
				p := procs[e.name]
				if !p.running() {
					t.Logf("%s had already finished when its kill was due", e.name)
				} else {
					p.kill(t)
					total := totalOf(e.name)
					t.Logf("%s: killed %s at %d of %d input records (%.0f%%), restarting it", time.Since(began).Round(time.Millisecond),
						e.name, done[e.name], total, 100*float64(done[e.name])/float64(max(total, 1)))
					p.start(t)
				}
			default:
				continue
			}
			e.done = true
		}
		if fetcherDone && !pending && drained {
			quiet++
		} else {
			quiet = 0
		}
		if quiet >= 2 {
			break
		}
	}
	t.Logf("%s: every stage caught up; stopping them", time.Since(began).Round(time.Millisecond))
	for _, name := range []string{"validate", "dedupe", "omop", "sink-omop", "sink-bronze"} {
		procs[name].stop(t, 30*time.Second)
	}
	ehr.stop(t, 10*time.Second)
	pipelineDone := time.Since(began)
	awaitExpected(true)

	// 1. The fetcher published every line it had to exactly once, across its kill.
	var rawTopics []string
	for _, tp := range allTopics {
		if layerOf(tp) == schemas.LayerRaw {
			rawTopics = append(rawTopics, tp)
		}
	}
	gotRaw := chaosCountRaw(ctx, t, cluster, rawTopics)
	wantRaw := map[string]int{}
	for typ, lines := range want.rawLines {
		for n := range lines {
			wantRaw[fmt.Sprintf("%s:%d", typ, n)] = 1
		}
	}
	gotRawFlat := map[string]int{}
	for typ, lines := range gotRaw {
		for n, c := range lines {
			gotRawFlat[fmt.Sprintf("%s:%d", typ, n)] = c
		}
	}
	if d := chaosDiff(wantRaw, gotRawFlat, 10); len(d) > 0 {
		t.Errorf("raw topics: lines published not exactly once each:\n  %s", strings.Join(d, "\n  "))
	}

	// 2. The dead letters are exactly the bad lines, each from the stage and with the
	// class it was written for.
	if d := chaosDiff(want.dead, chaosDeadLetters(ctx, t, cluster, topics.DLQ()), 20); len(d) > 0 {
		t.Errorf("dead letters differ from the bad lines mixed in:\n  %s", strings.Join(d, "\n  "))
	}

	lk, err := lakehouse.Open(ctx, lakehouse.Config{Out: lake})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	// 3. The bronze lake holds every resource that passed validation once: its ids, and
	// its source lines.
	for _, typ := range chaosSortedKeys(want.unique) {
		bl, err := lakehouse.BronzeLayout(typ)
		if err != nil {
			t.Fatal(err)
		}
		ids, rows := chaosLakeStrings(t, lk, bl, lakehouse.ColID)
		wantIDs := map[string]int{}
		for id := range want.unique[typ] {
			wantIDs[id] = 1
		}
		if d := chaosDiff(wantIDs, ids, 5); len(d) > 0 {
			t.Errorf("bronze %s: %d rows, %d distinct ids, want %d once each:\n  %s", typ, rows, len(ids), len(wantIDs), strings.Join(d, "\n  "))
		}
	}

	// 4. The OMOP lake: per table, the rows of each source resource that the mapper gives
	// for the input, each once (distinct row ids).
	omopRows := map[string]int{}
	for _, table := range schemas.OMOPTables() {
		ol, err := lakehouse.OMOPLayout(table)
		if err != nil {
			t.Fatal(err)
		}
		keys, rows := chaosLakeStrings(t, lk, ol, schemas.ColFHIRKey)
		omopRows[table] = rows
		wantKeys := want.omopKeys[table]
		if wantKeys == nil {
			wantKeys = map[string]int{}
		}
		if d := chaosDiff(wantKeys, keys, 5); len(d) > 0 {
			t.Errorf("omop %s: %d rows differ from the mapped input by source resource:\n  %s", table, rows, strings.Join(d, "\n  "))
		}
		tm, err := schemas.OMOPTable(table)
		if err != nil {
			t.Fatal(err)
		}
		if ids := chaosLakeDistinctInt64(t, lk, ol, tm.Columns[0].Name); ids != rows {
			t.Errorf("omop %s: %d rows but %d distinct %s", table, rows, ids, tm.Columns[0].Name)
		}
	}
	if int64(omopRows["person"]) != want.patients {
		t.Errorf("person: %d rows, want one per good Patient of the input, %d", omopRows["person"], want.patients)
	}

	// 5. pyiceberg reads the same lake: rows and distinct ids per table.
	if py := chaosPyicebergCounts(t, lake); py == nil {
		t.Log("python3 with pyiceberg not installed: lake checked with iceberg-go only")
	} else {
		bronzeRows := map[string]int64{}
		for typ, ids := range want.unique {
			bronzeRows[lakehouse.TableName(typ)] = int64(len(ids))
		}
		for name, c := range py {
			var rows int64
			if table, ok := strings.CutPrefix(name, "omop."); ok {
				rows = int64(omopRows[table])
			} else {
				rows = bronzeRows[strings.TrimPrefix(name, "bronze.")]
			}
			if c[0] != rows || c[1] != rows {
				t.Errorf("pyiceberg reads %s as %d rows, %d distinct ids; want %d of each", name, c[0], c[1], rows)
			}
		}
	}
	t.Logf("chaos run on %s: %d patients, %d resources, pipeline done in %s, %s in all (seed %d)",
		map[bool]string{true: "a real broker", false: "kfake"}[realBroker], patients, counts.Total(),
		pipelineDone.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), seed)
}
