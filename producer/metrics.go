package producer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/internal/obs"
)

// Metrics of the fetcher, registered in obs.Registry.
var (
	metricExportDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fhirstream_fetch_export_duration_seconds", Help: "Duration of fetch runs, kickoff to last commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14)})
	metricPolls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_fetch_status_polls_total", Help: "Bulk Data status polls by HTTP status."}, []string{"status"})
	metricBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_fetch_bytes_total", Help: "NDJSON bytes read by resource type."}, []string{"type"})
	metricResources = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_fetch_resources_total", Help: "Resources published to raw topics by resource type."}, []string{"type"})
	metricErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_fetch_errors_total", Help: "Fetch errors and dead letters by kind."}, []string{"kind"})
	metricCommits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fhirstream_fetch_commits_total", Help: "Transactions committed with checkpoints."})
)

func init() {
	obs.Registry.MustRegister(metricExportDuration, metricPolls, metricBytes, metricResources, metricErrors, metricCommits)
}
