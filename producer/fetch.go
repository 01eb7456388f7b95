package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/smart"
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
// when an error is returned, as far as the run got.
func Fetch(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	for restarts := 0; ; restarts++ {
		sum, err := fetchOnce(ctx, cfg)
		if !errors.Is(err, errNewExport) || restarts >= maxNewExports {
			return sum, err
		}
		cfg.Log.Warn("fetch: starting a new export", "reason", err)
		metricErrors.WithLabelValues("new-export").Inc()
	}
}

func fetchOnce(ctx context.Context, cfg Config) (Summary, error) {
	start := time.Now()
	sum := Summary{}
	if err := cfg.defaults(); err != nil {
		return sum, err
	}
	topics, err := schemas.NewTopics(cfg.Kafka.TopicPrefix)
	if err != nil {
		return sum, err
	}
	identity, sinceIdentity := cfg.identities()
	stateTopic := topics.State("fetcher")
	topicOpts := kafkaclient.TopicOptions{Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, MaxMessageBytes: cfg.Kafka.MaxRecordBytes}
	if topicOpts.ReplicationFactor == 0 {
		topicOpts.ReplicationFactor = -1
	}

	admCl, err := cfg.Kafka.NewClient()
	if err != nil {
		return sum, err
	}
	defer admCl.Close()
	tm := &topicMaker{adm: kadm.NewClient(admCl), topics: topics, opts: topicOpts, done: map[string]bool{}}
	if err := tm.ensureSpecs(ctx, []kafkaclient.TopicSpec{kafkaclient.StateTopic(topics, "fetcher", topicOpts), dlqSpec(topics, topicOpts)}); err != nil {
		return sum, err
	}

	cl, err := cfg.Kafka.NewClient(
		kgo.TransactionalID(topics.Group("fhirstream-fetch-"+identity)), // the prefix keeps two pipelines fetching one source from fencing each other
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
	if err != nil {
		return sum, err
	}
	defer cl.Close()
	// Initialising the producer id fences a zombie of an earlier run and aborts its open
	// transaction, so the state read next is final.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return sum, fmt.Errorf("init transactional producer: %w", err)
	}
	state, err := loadState(ctx, cfg.Kafka, stateTopic)
	if err != nil {
		return sum, err
	}
	pub := newPublisher(ctx, cl, stateTopic, cfg.CommitBytes, cfg.Log)
	if err := pub.begin(); err != nil {
		return sum, err
	}
	defer pub.abort(context.WithoutCancel(ctx))

	exportKey := "export/" + identity
	prev, hasPrev := getJSON[exportState](state, exportKey)

	var (
		files   []*fileRun
		open    opener
		refresh func(context.Context) (*bulk.Manifest, error)
		bc      *bulk.Client
		ex      exportState
	)
	if len(cfg.From) > 0 {
		if hasPrev && !prev.Complete {
			ex = prev
		} else {
			ex = exportState{ExportID: "local:" + identity + ":" + start.UTC().Format("20060102T150405.000Z"), TransactionTime: start.UTC()}
		}
		files, err = localFiles(cfg.From)
		if err != nil {
			return sum, err
		}
		open = openLocal
	} else {
		bc, err = cfg.bulkClient(ctx)
		if err != nil {
			return sum, err
		}
		statusURL := cfg.Resume
		if statusURL == "" && hasPrev {
			switch {
			case !prev.Complete && prev.StatusURL != "": // "" when the export was given up
				statusURL = prev.StatusURL
				cfg.Log.Info("fetch: resuming the export in progress", "status", redact(statusURL))
			case prev.StatusURL != "" && !cfg.KeepExport:
				// Complete but maybe not yet released: a crash between the last commit and
				// the DELETE. Release it and report, rather than export everything again.
				if err := bc.Delete(ctx, prev.StatusURL); err == nil {
					pub.commit(ctx, stateRecord(stateTopic, exportKey, exportState{ExportID: prev.ExportID, TransactionTime: prev.TransactionTime, Complete: true, Updated: time.Now().UTC()}))
					sum.ExportID, sum.TransactionTime, sum.AlreadyComplete = prev.ExportID, prev.TransactionTime, true
					return sum, nil
				}
			}
		}
		if cfg.Cancel {
			if statusURL == "" {
				return sum, errors.New("fetch --cancel: no export in progress (give --resume <status-url>)")
			}
			if err := bc.Delete(ctx, statusURL); err != nil {
				return sum, err
			}
			return sum, pub.commit(ctx, stateRecord(stateTopic, exportKey, exportState{ExportID: statusURL, Complete: true, Updated: time.Now().UTC()}))
		}
		var m *bulk.Manifest
		if statusURL != "" {
			m, err = bc.Wait(ctx, statusURL)
			var oe *bulk.OutcomeError
			if errors.As(err, &oe) && oe.Status == http.StatusNotFound && cfg.Resume == "" {
				cfg.Log.Warn("fetch: the export in progress is gone from the server; starting a new one", "status", redact(statusURL))
				statusURL, m, err = "", nil, nil
			}
			if err != nil {
				return sum, err
			}
		}
		if statusURL == "" {
			req := cfg.Export
			if cfg.SinceAuto {
				if s, ok := getJSON[sinceState](state, "since/"+sinceIdentity); ok {
					req.Since = s.TransactionTime
					cfg.Log.Info("fetch: incremental export", "since", s.TransactionTime)
				}
			}
			statusURL, err = bc.Kickoff(ctx, req)
			if err != nil {
				return sum, err
			}
			cfg.Log.Info("fetch: export started", "status", redact(statusURL))
			// Remember the export before anything else, so a restart resumes it.
			if err := pub.commit(ctx, stateRecord(stateTopic, exportKey, exportState{ExportID: statusURL, StatusURL: statusURL, Updated: time.Now().UTC()})); err != nil {
				return sum, err
			}
			m, err = bc.Wait(ctx, statusURL)
			if err != nil {
				return sum, err
			}
		}
		ex = exportState{ExportID: statusURL, StatusURL: statusURL, TransactionTime: m.TransactionTime}
		if err := cfg.saveManifest(m, statusURL); err != nil {
			return sum, err
		}
		files = manifestFiles(m)
		var refreshMu sync.Mutex
		refresh = func(ctx context.Context) (*bulk.Manifest, error) {
			refreshMu.Lock()
			defer refreshMu.Unlock()
			return bc.Wait(ctx, statusURL)
		}
		withToken := m.RequiresAccessToken
		open = func(ctx context.Context, f *fileRun, offset int64) (io.ReadCloser, error) {
			r, err := bc.Open(ctx, f.url, withToken, offset)
			if err != nil {
				return nil, err
			}
			return r, nil
		}
	}
	sum.ExportID, sum.StatusURL, sum.TransactionTime = ex.ExportID, ex.StatusURL, ex.TransactionTime

	rn := &runner{cfg: &cfg, pub: pub, topics: topics, exportID: []byte(ex.ExportID),
		txTime: []byte(ex.TransactionTime.UTC().Format(time.RFC3339Nano)), maxRec: int(cfg.Kafka.MaxRecordBytes), ensure: tm.ensureRaw}
	for _, f := range files {
		f.key = fileStateKey(ex.ExportID, f.kind+"/"+fmt.Sprint(f.index))
		if len(cfg.From) > 0 {
			f.key = fileStateKey(ex.ExportID, f.url)
		}
		if cp, ok := getJSON[checkpoint](state, f.key); ok {
			cp.URL = f.url
			f.cp, f.committed = cp, cp
		} else {
			f.cp.URL = f.url
			f.committed = f.cp
		}
		pub.register(f)
	}
	var types []string
	for _, f := range files {
		if f.kind == kindOutput && f.organizedBy == "" {
			types = append(types, f.typ)
		}
	}
	if err := tm.ensureRawTypes(ctx, types); err != nil {
		return sum, err
	}
	cfg.Log.Debug("fetch: raw topics ready", "types", len(types), "since_start", time.Since(start))

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	commitDone := make(chan struct{})
	go func() { defer close(commitDone); pub.run(runCtx, cfg.CommitInterval) }()
	prog := newProgress(&cfg, files, rn)
	prog.start(runCtx)

	err = runFiles(runCtx, &cfg, rn, files, open, refresh)
	cancelRun()
	<-commitDone
	prog.stop()
	if errors.Is(err, errNewExport) && len(cfg.From) == 0 && cfg.Resume == "" {
		// Give the export up: what it published so far is committed, and the state no
		// longer points at its status URL, so the next attempt (this Fetch's, or a
		// restarted command's) kicks off anew instead of resuming it.
		if cerr := pub.commit(ctx, stateRecord(stateTopic, exportKey, exportState{ExportID: ex.ExportID, Updated: time.Now().UTC()})); cerr != nil {
			return sum, errors.Join(err, cerr)
		}
		if derr := bc.Delete(ctx, ex.StatusURL); derr != nil {
			cfg.Log.Info("fetch: could not release the abandoned export", "err", derr)
		}
		sum.fill(files, time.Since(start), rn.bytes.Load(), pub.commits.Load(), rn.resources.Load())
		return sum, err
	}
	if err == nil {
		err = pub.failed()
	}
	sum.fill(files, time.Since(start), rn.bytes.Load(), pub.commits.Load(), rn.resources.Load())
	if err != nil {
		return sum, err
	}
	ex.Complete, ex.Updated = true, time.Now().UTC()
	final := []*kgo.Record{stateRecord(stateTopic, exportKey, ex)}
	if sum.OK() && len(cfg.From) == 0 {
		final = append(final, stateRecord(stateTopic, "since/"+sinceIdentity, sinceState{TransactionTime: ex.TransactionTime}))
	}
	if len(cfg.From) > 0 || cfg.KeepExport {
		ex.StatusURL = "" // nothing to release
		final[0] = stateRecord(stateTopic, exportKey, ex)
	}
	if err := pub.commit(ctx, final...); err != nil {
		return sum, err
	}
	sum.Commits = pub.commits.Load()
	metricExportDuration.Observe(time.Since(start).Seconds())
	if bc != nil && !cfg.KeepExport {
		if err := bc.Delete(ctx, ex.StatusURL); err != nil {
			cfg.Log.Warn("fetch: could not release the export", "err", err)
		} else if err := pub.commit(ctx, stateRecord(stateTopic, exportKey, exportState{ExportID: ex.ExportID, TransactionTime: ex.TransactionTime, Complete: true, Updated: time.Now().UTC()})); err != nil {
			return sum, err
		}
	}
	if !sum.OK() {
		return sum, fmt.Errorf("%w: %s", ErrReconcile, strings.Join(sum.Mismatches, "; "))
	}
	return sum, nil
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
			return fmt.Errorf("file %s #%d: %w: %w", f.typ, f.index, errNewExport, err)
		}
		return fmt.Errorf("file %s #%d: %w", f.typ, f.index, err)
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
				return fmt.Errorf("file %s %s: %w", f.typ, redact(f.url), err)
			}
			return nil
		}
		metricErrors.WithLabelValues("expired-url").Inc()
		cfg.Log.Info("fetch: file URL expired, refreshing the manifest", "type", f.typ, "index", f.index)
		m, rerr := refresh(ctx)
		var oe *bulk.OutcomeError
		if errors.As(rerr, &oe) && (oe.Status == http.StatusNotFound || oe.Status == http.StatusGone) {
			return gone(fmt.Errorf("URL expired and the export is gone from the server: %w", rerr))
		}
		if rerr != nil {
			return fmt.Errorf("file %s: URL expired and the manifest could not be refreshed: %w", f.typ, rerr)
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

func (cfg *Config) bulkClient(ctx context.Context) (*bulk.Client, error) {
	hc := bulk.NewHTTPClient()
	bc := &bulk.Client{HTTP: hc, Log: cfg.Log, MinPoll: cfg.MinPoll, Backoff: cfg.Backoff,
		OnPoll: func(status int, progress string) { metricPolls.WithLabelValues(fmt.Sprint(status)).Inc() }}
	if cfg.Resume != "" && cfg.Export.Base == "" {
		cfg.Export.Base = cfg.Resume // only used for discovery below
	}
	if cfg.TokenURL == "none" || (cfg.KeyFile == "" && cfg.TokenURL == "") {
		return bc, nil
	}
	if cfg.KeyFile == "" || cfg.ClientID == "" {
		return nil, errors.New("fetch: SMART auth needs --smart-client-id and --key (or --token-url none)")
	}
	key, err := smart.LoadKey(cfg.KeyFile, cfg.KeyID, cfg.KeyAlg)
	if err != nil {
		return nil, err
	}
	key.JKU = cfg.JKU
	tokenURL := cfg.TokenURL
	if tokenURL == "" {
		conf, err := smart.Discover(ctx, hc, cfg.Export.Base)
		if err != nil {
			return nil, err
		}
		tokenURL = conf.TokenEndpoint
	}
	bc.Auth = &smart.Client{ClientID: cfg.ClientID, TokenURL: tokenURL, Key: key, Scope: cfg.Scope, HTTP: hc}
	return bc, nil
}

func (cfg *Config) saveManifest(m *bulk.Manifest, statusURL string) error {
	if cfg.ManifestDir == "" {
		return nil
	}
	if err := os.MkdirAll(cfg.ManifestDir, 0o755); err != nil {
		return fmt.Errorf("manifest dir: %w", err)
	}
	base := "manifest-" + hashID(statusURL)[:12] + "-" + m.TransactionTime.UTC().Format("20060102T150405Z")
	for i, p := range m.Pages {
		name := filepath.Join(cfg.ManifestDir, fmt.Sprintf("%s.%d.json", base, i+1))
		if err := os.WriteFile(name, p, 0o644); err != nil {
			return fmt.Errorf("save manifest: %w", err)
		}
	}
	return nil
}

func redact(u string) string {
	u, _, _ = strings.Cut(u, "?")
	return u
}
