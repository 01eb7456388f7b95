package pipeline

import (
	"context"
	"fmt"
	"regexp"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// ReadTopics reads every committed record of the topics matching pattern (a regular
// expression) with kafkaclient.ReadCommitted, calling each for every data record.
func ReadTopics(ctx context.Context, cfg kafkaclient.Config, pattern string, each func(*kgo.Record)) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("topic pattern %q: %w", pattern, err)
	}
	cl, err := cfg.NewClient()
	if err != nil {
		return err
	}
	all, err := kadm.NewClient(cl).ListTopics(ctx)
	cl.Close()
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var topics []string
	for name := range all {
		if re.MatchString(name) {
			topics = append(topics, name)
		}
	}
	return kafkaclient.ReadCommitted(ctx, cfg, topics, each)
}
