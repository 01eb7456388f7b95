package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/producer/bulk"
	"github.com/fhirstream/fhirstream/schemas"
)

// fetchRun is one attempt's Kafka side: the transactional producer, the state it read
// and the publisher that commits lines with checkpoints.
type fetchRun struct {
	cfg                     *Config
	topics                  schemas.Topics
	stateTopic              string
	identity, sinceIdentity string
	exportKey               string // the state key of this command's export
	admCl, cl               *kgo.Client
	tm                      *topicMaker
	state                   map[string][]byte
	pub                     *publisher
	bc                      *bulk.Client // the export's client, once made
}

// openRun creates the state and dead-letter topics, initialises the transactional
// producer (fencing a zombie of an earlier run), reads the state topic and opens the
// first transaction.
func openRun(ctx context.Context, cfg *Config) (*fetchRun, error) {
	topics, err := schemas.NewTopics(cfg.Kafka.TopicPrefix)
	if err != nil {
		return nil, err
	}
	fr := &fetchRun{cfg: cfg, topics: topics, stateTopic: topics.State("fetcher")}
	fr.identity, fr.sinceIdentity = cfg.identities()
	fr.exportKey = "export/" + fr.identity
	topicOpts := kafkaclient.TopicOptions{Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, MaxMessageBytes: cfg.Kafka.MaxRecordBytes}
	if topicOpts.ReplicationFactor == 0 {
		topicOpts.ReplicationFactor = -1
	}
	if fr.admCl, err = cfg.Kafka.NewClient(); err != nil {
		return nil, err
	}
	fr.tm = &topicMaker{adm: kadm.NewClient(fr.admCl), topics: topics, opts: topicOpts, done: map[string]bool{}}
	if err := fr.tm.ensureSpecs(ctx, []kafkaclient.TopicSpec{kafkaclient.StateTopic(topics, "fetcher", topicOpts), dlqSpec(topics, topicOpts)}); err != nil {
		fr.admCl.Close()
		return nil, err
	}
	if fr.cl, err = newTransactionalClient(cfg, topics.Group("fhirstream-fetch-"+fr.identity)); err != nil {
		fr.admCl.Close()
		return nil, err
	}
	fail := func(err error) (*fetchRun, error) {
		fr.cl.Close()
		fr.admCl.Close()
		return nil, err
	}
	// Initialising the producer id fences a zombie of an earlier run and aborts its open
	// transaction, so the state read next is final.
	if _, _, err := fr.cl.ProducerID(ctx); err != nil {
		return fail(fmt.Errorf("init transactional producer: %w", err))
	}
	if fr.state, err = loadState(ctx, cfg.Kafka, fr.stateTopic); err != nil {
		return fail(err)
	}
	fr.pub = newPublisher(ctx, fr.cl, fr.stateTopic, cfg.CommitBytes, cfg.Log)
	if err := fr.pub.begin(); err != nil {
		return fail(err)
	}
	return fr, nil
}

// newTransactionalClient is the fetcher's producer; txnID's prefix keeps two pipelines
// fetching one source from fencing each other.
func newTransactionalClient(cfg *Config, txnID string) (*kgo.Client, error) {
	return cfg.Kafka.NewClient(
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(time.Minute),
		kgo.ProducerLinger(20*time.Millisecond),
		// Records waiting for the broker cost about twice their bytes in memory (the
		// record, then its encoded batch), and the garbage collector doubles that again:
		// 16 MiB keeps the fetcher's peak RSS well under 200 MB while the broker is busy.
		kgo.MaxBufferedBytes(int(min(cfg.CommitBytes, 16<<20))),
		// The fetcher creates raw topics as it meets new types, after this client has
		// loaded metadata; franz-go's default minimum metadata age (5s) would hold the
		// first records to each new topic (and so the next commit) for up to 5 seconds.
		kgo.MetadataMinAge(100*time.Millisecond),
	)
}

func (fr *fetchRun) close(ctx context.Context) {
	fr.pub.abort(context.WithoutCancel(ctx))
	fr.cl.Close()
	fr.admCl.Close()
	if fr.bc != nil {
		// Connections the transport dialled and kept, some never used: closing them lets
		// the server see the client gone at once.
		fr.bc.HTTP.CloseIdleConnections()
	}
}

// commitExport commits ex as the state of this command's export.
func (fr *fetchRun) commitExport(ctx context.Context, ex exportState, extra ...*kgo.Record) error {
	ex.Updated = time.Now().UTC()
	return fr.pub.commit(ctx, append([]*kgo.Record{stateRecord(fr.stateTopic, fr.exportKey, ex)}, extra...)...)
}
