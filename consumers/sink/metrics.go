package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirstream/fhirstream/internal/obs"
)

// Metrics, registered once with obs.Registry; every sink in the process shares them,
// told apart by the layer label.
var (
	metricRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_sink_rows_total",
		Help: "Rows committed to the lake, by layer and dataset (OMOP table or FHIR type).",
	}, []string{"layer", "dataset"})
	metricFiles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_sink_files_total",
		Help: "Parquet files published to the lake.",
	}, []string{"layer"})
	metricDeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fhirstream_sink_dead_letters_total",
		Help: "Records the sink sent to the dead-letter topic.",
	}, []string{"layer"})
	metricFlushSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fhirstream_sink_flush_seconds",
		Help:    "Time to finish, commit and publish one batch.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"layer"})
)

func init() {
	obs.Registry.MustRegister(metricRows, metricFiles, metricDeadLetters, metricFlushSeconds)
}
