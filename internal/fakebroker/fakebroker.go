// Package fakebroker starts the embedded Kafka broker, franz-go's kfake, that
// `fhirstream demo`, `fhirstream bench` without --brokers, `fhirstream dev-broker` and the
// tests run on, with the workaround it needs to honour read_committed.
package fakebroker

import (
	"math"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// New starts a kfake cluster with opts, fetches lifted to whole partitions.
func New(opts ...kfake.Opt) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, err
	}
	WholePartitionFetches(c)
	return c, nil
}

// WholePartitionFetches lifts the total size limit of every fetch c answers, leaving
// each partition's own limit (1 MiB for fhirstream's consumers).
//
// kfake, at the version in go.mod, ends a fetch response inside a partition once the
// total limit is reached without listing that partition's aborted transactions for the
// batches it did return, so a read_committed consumer takes an aborted transaction's
// records for committed ones. Apache Kafka lists them. With 4 MiB fetches the chaos test
// saw every line a killed fetcher had published in its aborted transaction twice (the
// restarted fetcher publishes them again); with no total limit a response never stops
// inside a partition.
func WholePartitionFetches(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if f, ok := req.(*kmsg.FetchRequest); ok {
			f.MaxBytes = math.MaxInt32
		}
		return nil, nil, false // kfake answers it, as changed; the control stays
	})
}
