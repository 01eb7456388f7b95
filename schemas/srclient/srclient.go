// Package srclient connects the OMOP Avro codec (schemas.RegistryCodec) to a
// Confluent-compatible Schema Registry through franz-go's sr client, and holds every
// subject it registers to the contract's evolution policy: FULL_TRANSITIVE compatibility
// (docs/topics.md), so the registry refuses a schema change that would break a subscriber
// on any earlier version, as TestOMOPSchemasEvolveFullTransitive does for the .avsc files.
package srclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/fhirstream/fhirstream/schemas"
)

// Compatibility is the level set on every subject this package registers a schema under.
const Compatibility = sr.CompatFullTransitive

// Registry is a schemas.SchemaRegistry over a franz-go sr client. It is safe for
// concurrent use.
type Registry struct {
	cl *sr.Client

	mu         sync.Mutex
	configured map[string]bool // subjects whose compatibility level is set
}

var _ schemas.SchemaRegistry = (*Registry)(nil)

// New returns a Registry over cl.
func New(cl *sr.Client) *Registry { return &Registry{cl: cl, configured: map[string]bool{}} }

// Dial returns a Registry for the registry at url (Confluent Schema Registry, Redpanda,
// Apicurio's ccompat API, ...); opts add authentication and TLS (sr.BasicAuth,
// sr.BearerToken, sr.HTTPClient).
func Dial(url string, opts ...sr.ClientOpt) (*Registry, error) {
	cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("schema registry %s: %w", url, err)
	}
	return New(cl), nil
}

// Register sets the subject's compatibility to FULL_TRANSITIVE the first time it sees the
// subject, then registers schema under it (idempotent in the registry).
func (r *Registry) Register(ctx context.Context, subject, schema string) (int, error) {
	if err := r.configure(ctx, subject); err != nil {
		return 0, err
	}
	return r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
}

func (r *Registry) configure(ctx context.Context, subject string) error {
	r.mu.Lock()
	done := r.configured[subject]
	r.mu.Unlock()
	if done {
		return nil
	}
	for _, res := range r.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: Compatibility}, subject) {
		if res.Err != nil {
			return fmt.Errorf("set compatibility %s on subject %s: %w", Compatibility, subject, res.Err)
		}
	}
	r.mu.Lock()
	r.configured[subject] = true
	r.mu.Unlock()
	return nil
}

// Lookup returns the schema registered under id.
func (r *Registry) Lookup(ctx context.Context, id int) (schemas.RegisteredSchema, bool, error) {
	s, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return schemas.RegisteredSchema{}, false, nil
		}
		return schemas.RegisteredSchema{}, false, err
	}
	typ := ""
	if s.Type != sr.TypeAvro {
		typ = s.Type.String()
	}
	return schemas.RegisteredSchema{Schema: s.Schema, Type: typ}, true, nil
}
