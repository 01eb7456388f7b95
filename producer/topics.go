package producer

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/producer/ehrhttp"
	"github.com/fhirstream/fhirstream/schemas"
)

// topicMaker creates the topics the fetcher writes, once each, with the contract's
// configs (record size limit that fits MaxRecordBytes).
type topicMaker struct {
	adm    *kadm.Client
	topics schemas.Topics
	opts   kafkaclient.TopicOptions
	mu     sync.Mutex
	done   map[string]bool
}

func dlqSpec(t schemas.Topics, o kafkaclient.TopicOptions) kafkaclient.TopicSpec {
	for _, s := range kafkaclient.ContractTopics(t, nil, nil, o) {
		if s.Name == t.DLQ() {
			return s
		}
	}
	return kafkaclient.TopicSpec{Name: t.DLQ()} // unreachable: ContractTopics always lists the DLQ
}

func (tm *topicMaker) ensureSpecs(ctx context.Context, specs []kafkaclient.TopicSpec) error {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	var todo []kafkaclient.TopicSpec
	for _, s := range specs {
		if !tm.done[s.Name] {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	res, err := kafkaclient.EnsureTopicsExist(ctx, tm.adm, todo)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	_ = res
	for _, s := range todo {
		tm.done[s.Name] = true
	}
	return nil
}

// ensureRawTypes creates the raw topics of resource types.
func (tm *topicMaker) ensureRawTypes(ctx context.Context, types []string) error {
	var specs []kafkaclient.TopicSpec
	for _, typ := range types {
		if !schemas.ValidResourceType(typ) {
			return fmt.Errorf("manifest type %q is not a FHIR resource type", ehrhttp.Bound(typ, 64))
		}
		for _, s := range kafkaclient.ContractTopics(tm.topics, []string{typ}, nil, tm.opts) {
			if s.Name == tm.topics.Raw(typ) {
				specs = append(specs, s)
			}
		}
	}
	return tm.ensureSpecs(ctx, specs)
}

func (tm *topicMaker) ensureRaw(ctx context.Context, typ string) error {
	tm.mu.Lock()
	done := tm.done[tm.topics.Raw(typ)]
	tm.mu.Unlock()
	if done {
		return nil
	}
	return tm.ensureRawTypes(ctx, []string{typ})
}
