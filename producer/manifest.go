package producer

import (
	"time"

	"github.com/fhirstream/fhirstream/producer/bulk"
)

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

// exportInstance identifies one export: its status URL and what its manifest says of
// it, since a status URL alone may be handed out again.
func exportInstance(statusURL string, m *bulk.Manifest) string {
	return hashID(statusURL, m.TransactionTime.UTC().Format(time.RFC3339Nano), m.Request)
}
