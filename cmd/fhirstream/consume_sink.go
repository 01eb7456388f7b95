package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirstream/fhirstream/consumers/sink"
)

// The sink commands: consume sink-omop and consume sink-bronze.
func init() {
	consumeCmd.AddCommand(newSinkCmd(sink.LayerOMOP, "sink-omop"), newSinkCmd(sink.LayerBronze, "sink-bronze"))
}

func newSinkCmd(layer, use string) *cobra.Command {
	cfg := sink.Config{Layer: layer}
	var input, output string
	switch layer {
	case sink.LayerOMOP:
		input, output = "omop.<table> (Avro rows)", "<out>/omop/<table>/date=YYYY-MM-DD/"
	default:
		input, output = "<prefix>.unique.<Type> (FHIR JSON)", "<out>/fhir/<Type>/date=YYYY-MM-DD/"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: fmt.Sprintf("Consume %s into Parquet under %s", input, output),
		Long: fmt.Sprintf(`Consume %s as a consumer group and write Parquet files under
%s, one per (dataset, day, Kafka partition, first offset), named
<topic>+<partition>+<startOffset>.parquet.

Exactly once: files are written under a pending name and made durable (fsync, or a
completed object upload), the offsets are committed with the batch id, then the files are
published under their final names (a rename, or a server-side copy on object stores); on
partition assignment, leftovers of uncommitted batches are removed and pending files of
the committed batch published. Kill it at any point and restart: every input row is in
the lake once. Run more copies with the same --group to scale out by partitions.

--out is a directory, or an object store URL (credentials from the cloud's usual
environment, never the URL; key prefix as ?prefix=):
  s3://bucket?region=eu-west-1&prefix=lake/
  s3://bucket?endpoint=http://minio:9000&use_path_style=true&region=us-east-1
  azblob://container?prefix=lake/
  gs://bucket?prefix=lake/          (binaries built with -tags gcs)
  file:///var/lake                  (a directory through the object-store code path)`, input, output),
		Args: cobra.NoArgs,
	}
	kc := kafkaFlags(cmd)
	o := metricsFlag(cmd, ":9108")
	f := cmd.Flags()
	f.StringVar(&cfg.Out, "out", "lake", "lake root: a directory, or an object store URL such as s3://bucket?prefix=lake/ (env FHIRSTREAM_OUT)")
	f.StringVar(&cfg.Group, "group", "", `consumer group (default "fhirstream-sink-`+layer+`", under a --topic-prefix other than fhir "<prefix>-fhirstream-sink-`+layer+`"); one group per lake and layer`)
	f.StringVar(&cfg.InstanceID, "instance-id", "", "static group membership id of this copy: a restart takes its partitions back at once")
	f.StringVar(&cfg.Compression, "compression", sink.DefaultCompression, "Parquet compression: zstd, snappy, gzip, lz4 or none")
	f.IntVar(&cfg.FlushRows, "flush-rows", sink.DefaultFlushRows, "end a batch after this many rows")
	f.Int64Var(&cfg.FlushBytes, "flush-bytes", sink.DefaultFlushBytes, "end a batch after this many bytes of record values")
	f.DurationVar(&cfg.FlushInterval, "flush-interval", sink.DefaultFlushInterval, "end a batch this long after its first record (at most 30s)")
	f.IntVar(&cfg.MaxOpenFiles, "max-open-files", sink.DefaultMaxOpenFiles, "end a batch once it has this many files open")
	f.Int64Var(&cfg.RowGroupRows, "row-group-rows", sink.DefaultRowGroupRows, "rows per Parquet row group at most")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		cfg.Logger = logger
		s, err := sink.New(ctx, *kc, cfg)
		if err != nil {
			return err
		}
		if _, err := o.start(ctx); err != nil {
			return err
		}
		err = s.Run(ctx)
		st := s.Stats()
		logger.Info("sink stopped", "layer", layer, "batches", st.Batches, "files", st.FilesWritten,
			"rows", st.TotalRows(), "dead_letters", st.DeadLetters, "removed_leftovers", st.Removed)
		return err
	}
	return cmd
}
