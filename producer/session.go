package producer

import "fmt"

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
