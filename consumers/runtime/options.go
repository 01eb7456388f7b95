package runtime

import (
	"log/slog"
	goruntime "runtime"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/obs"
)

// DefaultMaxPollRecords is Options.MaxPollRecords' default. In `fhirstream bench
// --processes` (3,000 patients) batches of 10,000 records took validate, dedupe and omop
// from 325-367 to 273-304 MB of peak memory against 20,000, at the same CPU per resource
// (54 µs for all stages).
const DefaultMaxPollRecords = 10000

// Options tune a Run. The zero value is usable; defaults are stated per field.
type Options struct {
	// Logger receives operational logs (never record content). Default slog.Default().
	Logger *slog.Logger
	// Ready, when set, gets a readiness check "stage <name>" that passes while the
	// consumer group is joined; it is removed when Run returns.
	Ready *obs.Readiness
	// MaxPollRecords bounds one batch, and so one transaction. Default DefaultMaxPollRecords.
	// A transaction costs several broker round trips (flush, offsets, heartbeat, end
	// markers on every partition written) whatever its size, so a batch must be large
	// for that cost to be small beside the records' own; but a batch's records, and its
	// outputs until the commit, are in memory, and an aborted batch is processed again.
	MaxPollRecords int
	// PartitionWorkers bounds how many partitions of a batch are processed at once,
	// for a stage with stage.Definition.ConcurrentPartitions. Default GOMAXPROCS.
	PartitionWorkers int
	// BatchLinger is how long a batch keeps polling for more records once it has
	// some, up to MaxPollRecords: a transaction costs a few broker round trips
	// whatever its size, so fuller batches mean more records per second, at the price
	// of this much latency. Default 25ms; negative disables.
	BatchLinger time.Duration
	// InstanceID distinguishes this process in the transactional id
	// "<group>-<instance>". Default: host name plus a random suffix, which is safe
	// because fencing of zombies relies on KIP-447 stable offset fetches, not on the id.
	// A stable id per instance (a StatefulSet pod name, a systemd instance) is better:
	// a restarted instance then aborts its predecessor's open transaction at once
	// instead of waiting out the transaction timeout, and it is a static group member
	// (KIP-345) that takes its partitions back without waiting for the dead member's
	// session to time out. Two live processes must never share one.
	InstanceID string
	// MaxAttempts is how often a record is tried on a transient error before the batch
	// is aborted and polled again. Default 6.
	MaxAttempts int
	// RetryBackoff is the first wait after a transient error, doubling up to
	// MaxRetryBackoff. Defaults 100ms and 5s.
	RetryBackoff, MaxRetryBackoff time.Duration
	// ShutdownTimeout bounds finishing the current batch once the context ends. Default 30s.
	ShutdownTimeout time.Duration
	// TopicRefresh is how often topic metadata is refreshed, which is how soon a new
	// topic matching Input is consumed. Default 30s.
	TopicRefresh time.Duration
	// OutputPartitions is the partition count of output topics the runtime creates on
	// first use; 0 copies the partition count of the input topic the record came from.
	OutputPartitions int32
	// ReplicationFactor of topics the runtime creates; 0 or -1 take the broker default.
	ReplicationFactor int16
	// TransactionTimeout bounds one batch's transaction on the broker (the producer's
	// transaction.timeout.ms). Default 30s. A batch takes well under a second normally
	// and at most the retry budget of one record (a few seconds). An instance killed
	// mid-batch leaves its transaction open until this timeout, holding back
	// read_committed readers of the partitions it wrote, unless it restarts with the
	// same InstanceID: the new producer fences the old one and aborts at once. The
	// broker caps it at transaction.max.timeout.ms (15 minutes by default).
	TransactionTimeout time.Duration
	// Drain ends Run, with its last batch committed, once this instance has consumed
	// every partition assigned to it up to the end offset the partition had when it was
	// assigned; records appended later are left for the next run. For jobs rather than
	// services: a dead-letter replay, a catch-up run from a scheduler.
	Drain bool
	// NextBatch, when set, is asked before each poll for the most input records the next
	// batch may hold (at most MaxPollRecords); 0 ends Run after the last committed batch.
	// With counts taken only from committed batches (stage.CountCommitted), a caller can
	// stop after an exact number of records.
	NextBatch func() int
	// Middleware wraps the stage's processor, the first outermost, inside the runtime's
	// own stage.Recover (a panic anywhere in the chain is dead-lettered).
	Middleware []stage.Middleware
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPollRecords <= 0 {
		o.MaxPollRecords = DefaultMaxPollRecords
	}
	if o.PartitionWorkers <= 0 {
		o.PartitionWorkers = goruntime.GOMAXPROCS(0)
	}
	if o.BatchLinger == 0 {
		o.BatchLinger = 25 * time.Millisecond
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = 5 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.TopicRefresh <= 0 {
		o.TopicRefresh = 30 * time.Second
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = -1
	}
	if o.TransactionTimeout <= 0 {
		o.TransactionTimeout = 30 * time.Second
	}
}
