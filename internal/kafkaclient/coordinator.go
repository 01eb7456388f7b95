package kafkaclient

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// CoordinatorWait bounds how long WaitCoordinator retries.
const CoordinatorWait = 30 * time.Second

// WaitCoordinator calls call until it returns no retriable Kafka error, for at most
// CoordinatorWait. A cluster that has just started, or whose group coordinator is
// moving, answers COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS for a while
// (a new cluster creates __consumer_offsets on the first group request): that is waited
// out, as a consumer group itself would, not reported.
func WaitCoordinator[T any](ctx context.Context, call func() (T, error)) (T, error) {
	v, err := call()
	for wait := time.Now().Add(CoordinatorWait); err != nil && kerr.IsRetriable(err) && time.Now().Before(wait); {
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		v, err = call()
	}
	return v, err
}
