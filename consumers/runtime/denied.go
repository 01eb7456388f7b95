package runtime

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// A request the broker refuses for lack of an ACL fails the same way however often it is
// retried, and so does producing to a topic whose record size limit is below the
// client's (kafkaclient.ErrTopicRecordLimit), so the stage stops with it instead of
// retrying a batch forever: the first such error of a run is kept (noteDenied) and Run
// returns it, naming the operation and resource to grant (kafkaclient.DeniedError) or
// the limit to raise.

// noteDenied keeps err if it is the first authorization or topic-limit failure of the
// run, and reports whether it is one.
func (r *runner) noteDenied(err error) bool {
	if !kafkaclient.IsDenied(err) && !errors.Is(err, kafkaclient.ErrTopicRecordLimit) {
		return false
	}
	r.deniedMu.Lock()
	defer r.deniedMu.Unlock()
	if r.denied == nil {
		r.denied = fmt.Errorf("stage %s: %w", r.def.Name(), err)
	}
	return true
}

// deniedErr is the run's first authorization failure, if any.
func (r *runner) deniedErr() error {
	r.deniedMu.Lock()
	defer r.deniedMu.Unlock()
	return r.denied
}

// promised is p's produce callback, noting a record the broker refused with the topic
// it was for.
func (r *runner) promised(p *kgo.FirstErrPromise) func(*kgo.Record, error) {
	f := p.Promise()
	return func(rec *kgo.Record, err error) {
		if err != nil {
			r.noteDenied(kafkaclient.Denied(err, "Write", "topic", rec.Topic))
		}
		f(rec, err)
	}
}

// transactionDenied names what a transactional session was refused: Write on its
// transactional id, or Read on its group (offsets commit within the transaction).
func (r *runner) transactionDenied(err error) error {
	if errors.Is(err, errSession) {
		return err
	}
	id, _ := r.sess.Client().OptValue(kgo.TransactionalID).(string)
	return kafkaclient.TransactionDenied(err, id, r.def.Node.Group)
}
