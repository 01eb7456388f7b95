package sink

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/internal/obs"
)

// The sinks report in the stage family (fhirstream_stage_*), labelled stage="sink-omop"
// and so on, like every other stage: the counters the stage runtime registers are shared
// (registering an identical collector returns the one already registered), and the
// table commit metrics are the sinks' own members of the family.
type metricSet struct {
	recordsIn      *prometheus.CounterVec   // stage, topic
	recordsOut     *prometheus.CounterVec   // stage, topic: rows inserted
	deadLettered   *prometheus.CounterVec   // stage, topic, reason
	restarts       *prometheus.CounterVec   // stage
	batchSeconds   *prometheus.HistogramVec // stage
	batchRecords   *prometheus.HistogramVec // stage
	batchesEndedBy *prometheus.CounterVec   // stage, reason
	commitSecs     *prometheus.HistogramVec // stage, table
	conflicts      *prometheus.CounterVec   // stage, table
	deletes        *prometheus.CounterVec   // stage, table: keys put in equality deletes
}

var metrics = sync.OnceValue(func() *metricSet {
	return &metricSet{
		recordsIn: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_records_in_total", Help: "Input records processed in committed batches.",
		}, []string{"stage", "topic"})),
		recordsOut: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_records_out_total", Help: "Output records produced in committed batches.",
		}, []string{"stage", "topic"})),
		deadLettered: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_records_dead_lettered_total", Help: "Input records dead-lettered in committed batches, by source topic and error class.",
		}, []string{"stage", "topic", "reason"})),
		restarts: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_session_restarts_total", Help: "Transactional sessions started anew after Begin or End failed (e.g. a broker restart).",
		}, []string{"stage"})),
		batchSeconds: shared(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fhirstream_stage_batch_seconds", Help: "Time from poll to transaction end of one batch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"stage"})),
		batchRecords: shared(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fhirstream_stage_batch_records", Help: "Input records per batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}, []string{"stage"})),
		batchesEndedBy: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_sink_batches_total", Help: "Lake sink batches committed, by what ended them: rows, bytes, interval, idle (no input for the flush idle time), rebalance or stop.",
		}, []string{"stage", "reason"})),
		commitSecs: shared(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fhirstream_stage_table_commit_seconds", Help: "Time a lake sink takes to write and commit one table's share of a batch (files, catalog commit, retries).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"stage", "table"})),
		conflicts: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_table_commit_retries_total", Help: "Lake table commits tried again after a concurrent commit or an unknown outcome.",
		}, []string{"stage", "table"})),
		deletes: shared(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fhirstream_stage_table_deleted_keys_total", Help: "Keys a lake sink put in equality deletes (updated or deleted resources).",
		}, []string{"stage", "table"})),
	}
})

// shared registers c with obs.Registry, or returns the identical collector registered
// before (by the stage runtime, or by another sink in this process).
func shared[C prometheus.Collector](c C) C {
	if err := obs.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a metric of the same name with other labels: a defect, found by every test
	}
	return c
}
