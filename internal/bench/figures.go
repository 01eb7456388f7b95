package bench

import (
	"fmt"
	"time"

	"github.com/fhirstream/fhirstream/internal/pipeline"
)

// upstreams name the stage whose committed output each stage reads; validate reads what
// the fetcher publishes.
var upstreams = map[string]string{
	pipeline.StageDedupe: pipeline.StageValidate, pipeline.StageOMOP: pipeline.StageDedupe,
	pipeline.StageSinkBronze: pipeline.StageDedupe, pipeline.StageSinkSilver: pipeline.StageDedupe,
	pipeline.StageSinkOMOP: pipeline.StageOMOP,
}

// stageFigures turns the samples into per-stage figures, the fetcher's first. A stage
// starts when its input first became readable (the upstream's first committed output,
// or the fetcher's first published resource for validate) and ends at the first sample
// showing its final count.
func stageFigures(f fetchFigures, samples []sample) []Stage {
	fetch := Stage{Name: LabelFetch, RecordsIn: f.read, RecordsOut: f.published, DeadLetters: f.dead,
		EndSeconds: f.end.Seconds(), ActiveSeconds: f.end.Seconds(), BytesIn: f.bytes, Batches: f.commits}
	out := []Stage{fetch}
	final := samples[len(samples)-1].stages
	index := map[string]int{}
	for i, sp := range final {
		index[sp.Name] = i
	}
	upstreamOut := func(name string) func(sample) int64 {
		up := upstreams[name]
		if up == "" {
			return func(s sample) int64 { return s.fetched }
		}
		return func(s sample) int64 { return s.stages[index[up]].Out }
	}
	for i, sp := range final {
		st := Stage{Name: sp.Name, RecordsIn: sp.In, RecordsOut: sp.Out, DeadLetters: sp.DeadLetters, Batches: sp.Batches, BytesIn: sp.BytesIn}
		inputSeen := upstreamOut(sp.Name)
		// The input became readable between the last sample without it and the first
		// with it; starting from the earlier one never under-counts the active time, and
		// keeps it above zero for a stage that finished within one sample period.
		start, end, before := time.Duration(-1), time.Duration(-1), time.Duration(0)
		for _, s := range samples {
			if start < 0 {
				if inputSeen(s) > 0 {
					start = before
				} else {
					before = s.at
				}
			}
			if end < 0 && s.stages[i].In == sp.In {
				end = s.at
			}
		}
		if sp.In > 0 && start >= 0 && end >= start {
			st.StartSeconds, st.EndSeconds = start.Seconds(), end.Seconds()
			st.ActiveSeconds = (end - start).Seconds()
		}
		out = append(out, st)
	}
	for i := range out {
		out[i].RecordsPerSecond = perSecond(out[i].RecordsIn, out[i].ActiveSeconds)
		if out[i].BytesIn >= 0 {
			out[i].MBPerSecond = perSecond(out[i].BytesIn, out[i].ActiveSeconds) / 1e6
		}
	}
	return out
}

// mismatches checks the records flowing from stage to stage add up, and that the
// fetcher published every generated resource.
func mismatches(generated, published int64, stages []pipeline.StageProgress) []string {
	by := map[string]pipeline.StageProgress{}
	for _, s := range stages {
		by[s.Name] = s
	}
	var bad []string
	check := func(what string, got, want int64) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s: %d, want %d", what, got, want))
		}
	}
	check("resources fetched vs generated", published, generated)
	check("validate in vs fetched", by[pipeline.StageValidate].In, published)
	check("dedupe in vs validate out", by[pipeline.StageDedupe].In, by[pipeline.StageValidate].Out)
	check("omop in vs dedupe out", by[pipeline.StageOMOP].In, by[pipeline.StageDedupe].Out)
	check("sink-bronze in vs dedupe out", by[pipeline.StageSinkBronze].In, by[pipeline.StageDedupe].Out)
	check("sink-silver in vs dedupe out", by[pipeline.StageSinkSilver].In, by[pipeline.StageDedupe].Out)
	check("sink-omop in vs omop out", by[pipeline.StageSinkOMOP].In, by[pipeline.StageOMOP].Out)
	return bad
}

func perSecond(n int64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}
