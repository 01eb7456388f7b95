package pipeline

import (
	"fmt"

	dto "github.com/prometheus/client_model/go"

	"github.com/fhirstream/fhirstream/consumers/sink"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/schemas"
)

// StageProgress is what one stage has done so far.
type StageProgress struct {
	// Name is the stage name (Stage* constants); Group its consumer group.
	Name, Group string
	// In counts input records in committed batches or files, dead-lettered ones included
	// (and, for sink-omop, the tombstones it skips).
	In int64
	// Out counts what the stage wrote in committed batches: records produced to its
	// output topics, or rows written to the lake by a sink.
	Out int64
	// DeadLetters counts inputs sent to the dead-letter topic.
	DeadLetters int64
	// Batches counts committed batches, each one Kafka transaction. For validate, dedupe
	// and omop it is the process-wide count of the stage name (the runtime's metric has
	// no topic label), so it includes other pipelines of the same process.
	Batches int64
	// BytesIn and BytesOut are the key and value bytes the stage read and emitted (a sink
	// emits no records), counted as processed, so work redone after an aborted batch
	// counts again; -1 without Config.MeasureBytes. A sink's BytesIn is what its
	// upstream stage emitted to the topics it reads.
	BytesIn, BytesOut int64
}

// Progress returns each stage's progress in data-flow order (the order of Stages). The
// counts of validate, dedupe and omop come from the stage runtime's metrics in
// obs.Registry, keeping only topics of this pipeline's prefix, so pipelines on other
// prefixes in the same process do not mix in.
func (p *Pipeline) Progress() ([]StageProgress, error) {
	families, err := obs.Registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("read stage metrics: %w", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
	}
	out := make([]StageProgress, 0, len(p.stages))
	for i, name := range p.stages {
		sp := StageProgress{Name: name, Group: p.groups[i], BytesIn: -1, BytesOut: -1}
		switch name {
		case StageSinkBronze, StageSinkSilver, StageSinkOMOP:
			layer, upstream := sink.LayerBronze, StageDedupe
			switch name {
			case StageSinkSilver:
				layer = sink.LayerSilver
			case StageSinkOMOP:
				layer, upstream = sink.LayerOMOP, StageOMOP
			}
			st := p.sinks[layer].Stats()
			sp.Out = st.TotalRows()
			sp.DeadLetters = st.DeadLetters
			sp.Batches = st.Batches
			sp.In = st.Records
			if m := p.meters[upstream]; m != nil {
				sp.BytesIn = m.Out.Load()
			}
		default:
			counted := MetricsProgress(byName, name, p.groups[i], p.topics)
			sp.In, sp.Out, sp.DeadLetters, sp.Batches = counted.In, counted.Out, counted.DeadLetters, counted.Batches
			if m := p.meters[name]; m != nil {
				sp.BytesIn, sp.BytesOut = m.In.Load(), m.Out.Load()
			}
		}
		out = append(out, sp)
	}
	return out, nil
}

// MetricsProgress is a stage's progress as its metrics in the fhirstream_stage_* family
// count it (records in, out and dead-lettered in committed batches, and batches), from
// metric families gathered from the process running it (obs.Registry, or its /metrics
// parsed), keeping only topics of topics' prefix. Lake sinks count in the same family.
// Bytes are not counted there: BytesIn and BytesOut are -1.
func MetricsProgress(families map[string]*dto.MetricFamily, name, group string, topics schemas.Topics) StageProgress {
	return StageProgress{Name: name, Group: group, BytesIn: -1, BytesOut: -1,
		In:          sumStage(families["fhirstream_stage_records_in_total"], name, topics),
		Out:         sumStage(families["fhirstream_stage_records_out_total"], name, topics),
		DeadLetters: sumStage(families["fhirstream_stage_records_dead_lettered_total"], name, topics),
		Batches:     histogramCount(families["fhirstream_stage_batch_records"], name),
	}
}

// sumStage adds up the counters of family labelled with stage whose topic is one of
// topics'.
func sumStage(family *dto.MetricFamily, stageName string, topics schemas.Topics) int64 {
	if family == nil {
		return 0 // nothing counted yet: a vector shows up at its first observation
	}
	var total float64
	for _, m := range family.GetMetric() {
		var stageOK, topicOK bool
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "stage":
				stageOK = l.GetValue() == stageName
			case "topic":
				topicOK = ownsTopic(topics, l.GetValue())
			}
		}
		if stageOK && topicOK {
			total += m.GetCounter().GetValue()
		}
	}
	return int64(total)
}

// histogramCount is the observation count of family's histogram labelled with stage.
func histogramCount(family *dto.MetricFamily, stageName string) int64 {
	for _, m := range family.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "stage" && l.GetValue() == stageName {
				return int64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func ownsTopic(topics schemas.Topics, topic string) bool {
	if _, _, ok := topics.ParseLayerTopic(topic); ok {
		return true
	}
	if _, ok := topics.ParseOMOPTopic(topic); ok {
		return true
	}
	return topic == topics.DLQ()
}
