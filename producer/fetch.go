package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
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

// redact drops what a URL may carry as a credential (query, user information) before it
// is logged, shown or stored.
func redact(u string) string { return ehrhttp.Redact(u) }
