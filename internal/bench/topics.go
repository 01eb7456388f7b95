package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// waitGroupsStable waits until every stage's consumer group has a member and has
// settled (the first rebalance is over), so the clock starts on a running pipeline.
func waitGroupsStable(ctx context.Context, kc kafkaclient.Config, groups []string, failed func() error) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := failed(); err != nil {
			return err
		}
		described, err := adm.DescribeGroups(ctx, groups...)
		stable := err == nil
		for _, g := range groups {
			d, ok := described[g]
			stable = stable && ok && d.Err == nil && d.State == "Stable" && len(d.Members) > 0
		}
		if stable {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the stages to join their groups: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func createTopics(ctx context.Context, kc kafkaclient.Config, topics schemas.Topics, partitions int32) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	specs := kafkaclient.ContractTopics(topics, schemas.BulkResourceTypes, schemas.OMOPTables(),
		kafkaclient.TopicOptions{Partitions: partitions, MaxMessageBytes: kc.MaxRecordBytes})
	_, err = kafkaclient.EnsureTopics(ctx, kadm.NewClient(cl), specs)
	return err
}

// deleteTopics deletes every topic of the run's prefix (the contract's and those the
// stages created, such as state changelogs) and the run's consumer groups.
func deleteTopics(ctx context.Context, kc kafkaclient.Config, groups []string) error {
	cl, err := kc.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var errs []error
	if len(groups) > 0 {
		resp, err := adm.DeleteGroups(ctx, groups...)
		errs = append(errs, err)
		for _, r := range resp {
			errs = append(errs, r.Err)
		}
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var mine []string
	for name := range all {
		if strings.HasPrefix(name, kc.TopicPrefix+".") {
			mine = append(mine, name)
		}
	}
	if len(mine) > 0 {
		resp, err := adm.DeleteTopics(ctx, mine...)
		errs = append(errs, err)
		for _, r := range resp {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}
