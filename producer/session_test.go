package producer

import "testing"

func TestDecideSession(t *testing.T) {
	inProgress := exportState{ExportID: "https://ehr/status/1", StatusURL: "https://ehr/status/1"}
	completeUnreleased := exportState{ExportID: "https://ehr/status/1", StatusURL: "https://ehr/status/1", Complete: true}
	completeReleased := exportState{ExportID: "https://ehr/status/1", Complete: true}
	givenUp := exportState{ExportID: "https://ehr/status/1"}
	const resume = "https://ehr/status/9"
	for _, c := range []struct {
		name string
		in   sessionInput
		want sessionAction
		url  string
	}{
		{"first run", sessionInput{}, actKickoff, ""},
		{"after a released export", sessionInput{Prev: completeReleased, HasPrev: true}, actKickoff, ""},
		{"after a given-up export", sessionInput{Prev: givenUp, HasPrev: true}, actKickoff, ""},
		{"export in progress", sessionInput{Prev: inProgress, HasPrev: true}, actResume, inProgress.StatusURL},
		{"complete, not released", sessionInput{Prev: completeUnreleased, HasPrev: true}, actRelease, completeUnreleased.StatusURL},
		{"complete, kept", sessionInput{Prev: completeUnreleased, HasPrev: true, KeepExport: true}, actKickoff, ""},
		{"--resume wins over the state", sessionInput{Resume: resume, Prev: inProgress, HasPrev: true}, actResume, resume},
		{"--resume after a complete one", sessionInput{Resume: resume, Prev: completeUnreleased, HasPrev: true}, actResume, resume},
		{"cancel in progress", sessionInput{Cancel: true, Prev: inProgress, HasPrev: true}, actCancel, inProgress.StatusURL},
		{"cancel --resume", sessionInput{Cancel: true, Resume: resume}, actCancel, resume},
		{"cancel, nothing in progress", sessionInput{Cancel: true, Prev: completeUnreleased, HasPrev: true}, actFail, ""},
		{"cancel, no state", sessionInput{Cancel: true}, actFail, ""},
		{"status gone", sessionInput{Prev: inProgress, HasPrev: true, Server: answerStatusGone}, actKickoff, ""},
		{"status gone under --resume", sessionInput{Resume: resume, Server: answerStatusGone}, actFail, ""},
		{"files gone", sessionInput{Prev: inProgress, HasPrev: true, Server: answerFilesGone}, actGiveUp, inProgress.StatusURL},
		{"files gone under --resume", sessionInput{Resume: resume, Server: answerFilesGone}, actFail, ""},
		{"local, first", sessionInput{Local: true}, actLocal, ""},
	} {
		got := decideSession(c.in)
		if got.Action != c.want || got.StatusURL != c.url {
			t.Errorf("%s: %v %q, want %v %q", c.name, got.Action, got.StatusURL, c.want, c.url)
		}
		if got.Action == actFail && got.Reason == "" {
			t.Errorf("%s: a failure without a reason", c.name)
		}
	}
	if d := decideSession(sessionInput{Local: true, Prev: exportState{ExportID: "local:x"}, HasPrev: true}); !d.Continue {
		t.Error("local: an unfinished run is not continued")
	}
	if d := decideSession(sessionInput{Local: true, Prev: exportState{ExportID: "local:x", Complete: true}, HasPrev: true}); d.Continue {
		t.Error("local: a complete run is continued")
	}
}
