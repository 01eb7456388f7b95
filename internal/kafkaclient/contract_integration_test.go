package kafkaclient_test

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/internal/testkafka"
	"github.com/fhirstream/fhirstream/schemas"
)

// 'topics create' then 'topics list': the contract's topics are created, listed under the
// prefix with their partitions and the records written, and a topic outside the prefix
// only with all.
func TestIntegrationCreateAndListContractTopics(t *testing.T) {
	c := testkafka.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := c.Config()
	res, contract, err := kafkaclient.CreateContractTopics(ctx, cfg, []string{"Patient"}, kafkaclient.TopicOptions{Partitions: 2, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := kafkaclient.ContractTopics(schemas.MustTopics(c.Prefix), []string{"Patient"}, schemas.OMOPTables(), kafkaclient.TopicOptions{})
	if contract != len(want) || len(res.Created) != contract {
		t.Fatalf("contract of %d topics, %d created; want %d", contract, len(res.Created), len(want))
	}
	var sum bytes.Buffer
	res.WriteSummary(&sum, contract)
	raw := schemas.MustTopics(c.Prefix).Raw("Patient")
	if !strings.HasPrefix(sum.String(), "topics: "+strconv.Itoa(contract)+" created, 0 configs aligned, 0 already as wanted (of "+strconv.Itoa(contract)+" in the contract)\n") ||
		!strings.Contains(sum.String(), "  created "+raw+"\n") {
		t.Errorf("summary:\n%s", sum.String())
	}

	other := "x" + c.Prefix + "-other"
	c.CreateTopics(t, 1, other)
	prod := c.Client(t, kgo.UnknownTopicRetries(-1))
	for _, topic := range []string{raw, raw, raw, other} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	listed, err := kafkaclient.ListContractTopics(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(listed, func(r kafkaclient.TopicRecords) bool { return r.Name == raw })
	if len(listed) != contract || i < 0 || listed[i].Partitions != 2 || listed[i].Offsets != 3 {
		t.Fatalf("listed %d topics (want %d), %s: %+v", len(listed), contract, raw, listed)
	}
	if !slices.IsSortedFunc(listed, func(a, b kafkaclient.TopicRecords) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("not sorted by name")
	}
	all, err := kafkaclient.ListContractTopics(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(r kafkaclient.TopicRecords) bool { return r.Name == other && r.Offsets == 1 }) {
		t.Errorf("all lacks %s with its record: %+v", other, all)
	}
	var table bytes.Buffer
	if err := kafkaclient.WriteTopicRecords(&table, listed[i:i+1]); err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(strings.Split(table.String(), "\n")[1]); !slices.Equal(got, []string{raw, "2", "3"}) {
		t.Errorf("table row %q", got)
	}
}
