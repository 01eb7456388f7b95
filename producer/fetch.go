package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/schemas"
)

// ErrReconcile is wrapped by the error Fetch returns when lines read, published and
// dead-lettered, or the manifest's counts, do not add up.
var ErrReconcile = errors.New("reconciliation failed")

// errNewExport is returned by fetchOnce when the export's files can no longer be had,
// not even through a fresh manifest (the server dropped the export, or a file stays
// expired): the export has been given up in the state topic, and a new one is needed.
var errNewExport = errors.New("export can no longer be downloaded; a new one is needed")

// maxNewExports bounds how often one Fetch starts a new export mid-run, so a server that
// drops every export fails the fetch instead of looping.
const maxNewExports = 2

// Fetch runs one export (or publishes local files) into Kafka, resuming from the state
// topic where an earlier run of the same command stopped. When the export's file URLs
// expire and a fresh manifest does not bring them back, it starts a new export (kicks
// off again) and publishes that instead; records carry the new export's id, and the
// lines the abandoned export had published stay in Kafka. The Summary is filled even
// when an error is returned, as far as the run got, and says why the run failed.
func Fetch(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{Failed: err.Error()}, err
	}
	for restarts := 0; ; restarts++ {
		sum, err := fetchOnce(ctx, cfg)
		if !errors.Is(err, errNewExport) || restarts >= maxNewExports {
			if err != nil && sum.Failed == "" && !errors.Is(err, ErrReconcile) {
				sum.Failed = err.Error()
			}
			return sum, err
		}
		cfg.Log.Warn("fetch: starting a new export", "reason", err)
		metricErrors.WithLabelValues("new-export").Inc()
	}
}

// fetchOnce is one attempt: open the Kafka side, settle which export to publish, and
// publish it.
func fetchOnce(ctx context.Context, cfg Config) (Summary, error) {
	start := time.Now()
	var sum Summary
	fr, err := openRun(ctx, &cfg)
	if err != nil {
		return sum, err
	}
	defer fr.close(ctx)
	src, err := fr.session(ctx, &sum, start)
	if err != nil || src == nil {
		return sum, err
	}
	return fr.publish(ctx, src, start, sum)
}

// fetchRun is one attempt's Kafka side: the transactional producer, the state it read
// and the publisher that commits lines with checkpoints.
type fetchRun struct {
	cfg                     *Config
	topics                  schemas.Topics
	stateTopic              string
	identity, sinceIdentity string
	exportKey               string // the state key of this command's export
	admCl, cl               *kgo.Client
	tm                      *topicMaker
	state                   map[string][]byte
	pub                     *publisher
	bc                      *bulk.Client // the export's client, once made
}

// openRun creates the state and dead-letter topics, initialises the transactional
// producer (fencing a zombie of an earlier run), reads the state topic and opens the
// first transaction.
func openRun(ctx context.Context, cfg *Config) (*fetchRun, error) {
	topics, err := schemas.NewTopics(cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	fr := &fetchRun{cfg: cfg, topics: topics, stateTopic: topics.State("fetcher")}
	fr.identity, fr.sinceIdentity = cfg.identities()
	fr.exportKey = "export/" + fr.identity
	topicOpts := kafkaclient.TopicOptions{Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, MaxMessageBytes: cfg.Kafka.MaxRecordBytes}
	if topicOpts.ReplicationFactor == 0 {
		topicOpts.ReplicationFactor = -1
	}
	if fr.admCl, err = cfg.Kafka.NewClient(); err != nil {
		return nil, err
	}
	fr.tm = &topicMaker{adm: kadm.NewClient(fr.admCl), topics: topics, opts: topicOpts, done: map[string]bool{}}
	if err := fr.tm.ensureSpecs(ctx, []kafkaclient.TopicSpec{kafkaclient.StateTopic(topics, "fetcher", topicOpts), dlqSpec(topics, topicOpts)}); err != nil {
		fr.admCl.Close()
		return nil, err
	}
	if fr.cl, err = newTransactionalClient(cfg, topics.Group("fhirstream-fetch-"+fr.identity)); err != nil {
		fr.admCl.Close()
		return nil, err
	}
	fail := func(err error) (*fetchRun, error) {
		fr.cl.Close()
		fr.admCl.Close()
		return nil, err
	}
	// Initialising the producer id fences a zombie of an earlier run and aborts its open
	// transaction, so the state read next is final.
	if _, _, err := fr.cl.ProducerID(ctx); err != nil {
		return fail(fmt.Errorf("init transactional producer: %w", err))
	}
	if fr.state, err = loadState(ctx, cfg.Kafka, fr.stateTopic); err != nil {
		return fail(err)
	}
	fr.pub = newPublisher(ctx, fr.cl, fr.stateTopic, cfg.CommitBytes, cfg.Log)
	if err := fr.pub.begin(); err != nil {
		return fail(err)
	}
	return fr, nil
}

// newTransactionalClient is the fetcher's producer; txnID's prefix keeps two pipelines
// fetching one source from fencing each other.
func newTransactionalClient(cfg *Config, txnID string) (*kgo.Client, error) {
	return cfg.Kafka.NewClient(
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(time.Minute),
		kgo.ProducerLinger(20*time.Millisecond),
		// Records waiting for the broker cost about twice their bytes in memory (the
		// record, then its encoded batch), and the garbage collector doubles that again:
		// 16 MiB keeps the fetcher's peak RSS well under 200 MB while the broker is busy.
		kgo.MaxBufferedBytes(int(min(cfg.CommitBytes, 16<<20))),
		// Snappy (franz-go's default): its assembly encoder costs a third of lz4's CPU on
		// FHIR JSON, which compresses about as well with either.
		kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()),
		// The fetcher creates raw topics as it meets new types, after this client has
		// loaded metadata; franz-go's default minimum metadata age (5s) would hold the
		// first records to each new topic (and so the next commit) for up to 5 seconds.
		kgo.MetadataMinAge(100*time.Millisecond),
	)
}

func (fr *fetchRun) close(ctx context.Context) {
	fr.pub.abort(context.WithoutCancel(ctx))
	fr.cl.Close()
	fr.admCl.Close()
	if fr.bc != nil {
		// Connections the transport dialled and kept, some never used: closing them lets
		// the server see the client gone at once.
		fr.bc.HTTP.CloseIdleConnections()
	}
}

// commitExport commits ex as the state of this command's export.
func (fr *fetchRun) commitExport(ctx context.Context, ex exportState, extra ...*kgo.Record) error {
	ex.Updated = time.Now().UTC()
	return fr.pub.commit(ctx, append([]*kgo.Record{stateRecord(fr.stateTopic, fr.exportKey, ex)}, extra...)...)
}

// source is what a run publishes: the export (or local run) and its files.
type source struct {
	ex      exportState
	files   []*fileRun
	open    opener
	refresh func(context.Context) (*bulk.Manifest, error) // nil for local files
	bc      *bulk.Client                                  // nil for local files
}

// session decides (decideSession) and carries out which export this run publishes. It
// returns nil and no error when the run's work ends here (a cancel, a release).
func (fr *fetchRun) session(ctx context.Context, sum *Summary, start time.Time) (*source, error) {
	cfg := fr.cfg
	prev, hasPrev := getJSON[exportState](fr.state, fr.exportKey)
	in := sessionInput{Local: len(cfg.From) > 0, Resume: cfg.Resume, Cancel: cfg.Cancel, KeepExport: cfg.KeepExport, Prev: prev, HasPrev: hasPrev}
	if in.Local {
		return fr.localSource(decideSession(in), prev, start)
	}
	bc, err := cfg.bulkClient(ctx)
	if err != nil {
		return nil, err
	}
	fr.bc = bc
	for {
		d := decideSession(in)
		switch d.Action {
		case actFail:
			return nil, errors.New(d.Reason)
		case actCancel:
			if err := bc.Delete(ctx, d.StatusURL); err != nil {
				return nil, err
			}
			return nil, fr.commitExport(ctx, exportState{ExportID: d.StatusURL, Complete: true})
		case actRelease:
			return nil, fr.release(ctx, bc, prev, sum)
		case actResume:
			cfg.Log.Info("fetch: "+d.Reason, "status", redact(d.StatusURL))
			m, err := bc.Wait(ctx, d.StatusURL)
			if statusGone(err) && in.Server == answerNone {
				in.Server = answerStatusGone
				cfg.Log.Warn("fetch: the export in progress is gone from the server", "status", redact(d.StatusURL))
				continue
			}
			if err != nil {
				return nil, err
			}
			return fr.exportSource(bc, d.StatusURL, m)
		case actKickoff:
			statusURL, m, err := fr.kickoff(ctx, bc)
			if err != nil {
				return nil, err
			}
			return fr.exportSource(bc, statusURL, m)
		}
		return nil, fmt.Errorf("fetch: session action %v out of place", d.Action)
	}
}

func statusGone(err error) bool {
	var oe *bulk.OutcomeError
	return errors.As(err, &oe) && (oe.Status == http.StatusNotFound || oe.Status == http.StatusGone)
}

// release DELETEs an export already published (a crash came between its last commit and
// the DELETE) and reports it, instead of exporting everything again.
func (fr *fetchRun) release(ctx context.Context, bc *bulk.Client, prev exportState, sum *Summary) error {
	sum.ExportID, sum.TransactionTime, sum.AlreadyComplete = prev.ExportID, prev.TransactionTime, true
	err := bc.Delete(ctx, prev.StatusURL)
	if err != nil && !statusGone(err) {
		fr.cfg.Log.Warn("fetch: could not release the published export; the next run tries again", "err", err)
		return nil
	}
	return fr.commitExport(ctx, exportState{ExportID: prev.ExportID, TransactionTime: prev.TransactionTime, Complete: true})
}

// kickoff starts a new export (incremental with --since auto) and waits for its manifest.
func (fr *fetchRun) kickoff(ctx context.Context, bc *bulk.Client) (string, *bulk.Manifest, error) {
	req := fr.cfg.Export
	if fr.cfg.SinceAuto {
		if s, ok := getJSON[sinceState](fr.state, "since/"+fr.sinceIdentity); ok {
			req.Since = s.TransactionTime
			fr.cfg.Log.Info("fetch: incremental export", "since", s.TransactionTime)
		}
	}
	statusURL, err := bc.Kickoff(ctx, req)
	if err != nil {
		return "", nil, err
	}
	fr.cfg.Log.Info("fetch: export started", "status", redact(statusURL))
	// Remember the export before anything else, so a restart resumes it.
	if err := fr.commitExport(ctx, exportState{ExportID: statusURL, StatusURL: statusURL}); err != nil {
		return "", nil, err
	}
	m, err := bc.Wait(ctx, statusURL)
	return statusURL, m, err
}

// exportSource lists the files of an export's manifest. Their checkpoints are keyed by
// the status URL and the manifest's transactionTime and request together: a server that
// hands out a status URL again serves a new export there, whose files start afresh.
func (fr *fetchRun) exportSource(bc *bulk.Client, statusURL string, m *bulk.Manifest) (*source, error) {
	if err := fr.cfg.saveManifest(m, statusURL); err != nil {
		return nil, err
	}
	src := &source{bc: bc, ex: exportState{ExportID: statusURL, StatusURL: statusURL, TransactionTime: m.TransactionTime}, files: manifestFiles(m)}
	instance := exportInstance(statusURL, m)
	for _, f := range src.files {
		f.key = fileStateKey(instance, f.kind+"/"+fmt.Sprint(f.index))
	}
	var refreshMu sync.Mutex
	src.refresh = func(ctx context.Context) (*bulk.Manifest, error) {
		refreshMu.Lock()
		defer refreshMu.Unlock()
		fresh, err := bc.Wait(ctx, statusURL)
		if err == nil && (!fresh.TransactionTime.Equal(m.TransactionTime) || fresh.Request != m.Request) {
			return nil, fmt.Errorf("%w: the status URL now serves another export (transactionTime %s, was %s)",
				errExportReplaced, fresh.TransactionTime.Format(time.RFC3339Nano), m.TransactionTime.Format(time.RFC3339Nano))
		}
		return fresh, err
	}
	withToken := m.RequiresAccessToken
	src.open = func(ctx context.Context, f *fileRun, offset int64) (io.ReadCloser, error) {
		return bc.Open(ctx, f.url, withToken, offset)
	}
	return src, nil
}

// errExportReplaced is a manifest refresh that found another export at the status URL.
var errExportReplaced = errors.New("export replaced")

// localSource lists --from files, continuing the unfinished local run when there is one.
func (fr *fetchRun) localSource(d sessionDecision, prev exportState, start time.Time) (*source, error) {
	src := &source{open: openLocal}
	if d.Continue {
		src.ex = prev
	} else {
		src.ex = exportState{ExportID: "local:" + fr.identity + ":" + start.UTC().Format("20060102T150405.000Z"), TransactionTime: start.UTC()}
	}
	var err error
	if src.files, err = localFiles(fr.cfg.From); err != nil {
		return nil, err
	}
	for _, f := range src.files {
		f.key = fileStateKey(src.ex.ExportID, f.url)
	}
	return src, nil
}

// publish publishes src's files from their checkpoints, then reconciles and, when all
// adds up, records the export complete and releases it.
func (fr *fetchRun) publish(ctx context.Context, src *source, start time.Time, sum Summary) (Summary, error) {
	cfg := fr.cfg
	ex := src.ex
	sum.ExportID, sum.StatusURL, sum.TransactionTime = ex.ExportID, ex.StatusURL, ex.TransactionTime
	rn := &runner{cfg: cfg, pub: fr.pub, topics: fr.topics, exportID: []byte(redact(ex.ExportID)),
		txTime: []byte(ex.TransactionTime.UTC().Format(time.RFC3339Nano)), maxRec: int(cfg.Kafka.MaxRecordBytes), ensure: fr.tm.ensureRaw}
	var types []string
	for _, f := range src.files {
		if cp, ok := getJSON[checkpoint](fr.state, f.key); ok {
			f.cp = cp
		}
		f.cp.URL = f.url
		if src.bc != nil {
			f.cp.URL = redact(f.url)
		}
		f.committed = f.cp
		fr.pub.register(f)
		if f.kind == kindOutput && f.organizedBy == "" {
			types = append(types, f.typ)
		}
	}
	if err := fr.tm.ensureRawTypes(ctx, types); err != nil {
		return sum, err
	}
	cfg.Log.Debug("fetch: raw topics ready", "types", len(types), "since_start", time.Since(start))

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	commitDone := make(chan struct{})
	go func() { defer close(commitDone); fr.pub.run(runCtx, cfg.CommitInterval) }()
	prog := newProgress(cfg, src.files, rn)
	prog.start(runCtx)
	err := runFiles(runCtx, cfg, rn, src.files, src.open, src.refresh)
	cancelRun()
	<-commitDone
	prog.stop()
	if err == nil {
		err = fr.pub.failed()
	}
	sum.fill(src.files, time.Since(start), rn.bytes.Load(), fr.pub.commits.Load(), rn.resources.Load(), cfg.Accept)
	if errors.Is(err, errNewExport) {
		return sum, fr.giveUp(ctx, src, err)
	}
	if err != nil {
		return sum, err
	}
	return fr.finish(ctx, src, start, sum)
}

// giveUp records that the export's files can no longer be had: what it published so far
// is committed, and the state no longer points at its status URL, so the next attempt
// (this Fetch's, or a restarted command's) kicks off anew instead of resuming it.
func (fr *fetchRun) giveUp(ctx context.Context, src *source, cause error) error {
	d := decideSession(sessionInput{Resume: fr.cfg.Resume, Prev: src.ex, HasPrev: true, Server: answerFilesGone})
	if d.Action != actGiveUp {
		return fmt.Errorf("%s: %s", d.Reason, cause) // not wrapped: no new export follows
	}
	if err := fr.commitExport(ctx, exportState{ExportID: src.ex.ExportID}); err != nil {
		return errors.Join(cause, err)
	}
	if err := src.bc.Delete(ctx, src.ex.StatusURL); err != nil {
		fr.cfg.Log.Info("fetch: could not release the abandoned export", "err", err)
	}
	return cause
}

// finish ends a run whose files were all read. An export that does not reconcile stays
// unfinished in the state topic and on the server: the next run of the same command
// reconciles it again (with --accept-quirk, if the operator accepts what failed)
// without publishing anything twice. One that reconciles is recorded complete, its
// transactionTime kept for --since auto, and released on the server.
func (fr *fetchRun) finish(ctx context.Context, src *source, start time.Time, sum Summary) (Summary, error) {
	cfg, ex := fr.cfg, src.ex
	if !sum.OK() {
		// Commit the last checkpoints, so a rerun has nothing left to read.
		if err := fr.pub.commit(ctx); err != nil {
			return sum, err
		}
		sum.Commits = fr.pub.commits.Load()
		return sum, reconcileError(sum)
	}
	ex.Complete = true
	var extra []*kgo.Record
	if src.bc != nil {
		extra = append(extra, stateRecord(fr.stateTopic, "since/"+fr.sinceIdentity, sinceState{TransactionTime: ex.TransactionTime}))
	}
	release := src.bc != nil && !cfg.KeepExport
	if !release {
		ex.StatusURL = "" // nothing to release
	}
	if err := fr.commitExport(ctx, ex, extra...); err != nil {
		return sum, err
	}
	sum.Commits = fr.pub.commits.Load()
	metricExportDuration.Observe(time.Since(start).Seconds())
	if !release {
		return sum, nil
	}
	if err := src.bc.Delete(ctx, ex.StatusURL); err != nil {
		cfg.Log.Warn("fetch: could not release the export", "err", err)
		return sum, nil
	}
	ex.StatusURL = ""
	return sum, fr.commitExport(ctx, ex)
}

// reconcileError is the error of a run that does not reconcile: the first reasons, the
// rest counted (the summary's table lists them all).
func reconcileError(sum Summary) error {
	const shown = 3
	var reasons []string
	if sum.Unfinished > 0 {
		reasons = append(reasons, fmt.Sprintf("%d of %d files not read to the end", sum.Unfinished, len(sum.Files)))
	}
	reasons = append(reasons, sum.Mismatches...)
	if len(reasons) > shown {
		reasons = append(reasons[:shown], fmt.Sprintf("and %d more", len(reasons)-shown))
	}
	return fmt.Errorf("%w: %s", ErrReconcile, strings.Join(reasons, "; "))
}

// runFiles publishes files with cfg.Workers in parallel, refreshing expired URLs.
func runFiles(ctx context.Context, cfg *Config, rn *runner, files []*fileRun, open opener, refresh func(context.Context) (*bulk.Manifest, error)) error {
	// The first failure stops the other workers at their next line boundary: going on
	// would only publish more of an export the run is about to give up or fail.
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan []*fileRun)
	errs := make(chan error, len(files))
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chain := range work {
				for _, f := range chain {
					err := publishWithRefresh(ctx, cfg, rn, f, open, refresh)
					errs <- err
					if err != nil {
						cancel()
						break // the rest of the chain would publish a block's end before its start
					}
				}
			}
		}()
	}
	var firstErr error
	go func() {
		defer close(work)
		for _, chain := range chains(files) {
			select {
			case work <- chain:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		// The cause, not the cancellations it set off in the other workers.
		if err != nil && (firstErr == nil || errors.Is(firstErr, context.Canceled) && !errors.Is(err, context.Canceled)) {
			firstErr = err
		}
	}
	if outer.Err() != nil && (firstErr == nil || errors.Is(firstErr, context.Canceled)) {
		return outer.Err()
	}
	return firstErr
}

func publishWithRefresh(ctx context.Context, cfg *Config, rn *runner, f *fileRun, open opener, refresh func(context.Context) (*bulk.Manifest, error)) error {
	// A new kickoff needs the request, which an export given by --resume does not have.
	gone := func(err error) error {
		if cfg.Resume == "" {
			return fmt.Errorf("%s: %w: %w", f.label(), errNewExport, err)
		}
		return fmt.Errorf("%s: %w", f.label(), err)
	}
	const maxRefreshes = 5
	for attempt := 0; ; attempt++ {
		err := rn.publishFile(ctx, f, open)
		if err != nil && errors.Is(err, bulk.ErrExpired) && refresh != nil && attempt >= maxRefreshes {
			return gone(fmt.Errorf("URL still expired after %d manifest refreshes: %w", maxRefreshes, err))
		}
		if err == nil || !errors.Is(err, bulk.ErrExpired) || refresh == nil {
			if err != nil {
				metricErrors.WithLabelValues("file").Inc()
				return fmt.Errorf("%s: %w", f.label(), err)
			}
			return nil
		}
		metricErrors.WithLabelValues("expired-url").Inc()
		cfg.Log.Info("fetch: file URL expired, refreshing the manifest", "type", f.typ, "index", f.index)
		m, rerr := refresh(ctx)
		if statusGone(rerr) || errors.Is(rerr, errExportReplaced) {
			return gone(fmt.Errorf("URL expired and the export is gone from the server: %w", rerr))
		}
		if rerr != nil {
			return fmt.Errorf("%s: URL expired and the manifest could not be refreshed: %w", f.label(), rerr)
		}
		fresh := manifestFiles(m)
		found := false
		for _, nf := range fresh {
			if nf.kind == f.kind && nf.index == f.index && nf.typ == f.typ {
				rn.pub.enter()
				f.url = nf.url
				rn.pub.leave(0)
				found = true
			}
		}
		if !found {
			return gone(errors.New("URL expired and the file is not in the refreshed manifest"))
		}
	}
}

// manifestFiles lists the manifest's files, output entries linked to the entry their
// last resource block continues in (continuesInFile).
func manifestFiles(m *bulk.Manifest) []*fileRun {
	var out []*fileRun
	add := func(kind string, fs []bulk.File) {
		for i, f := range fs {
			fr := &fileRun{kind: kind, typ: f.Type, index: i, url: f.URL, expected: f.Count}
			if kind == kindOutput {
				fr.organizedBy = m.OutputOrganizedBy
			}
			out = append(out, fr)
		}
	}
	add(kindOutput, m.Output)
	byURL := map[string]int{}
	for i, f := range out {
		byURL[f.url] = i
	}
	for i, f := range m.Output {
		if f.ContinuesInFile == "" {
			continue
		}
		// Only a later entry is followed, so chains cannot loop; anything else is
		// reported by reconciliation rather than guessed at.
		if j, ok := byURL[f.ContinuesInFile]; ok && j > i && !out[j].continued {
			next := out[j]
			out[i].next, next.continued = next, true
		} else {
			out[i].next = &fileRun{kind: kindOutput, url: f.ContinuesInFile, index: -1}
		}
	}
	add(kindError, m.Error)
	add(kindDeleted, m.Deleted)
	return out
}

// chains groups files for publishing: a file and the files its blocks continue in, in
// order, so one worker publishes a block that spans files from start to end. Any other
// file is a chain of its own.
func chains(files []*fileRun) [][]*fileRun {
	var out [][]*fileRun
	for _, f := range files {
		if f.continued || f.index < 0 {
			continue
		}
		chain := []*fileRun{f}
		seen := map[*fileRun]bool{f: true}
		for n := f.next; n != nil && n.index >= 0 && !seen[n]; n = n.next {
			chain = append(chain, n)
			seen[n] = true
		}
		out = append(out, chain)
	}
	return out
}

// redact drops what a URL may carry as a credential (query, user information) before it
// is logged, shown or stored.
func redact(u string) string { return ehrhttp.Redact(u) }

// exportInstance identifies one export: its status URL and what its manifest says of
// it, since a status URL alone may be handed out again.
func exportInstance(statusURL string, m *bulk.Manifest) string {
	return hashID(statusURL, m.TransactionTime.UTC().Format(time.RFC3339Nano), m.Request)
}
