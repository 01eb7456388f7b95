// Package testkafka gives integration tests a Kafka cluster chosen by one environment
// variable, so the same test code runs on both:
//
//   - FHIRSTREAM_TEST_BROKERS unset: an in-process kfake cluster (franz-go's fake broker,
//     speaking the real protocol), started per test and closed when it ends;
//   - FHIRSTREAM_TEST_BROKERS=host:port[,...]: that real cluster (.ci/run starts an
//     Apache Kafka broker with deploy/kafka/kafka-local.sh and sets it).
//
// On a shared real cluster every test gets its own topic prefix and group names, so
// tests never see each other's records.
package testkafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/fakebroker"
	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// EnvBrokers names the environment variable selecting a real broker.
const EnvBrokers = "FHIRSTREAM_TEST_BROKERS"

// Real reports whether tests run against a real broker.
func Real() bool { return strings.TrimSpace(os.Getenv(EnvBrokers)) != "" }

// Cluster is the broker a test talks to.
type Cluster struct {
	// Brokers are the seed addresses.
	Brokers []string
	// Prefix is a topic prefix unique to this test.
	Prefix string
	// Fake is the in-process cluster, nil on a real broker. Tests that need to restart
	// the broker or inject faults use it (and skip on a real one).
	Fake *kfake.Cluster
}

// New returns the cluster for t: kfake unless FHIRSTREAM_TEST_BROKERS is set.
func New(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{Prefix: "t" + randomHex(6)}
	if Real() {
		c.Brokers = strings.Split(os.Getenv(EnvBrokers), ",")
		t.Cleanup(func() { c.deleteOwn(t) })
		return c
	}
	fake, err := fakebroker.New(
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(3),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("start kfake cluster: %v", err)
	}
	t.Cleanup(fake.Close)
	c.Fake = fake
	c.Brokers = fake.ListenAddrs()
	return c
}

// Config returns a client configuration for the cluster with the test's topic prefix.
func (c *Cluster) Config() kafkaclient.Config {
	cfg := kafkaclient.Defaults()
	cfg.Brokers = c.Brokers
	cfg.TopicPrefix = c.Prefix
	cfg.ClientID = "fhirstream-test"
	return cfg
}

// Group returns a consumer group name unique to this test.
func (c *Cluster) Group(name string) string { return c.Prefix + "-" + name }

// Client returns a client closed when the test ends.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cfg := c.Config()
	cl, err := cfg.NewClient(opts...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client closed when the test ends.
func (c *Cluster) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(c.Client(t))
}

// CreateTopics creates topics with partitions each, failing the test on error.
func (c *Cluster) CreateTopics(t testing.TB, partitions int32, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// As the contract's topics are (kafkaclient.ContractTopics): a broker's default
	// limit refuses the producers' larger batches, and the stages refuse such topics.
	limit := strconv.Itoa(int(c.Config().MaxRecordBytes))
	resp, err := c.Admin(t).CreateTopics(ctx, partitions, 1, map[string]*string{"max.message.bytes": &limit}, topics...)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
	// A real broker acknowledges a create before its metadata has the topic; a test
	// producing at once would otherwise fail with UNKNOWN_TOPIC_OR_PARTITION.
	if err := kafkaclient.WaitTopicsVisible(ctx, c.Admin(t), topics); err != nil {
		t.Fatalf("create topics: %v", err)
	}
}

// ReadAll reads topics from the start with read_committed isolation up to each
// partition's last stable offset as it is when ReadAll begins (kafkaclient.ReadCommitted)
// and returns the data records. Topics that do not exist read as empty.
func (c *Cluster) ReadAll(t testing.TB, topics ...string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	if err := kafkaclient.ReadCommitted(ctx, c.Config(), topics, func(r *kgo.Record) { out = append(out, r) }); err != nil {
		t.Fatalf("reading %v: %v", topics, err)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deleteOwn deletes the topics and consumer groups of the test from a real cluster, so a
// long-lived broker does not pile up thousands of test topics (a broker runs out of file
// descriptors at some point: three files per partition). Failures are logged, not fatal:
// the test's outcome is already decided.
func (c *Cluster) deleteOwn(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := c.Config()
	cl, err := cfg.NewClient()
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if topics, err := adm.ListTopics(ctx); err == nil {
		var own []string
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, c.Prefix+".") || strings.HasPrefix(name, c.Prefix+"-") {
				own = append(own, name)
			}
		}
		if len(own) > 0 {
			if _, err := adm.DeleteTopics(ctx, own...); err != nil {
				t.Logf("cleanup: delete %d topics: %v", len(own), err)
			}
		}
	}
	if groups, err := adm.ListGroups(ctx); err == nil {
		var own []string
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, c.Prefix) {
				own = append(own, g)
			}
		}
		if len(own) > 0 {
			if _, err := adm.DeleteGroups(ctx, own...); err != nil {
				t.Logf("cleanup: delete %d groups: %v", len(own), err)
			}
		}
	}
}
