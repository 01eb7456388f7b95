package runtime

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/internal/obs"
)

// Stage metrics, registered once with obs.Registry and labelled by stage so several
// stages can run in one process (fhirstream demo, run).
var (
	mRecordsIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_records_in_total", Help: "Input records processed in committed batches.",
	}, []string{"stage", "topic"})
	mRecordsOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_records_out_total", Help: "Output records produced in committed batches.",
	}, []string{"stage", "topic"})
	mDeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_records_dead_lettered_total", Help: "Input records dead-lettered in committed batches, by source topic and error class.",
	}, []string{"stage", "topic", "reason"})
	mRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_transient_retries_total", Help: "Retries of records after a transient (non-data) error.",
	}, []string{"stage"})
	mSessionRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_session_restarts_total", Help: "Transactional sessions started anew after Begin or End failed (e.g. a broker restart).",
	}, []string{"stage"})
	mAborts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_transaction_aborts_total", Help: "Batches whose transaction aborted, by reason (rebalance, transient, produce, shutdown).",
	}, []string{"stage", "reason"})
	mBatchSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fhirstream_stage_batch_seconds", Help: "Time from poll to transaction end of one batch.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"stage"})
	mBatchRecords = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fhirstream_stage_batch_records", Help: "Input records per batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	}, []string{"stage"})
	mLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fhirstream_stage_consumer_lag", Help: "Records between the last fetched offset and the high watermark, per input partition.",
	}, []string{"stage", "topic", "partition"})
	mRestoreSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fhirstream_stage_state_restore_seconds", Help: "Time to restore partition stores from the changelog.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"stage"})
	mRestoredEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_stage_state_restored_records_total", Help: "Changelog records read while restoring state.",
	}, []string{"stage"})
)

func init() {
	obs.Registry.MustRegister(mRecordsIn, mRecordsOut, mDeadLettered, mRetries, mAborts, mSessionRestarts,
		mBatchSeconds, mBatchRecords, mLag, mRestoreSeconds, mRestoredEntries)
}
