package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// ensureFixedTopics creates the dead-letter topic and the changelog if they are missing
// (brokers often have auto-creation off) and learns the changelog's partition count.
func (r *runner) ensureFixedTopics(ctx context.Context) error {
	o := kafkaclient.TopicOptions{ReplicationFactor: r.opts.ReplicationFactor, MaxMessageBytes: r.cfg.MaxRecordBytes}
	var specs []kafkaclient.TopicSpec
	for _, s := range kafkaclient.ContractTopics(r.def.Topics, nil, nil, o) {
		if s.Name == r.def.Topics.DLQ() {
			specs = append(specs, s)
		}
	}
	if r.changelog = r.def.Changelog(); r.changelog != "" {
		specs = append(specs, kafkaclient.StateTopicNamed(r.changelog, o))
	}
	if _, err := kafkaclient.EnsureTopicsExist(ctx, r.adm, specs); err != nil {
		return err
	}
	for _, s := range specs {
		r.known[s.Name] = true
	}
	if r.changelog == "" {
		return nil
	}
	n, err := r.partitions(ctx, r.changelog)
	if err != nil {
		return err
	}
	r.changelogParts = n
	return nil
}

// ensureOutput makes sure an output topic exists before the first record is produced to
// it, creating it with the partition count of the input it derives from, so a key keeps
// the same partition number from layer to layer.
func (r *runner) ensureOutput(ctx context.Context, topic, from string) error {
	r.topicMu.Lock()
	defer r.topicMu.Unlock()
	if r.known[topic] {
		return nil
	}
	parts := r.opts.OutputPartitions
	if parts <= 0 {
		var err error
		if parts, err = r.partitions(ctx, from); err != nil {
			return err
		}
	}
	spec := kafkaclient.TopicSpec{Name: topic, Partitions: parts, ReplicationFactor: r.opts.ReplicationFactor,
		Configs: map[string]string{"cleanup.policy": "delete", "max.message.bytes": fmt.Sprint(r.cfg.MaxRecordBytes)}}
	res, err := kafkaclient.EnsureTopicsExist(ctx, r.adm, []kafkaclient.TopicSpec{spec})
	if err != nil {
		return err
	}
	if len(res.Created) > 0 {
		r.opts.Logger.Info("created output topic", "stage", r.def.Name(), "topic", topic, "partitions", parts)
	}
	r.known[topic] = true
	return nil
}

func (r *runner) partitions(ctx context.Context, topic string) (int32, error) {
	if n, ok := r.topicParts[topic]; ok {
		return n, nil
	}
	// A topic just created may take a moment to show in every broker's metadata.
	var last error
	for wait := 50 * time.Millisecond; wait < 10*time.Second; wait *= 2 {
		details, err := r.adm.ListTopics(ctx, topic)
		if err != nil {
			return 0, fmt.Errorf("describe %s: %w", topic, err)
		}
		if d, ok := details[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
			r.topicParts[topic] = int32(len(d.Partitions))
			return r.topicParts[topic], nil
		} else if ok {
			last = d.Err
		}
		if !sleep(ctx, wait) {
			return 0, ctx.Err()
		}
	}
	return 0, fmt.Errorf("describe %s: %v", topic, last)
}

// changelogPartitioner sends a changelog record to the partition set on it (the input
// partition, modulo the changelog's partition count) and partitions every other record
// by key like Kafka's Java client (murmur2), so keys keep their partition across layers.
type changelogPartitioner struct{ changelog string }

func (p changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if p.changelog != "" && topic == p.changelog {
		return explicitPartition{}
	}
	return kgo.StickyKeyPartitioner(nil).ForTopic(topic)
}

type explicitPartition struct{}

func (explicitPartition) RequiresConsistency(*kgo.Record) bool { return true }
func (explicitPartition) Partition(r *kgo.Record, n int) int   { return int(r.Partition) % n }
