package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/fhirstream/fhirstream/consumers/sink/rows"
	"github.com/fhirstream/fhirstream/internal/lakehouse"
	"github.com/fhirstream/fhirstream/schemas"
)

// Layers, re-exported for callers that configure a sink.
const (
	LayerOMOP   = rows.LayerOMOP   // omop.<table> Avro rows → omop.<table>
	LayerSilver = rows.LayerSilver // <prefix>.unique.<Type> → fhir.<type>, current versions
	LayerBronze = rows.LayerBronze // <prefix>.unique.<Type> → bronze.<type>, appended
)

// Layers lists the layers in the order the pipeline starts their sinks.
var Layers = []string{LayerBronze, LayerSilver, LayerOMOP}

// Upsert delete modes (Config.UpsertDeletes).
const (
	// DeletesKnown deletes a key's earlier rows only when the record says the key was
	// seen before (dedupe's fhir.previous-version header): an initial load writes no
	// delete files at all.
	DeletesKnown = "known"
	// DeletesAlways deletes on every replacing record, for a lake whose dedupe state was
	// reset while the lake was kept (the lake and dedupe's state go together).
	DeletesAlways = "always"
)

// Config configures a sink. Zero fields take the defaults stated on each.
type Config struct {
	// Layer is LayerOMOP, LayerSilver or LayerBronze. Required.
	Layer string
	// Catalog is the lake's Iceberg catalog. Required (at least Catalog.Out for the
	// embedded catalog).
	Catalog lakehouse.Config
	// Group is the consumer group. Default: the topology's, "fhirstream-sink-<layer>"
	// (under the topic prefix when it is not the default). The tables record their
	// offsets under the group's name: a new group starts the tables from the topics' start.
	Group string
	// Deidentify reads what the topology's deid option says the layer reads: the silver
	// sink then takes <prefix>.deid.<Type> instead of <prefix>.unique.<Type>.
	Deidentify bool
	// InstanceID, when set, makes this member static (group.instance.id): a restarted
	// process with the same id takes its partitions back at once instead of waiting for
	// the group to expel the dead member. Give each copy its own id.
	InstanceID string

	// FlushRows ends a batch once it holds this many rows. Default 200,000.
	FlushRows int
	// FlushBytes ends a batch once the memory it holds, its records' values and its
	// rows' values, adds up to this many bytes: rows are buffered until the commit.
	// Default 16 MiB.
	FlushBytes int64
	// FlushInterval ends a batch this long after its first record: the freshness of the
	// lake, and the number of snapshots a table gets (one per batch that touches it). It
	// must stay well below the group's rebalance timeout (60 s), since a rebalance waits
	// for the batch. Default 5 s.
	FlushInterval time.Duration
	// FlushIdle ends a batch once no record has arrived for this long: the end of a
	// burst, such as a bulk export's last records, reaches the lake this soon after it
	// instead of at the interval, while a steady stream still commits once per interval.
	// At or above FlushInterval it changes nothing. Default 1 s.
	FlushIdle time.Duration
	// UpsertDeletes is DeletesKnown (default) or DeletesAlways.
	UpsertDeletes string
	// CommitParallelism is how many tables a batch commits at once. Default 4.
	CommitParallelism int
	// TopicRefresh is how often topic metadata is refreshed, which is how soon a new
	// input topic (a resource type seen for the first time) is consumed. Default 10 s.
	TopicRefresh time.Duration
	// MaxPollRecords bounds the records of one poll. Default 10,000.
	MaxPollRecords int
	// SessionTimeout is how long the group waits for a silent member before it hands the
	// member's partitions to others. Default franz-go's, 45 s.
	SessionTimeout time.Duration
	// Files tunes the Parquet files. Default compression: zstd at its fastest level
	// (fileCompression).
	Files lakehouse.FileOptions

	// Decoder reads omop.* values. Default: schemas.NewCodecs() (single-object encoding
	// only); pass a registry codec for Confluent-framed values.
	Decoder schemas.Decoder
	// Logger receives the sink's logs (never record contents). Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultFlushRows         = 200_000
	DefaultFlushBytes        = 16 << 20
	DefaultFlushInterval     = 5 * time.Second
	DefaultFlushIdle         = time.Second
	DefaultCommitParallelism = 4
	DefaultMaxPollRecords    = 10_000
)

// maxFlushInterval keeps a batch, during which rebalances wait, well inside the default
// 60 s rebalance timeout.
const maxFlushInterval = 30 * time.Second

// fileCompression is the sinks' default Parquet codec: zstd at its fastest level. At
// zstd's default level, encoding was about a fifth of the sinks' CPU; the fastest level
// cut the sinks' CPU per resource by 4-8 µs (of 37-42) in `fhirstream bench` runs, and
// made the lake 4 % larger (snappy: 68 % larger for a little less CPU).
var fileCompression = &lakehouse.ZstdCodec{Level: zstd.SpeedFastest}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Files.Compression == nil {
		out.Files.Compression = fileCompression
	}
	switch out.Layer {
	case LayerOMOP, LayerSilver, LayerBronze:
	case "":
		return out, errors.New("sink: no layer (want omop, silver or bronze)")
	default:
		return out, fmt.Errorf("sink: unknown layer %q (want omop, silver or bronze)", out.Layer)
	}
	switch out.UpsertDeletes {
	case "":
		out.UpsertDeletes = DeletesKnown
	case DeletesKnown, DeletesAlways:
	default:
		return out, fmt.Errorf("sink: unknown upsert delete mode %q (want %s or %s)", out.UpsertDeletes, DeletesKnown, DeletesAlways)
	}
	if out.FlushRows <= 0 {
		out.FlushRows = DefaultFlushRows
	}
	if out.FlushBytes <= 0 {
		out.FlushBytes = DefaultFlushBytes
	}
	if out.FlushInterval <= 0 {
		out.FlushInterval = DefaultFlushInterval
	}
	if out.FlushIdle <= 0 {
		out.FlushIdle = DefaultFlushIdle
	}
	if out.FlushInterval > maxFlushInterval {
		return out, fmt.Errorf("sink: flush interval %s is above %s: a rebalance waits for the open batch and the group would expel this member", out.FlushInterval, maxFlushInterval)
	}
	if out.CommitParallelism <= 0 {
		out.CommitParallelism = DefaultCommitParallelism
	}
	if out.MaxPollRecords <= 0 {
		out.MaxPollRecords = DefaultMaxPollRecords
	}
	if out.TopicRefresh <= 0 {
		out.TopicRefresh = 10 * time.Second
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}

// StageName is the stage name of a layer's sink in logs, metrics and dead letters, and
// its node in the topology (schemas.NodeSinkOMOP, NodeSinkSilver, NodeSinkBronze).
func StageName(layer string) string { return "sink-" + layer }
