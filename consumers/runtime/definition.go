// Package runtime runs a stage (a stage.Processor) as a Kafka consumer group with
// exactly-once semantics between topics. It holds everything a stage package leaves out:
// consuming by topic pattern, producing, transactions, dead-lettering, partition-local
// state restored from a compacted changelog, retries and metrics. A stage is declared
// once, as a Definition; Run runs it until its context ends.
//
// # Exactly once
//
// Run uses franz-go's GroupTransactSession with read_committed fetches and stable offset
// fetches (KIP-447). For every poll batch it begins a transaction, processes the records,
// produces outputs, dead letters and changelog records, and ends the transaction with the
// batch's input offsets. A rebalance that revokes partitions mid-batch makes End abort:
// nothing of the batch becomes visible and the records are processed again by whoever
// owns them next. State changes of a batch are applied to the in-memory store as they are
// made, with an undo log: when its transaction aborts they are rolled back, so the store
// never keeps a change the changelog does not have.
//
// # State
//
// A stage with state gets one Store per input (topic, partition), restored before the
// partition's first record is processed, from partition p mod N of the compacted
// changelog topic Topics.State(name) (N its partition count), and dropped when the
// partition is revoked. Changelog keys are "<input topic>\x00<store key>", so one
// changelog partition can serve the same-numbered partition of every input topic and a
// restore keeps exactly the entries of its own input partition.
//
// # Errors
//
// A *stage.Rejection (bad data) dead-letters the input with its class, path and message;
// a panic in Process is recovered and dead-lettered with class "panic". Any other error is
// transient: the record is retried with backoff, and if it keeps failing the batch is
// aborted and re-polled later; it is never dead-lettered. Either way one bad record never
// blocks the records after it for good.
package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"time"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/obs"
	"github.com/fhirstream/fhirstream/schemas"
)

// Definition declares a stage: what it reads, what it keeps, and its logic. It is the one
// place where a stage's topology can be read off the code.
type Definition struct {
	// Name is the stage name used in dead-letter headers, metrics, logs and the
	// transactional id, e.g. "validate".
	Name string
	// Group is the consumer group, e.g. "fhirstream-validate".
	Group string
	// Input is a regular expression of input topics (franz-go ConsumeRegex), such as
	// Topics.LayerPattern(schemas.LayerRaw); new matching topics are picked up as they
	// appear. Exactly one of Input and InputTopics is set.
	Input string
	// InputTopics are literal input topics.
	InputTopics []string
	// Outputs describes the topics the processor emits to (names or patterns). It is
	// documentation for operators and the topology listing; the processor's emitted
	// records carry their full topic names.
	Outputs []string
	// State names the stage's state ("" for a stateless stage). Its changelog is the
	// compacted topic Topics.State(State).
	State string
	// Topics are the contract's topic names; the dead-letter topic is Topics.DLQ().
	Topics schemas.Topics
	// NewProcessor returns the stage logic. It is called once per Run.
	NewProcessor func() (stage.Processor, error)
	// NewStore returns an empty partition store; nil means a general map store. A stage
	// with a compact value layout supplies its own to keep memory per key small.
	NewStore func() stage.Store
	// ConcurrentPartitions says the processor may be called for different input
	// partitions at once (see stage.Processor), so a batch's partitions are processed
	// by up to Options.PartitionWorkers goroutines. Records of one partition are always
	// processed in order, by one goroutine.
	ConcurrentPartitions bool
}

func (d *Definition) validate() error {
	switch {
	case d.Name == "":
		return errors.New("stage definition: no name")
	case d.Group == "":
		return fmt.Errorf("stage %s: no consumer group", d.Name)
	case (d.Input == "") == (len(d.InputTopics) == 0):
		return fmt.Errorf("stage %s: give exactly one of Input (a pattern) and InputTopics", d.Name)
	case d.NewProcessor == nil:
		return fmt.Errorf("stage %s: no NewProcessor", d.Name)
	case d.Topics.Prefix == "":
		return fmt.Errorf("stage %s: no topics (use schemas.NewTopics)", d.Name)
	}
	return nil
}

// Options tune a Run. The zero value is usable; defaults are stated per field.
type Options struct {
	// Logger receives operational logs (never record content). Default slog.Default().
	Logger *slog.Logger
	// Ready, when set, gets a readiness check "stage <name>" that passes while the
	// consumer group is joined; it is removed when Run returns.
	Ready *obs.Readiness
	// MaxPollRecords bounds one batch, and so one transaction. Default 20000: a
	// transaction costs several broker round trips (flush, offsets, heartbeat, end
	// markers on every partition written) whatever its size, so a batch must be large
	// for that cost to be small beside the records' own; an aborted batch is processed
	// again, so larger batches cost more after a rebalance.
	MaxPollRecords int
	// PartitionWorkers bounds how many partitions of a batch are processed at once,
	// for a stage with Definition.ConcurrentPartitions. Default GOMAXPROCS.
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
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxPollRecords <= 0 {
		o.MaxPollRecords = 20000
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
}
