package producer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/fhirstream/fhirstream/producer/bulk"
)

// The export session: which export a run works on. decideSession is the decision alone,
// from the state topic's record of the export and what the server answered, with no I/O;
// fetchRun.session carries it out.

// serverAnswer is what the server said about the export in progress.
type serverAnswer int

const (
	answerNone       serverAnswer = iota
	answerStatusGone              // its status URL answered 404 or 410
	answerFilesGone               // its files expired and a fresh manifest did not bring them back
)

// sessionInput is everything the decision depends on.
type sessionInput struct {
	Local      bool   // --from: local files, no server
	Resume     string // --resume: a status URL the operator gave
	Cancel     bool   // --cancel
	KeepExport bool   // --keep-export
	Prev       exportState
	HasPrev    bool // the state topic has a record of this command's export
	Server     serverAnswer
}

type sessionAction int

const (
	actLocal   sessionAction = iota // publish local files (continuing Prev when it is unfinished)
	actKickoff                      // start a new export
	actResume                       // poll StatusURL and publish that export
	actCancel                       // DELETE StatusURL and record it as done
	actRelease                      // Prev is complete but not released: DELETE it, report, publish nothing
	actGiveUp                       // record the export as given up; the caller starts a new one
	actFail                         // stop with Reason
)

func (a sessionAction) String() string {
	return [...]string{"local", "kickoff", "resume", "cancel", "release", "give-up", "fail"}[a]
}

type sessionDecision struct {
	Action    sessionAction
	StatusURL string
	Continue  bool   // actLocal: continue Prev's run
	Reason    string // actFail: why; otherwise what to log
}

// decideSession decides what a run does. An export given by --resume is never replaced
// by a new one (there is no request to kick off); one the state topic remembers is
// resumed while it is unfinished, and replaced when the server has lost it.
func decideSession(in sessionInput) sessionDecision {
	if in.Local {
		return sessionDecision{Action: actLocal, Continue: in.HasPrev && !in.Prev.Complete}
	}
	switch in.Server {
	case answerStatusGone:
		if in.Resume != "" {
			return sessionDecision{Action: actFail, Reason: fmt.Sprintf("the export at --resume %s is gone from the server", redact(in.Resume))}
		}
		return sessionDecision{Action: actKickoff, Reason: "the export in progress is gone from the server; starting a new one"}
	case answerFilesGone:
		if in.Resume != "" {
			return sessionDecision{Action: actFail, Reason: "the files of the export given by --resume can no longer be downloaded; start a new export without --resume"}
		}
		return sessionDecision{Action: actGiveUp, StatusURL: in.Prev.StatusURL, Reason: "the export's files can no longer be downloaded; starting a new export"}
	}
	statusURL := in.Resume
	if statusURL == "" && in.HasPrev && in.Prev.StatusURL != "" { // "" once released or given up
		if !in.Prev.Complete {
			statusURL = in.Prev.StatusURL
		} else if !in.KeepExport && !in.Cancel {
			// A crash between the last commit and the DELETE: release it and report,
			// rather than export everything again.
			return sessionDecision{Action: actRelease, StatusURL: in.Prev.StatusURL, Reason: "the export was published; releasing it"}
		}
	}
	switch {
	case in.Cancel && statusURL == "":
		return sessionDecision{Action: actFail, Reason: "fetch --cancel: no export in progress (give --resume <status-url>)"}
	case in.Cancel:
		return sessionDecision{Action: actCancel, StatusURL: statusURL}
	case statusURL != "":
		return sessionDecision{Action: actResume, StatusURL: statusURL, Reason: "resuming the export in progress"}
	}
	return sessionDecision{Action: actKickoff}
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
