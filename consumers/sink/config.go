package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/fhirstream/fhirstream/schemas"
)

// Layers.
const (
	LayerOMOP   = "omop"   // omop.<table> Avro rows → <out>/omop/<table>/date=.../
	LayerBronze = "bronze" // <prefix>.unique.<Type> FHIR JSON → <out>/fhir/<Type>/date=.../
)

// Config configures a sink. Zero fields take the defaults stated on each.
type Config struct {
	// Layer is LayerOMOP or LayerBronze. Required.
	Layer string
	// Out is the lake root: a directory, or an object store URL (s3://bucket?prefix=lake/,
	// mem://). Required unless Storage is set.
	Out string
	// Storage overrides Out with an already opened storage (tests, embedding).
	Storage Storage
	// Group is the consumer group. Default "fhirstream-sink-<layer>". One group per lake
	// and layer: two groups writing the same root would each see the other's files as
	// leftovers.
	Group string
	// InstanceID, when set, makes this member static (group.instance.id): a restarted
	// process with the same id takes its partitions back at once instead of waiting for
	// the group to expel the dead member. Give each copy its own id.
	InstanceID string

	// Compression is the Parquet codec: zstd (default), snappy, gzip, lz4 or none.
	Compression string
	// FlushRows ends a batch once it holds this many rows. Default 200,000.
	FlushRows int
	// FlushBytes ends a batch once the record values it holds add up to this many bytes;
	// with MaxOpenFiles it bounds the memory a batch takes. Default 64 MiB.
	FlushBytes int64
	// FlushInterval ends a batch this long after its first record. It must stay well
	// below the group's rebalance timeout (60 s), since a rebalance waits for the batch.
	// Default 5 s.
	FlushInterval time.Duration
	// MaxOpenFiles ends a batch once it has this many files open (each holds up to a row
	// group in memory). Default 64.
	MaxOpenFiles int
	// RowGroupRows bounds the rows of one Parquet row group. Default 64 Ki.
	RowGroupRows int64
	// PageBufferSize is parquet-go's per-column page buffer. Default 64 KiB.
	PageBufferSize int

	// Decoder reads omop.* values. Default: schemas.NewCodecs() (single-object encoding
	// only); pass a registry codec for Confluent-framed values.
	Decoder schemas.Decoder
	// Logger receives the sink's logs (never record contents). Default slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultFlushRows      = 200_000
	DefaultFlushBytes     = 64 << 20
	DefaultFlushInterval  = 5 * time.Second
	DefaultMaxOpenFiles   = 64
	DefaultRowGroupRows   = 64 << 10
	DefaultPageBufferSize = 64 << 10
	DefaultCompression    = "zstd"
)

// maxFlushInterval keeps a batch, during which rebalances wait, well inside the default
// 60 s rebalance timeout.
const maxFlushInterval = 30 * time.Second

func (c *Config) withDefaults() (Config, error) {
	out := *c
	switch out.Layer {
	case LayerOMOP, LayerBronze:
	case "":
		return out, errors.New("sink: no layer (want omop or bronze)")
	default:
		return out, fmt.Errorf("sink: unknown layer %q (want omop or bronze)", out.Layer)
	}
	if out.Out == "" && out.Storage == nil {
		return out, errors.New("sink: no output (--out DIR or URL)")
	}
	if out.Compression == "" {
		out.Compression = DefaultCompression
	}
	if _, err := codec(out.Compression); err != nil {
		return out, err
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
	if out.FlushInterval > maxFlushInterval {
		return out, fmt.Errorf("sink: flush interval %s is above %s: a rebalance waits for the open batch and the group would expel this member", out.FlushInterval, maxFlushInterval)
	}
	if out.MaxOpenFiles <= 0 {
		out.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if out.RowGroupRows <= 0 {
		out.RowGroupRows = DefaultRowGroupRows
	}
	if out.PageBufferSize <= 0 {
		out.PageBufferSize = DefaultPageBufferSize
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}

// codec returns the Parquet compression codec called name.
func codec(name string) (compress.Codec, error) {
	switch strings.ToLower(name) {
	case "zstd":
		return &parquet.Zstd, nil
	case "snappy":
		return &parquet.Snappy, nil
	case "gzip":
		return &parquet.Gzip, nil
	case "lz4", "lz4_raw":
		return &parquet.Lz4Raw, nil
	case "none", "uncompressed":
		return &parquet.Uncompressed, nil
	}
	return nil, fmt.Errorf("sink: unknown compression %q (want zstd, snappy, gzip, lz4 or none)", name)
}

// DefaultGroup is the consumer group of a layer's sink when Config.Group is empty:
// fhirstream-sink-<layer>, under the topic prefix when it is not the default
// (schemas.Topics.Group).
func DefaultGroup(t schemas.Topics, layer string) string { return t.Group("fhirstream-sink-" + layer) }

// InputPattern is the regular expression of the topics a layer's sink consumes.
func InputPattern(t schemas.Topics, layer string) string {
	if layer == LayerBronze {
		return t.LayerPattern(schemas.LayerUnique)
	}
	return t.OMOPPattern()
}
