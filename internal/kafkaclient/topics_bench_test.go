package kafkaclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// BenchmarkEnsureTopics times what a fetch does before its first record: creating the
// raw topics of a typical export's 12 resource types into a fresh prefix, until all are
// visible in metadata. On a real broker (FHIRSTREAM_TEST_BROKERS) each create is a
// controller round trip, so this is the part of setup that grows with the type count.
func BenchmarkEnsureTopics(b *testing.B) {
	types := []string{"AllergyIntolerance", "CarePlan", "Condition", "DiagnosticReport", "Encounter", "Immunization",
		"MedicationRequest", "Observation", "Organization", "Patient", "Practitioner", "Procedure"}
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		c := testkafka.New(b)
		adm := c.Admin(b)
		tp := schemas.MustTopics(c.Prefix)
		var specs []kafkaclient.TopicSpec
		for _, s := range kafkaclient.ContractTopics(tp, types, nil, kafkaclient.TopicOptions{Partitions: 3, ReplicationFactor: 1}) {
			for _, typ := range types {
				if s.Name == tp.Raw(typ) {
					specs = append(specs, s)
				}
			}
		}
		b.StartTimer()
		start := time.Now()
		res, err := kafkaclient.EnsureTopics(ctx, adm, specs)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Created) != len(types) {
			b.Fatalf("created %d of %d topics: %+v", len(res.Created), len(types), res)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ensure")
}
