// Package acl says which Kafka ACLs each fhirstream command needs, derived from the
// pipeline's declared topology (never a second hand-written list), and prints them as
// kafka-acls.sh command lines or JSON, or applies them through the Kafka admin API.
//
// A grant names a resource by PREFIXED pattern where the command's names vary (every
// resource type's topic of a layer, every instance's transactional id) and LITERAL where
// one name is meant (a consumer group, the dead-letter topic). Operations are the least
// the command uses: a stage can read its input and write its outputs, no more; no
// command needs cluster-wide rights except 'status --resolve-hanging', which writes
// transaction markers as the broker does (ClusterAction, as kafka-transactions.sh
// abort needs).
package acl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ResourceType is the kind of Kafka resource an ACL is on.
type ResourceType string

// Resource types, spelled as kafka-acls.sh's --topic, --group, --transactional-id and
// --cluster options.
const (
	Topic           ResourceType = "topic"
	Group           ResourceType = "group"
	TransactionalID ResourceType = "transactional-id"
	Cluster         ResourceType = "cluster"
)

// PatternType says whether Name is a whole name or a prefix of names.
type PatternType string

// Pattern types, as kafka-acls.sh's --resource-pattern-type takes them.
const (
	Literal  PatternType = "literal"
	Prefixed PatternType = "prefixed"
)

// Operation is a Kafka ACL operation, spelled as kafka-acls.sh's --operation takes it.
type Operation string

// The operations fhirstream's commands need.
const (
	Read            Operation = "Read"
	Write           Operation = "Write"
	Create          Operation = "Create"
	Describe        Operation = "Describe"
	DescribeConfigs Operation = "DescribeConfigs"
	AlterConfigs    Operation = "AlterConfigs"
	ClusterAction   Operation = "ClusterAction"
)

// ClusterName is the name of the cluster resource, the only one there is.
const ClusterName = "kafka-cluster"

// Grant is one allowed operation on one resource pattern, for any host.
type Grant struct {
	Resource  ResourceType `json:"resource_type"`
	Pattern   PatternType  `json:"pattern_type"`
	Name      string       `json:"name"`
	Operation Operation    `json:"operation"`
	// Why says what the command does with it, for the table and the printout.
	Why string `json:"why"`
}

// String is "Write on topic prefix fhir.valid.", the words the error messages use too.
func (g Grant) String() string {
	if g.Resource == Cluster {
		return fmt.Sprintf("%s on the cluster", g.Operation)
	}
	kind := string(g.Resource)
	if g.Pattern == Prefixed {
		kind += " prefix"
	}
	return fmt.Sprintf("%s on %s %s", g.Operation, kind, g.Name)
}

// Key identifies a grant regardless of its Why.
func (g Grant) Key() string {
	return strings.Join([]string{string(g.Resource), string(g.Pattern), g.Name, string(g.Operation)}, "\x00")
}

// Covers reports whether the grant allows op on the named resource, as Kafka matches
// ACLs (a prefixed pattern matches every name it starts).
func (g Grant) Covers(rt ResourceType, name string, op Operation) bool {
	if g.Resource != rt || g.Operation != op {
		return false
	}
	if g.Pattern == Prefixed {
		return strings.HasPrefix(name, g.Name)
	}
	return g.Name == name
}

// KafkaACLsArgs are the arguments of the kafka-acls.sh --add line granting g to principal.
func (g Grant) KafkaACLsArgs(principal string) []string {
	args := []string{"--add", "--allow-principal", principal, "--operation", string(g.Operation)}
	if g.Resource == Cluster {
		return append(args, "--cluster")
	}
	return append(args, "--"+string(g.Resource), g.Name, "--resource-pattern-type", string(g.Pattern))
}

// builder is the kadm form of g for principal.
func (g Grant) builder(principal string) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs().Allow(principal).AllowHosts("*")
	switch g.Resource {
	case Topic:
		b = b.Topics(g.Name)
	case Group:
		b = b.Groups(g.Name)
	case TransactionalID:
		b = b.TransactionalIDs(g.Name)
	case Cluster:
		b = b.Clusters()
	default:
		return nil, fmt.Errorf("unknown resource type %q", g.Resource)
	}
	op, err := kmsg.ParseACLOperation(string(g.Operation))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g, err)
	}
	pattern := kadm.ACLPatternLiteral
	if g.Pattern == Prefixed {
		pattern = kadm.ACLPatternPrefixed
	}
	return b.Operations(op).ResourcePatternType(pattern), nil
}

// Apply creates the grants for principal ("User:validate") through the admin API. The
// caller's principal needs Alter on the cluster (a super user, typically). Existing
// ACLs are left as they are: creating one twice is not an error in Kafka.
func Apply(ctx context.Context, adm *kadm.Client, principal string, grants []Grant) error {
	for _, g := range grants {
		b, err := g.builder(principal)
		if err != nil {
			return err
		}
		res, err := adm.CreateACLs(ctx, b)
		if err != nil {
			return fmt.Errorf("grant %s to %s: %w", g, principal, err)
		}
		for _, r := range res {
			if r.Err != nil {
				return fmt.Errorf("grant %s to %s: %w", g, principal, r.Err)
			}
		}
	}
	return nil
}

// Revoke deletes the grants of principal that Apply made.
func Revoke(ctx context.Context, adm *kadm.Client, principal string, grants []Grant) error {
	for _, g := range grants {
		b, err := g.builder(principal)
		if err != nil {
			return err
		}
		res, err := adm.DeleteACLs(ctx, b)
		if err != nil {
			return fmt.Errorf("revoke %s from %s: %w", g, principal, err)
		}
		for _, r := range res {
			if r.Err != nil {
				return fmt.Errorf("revoke %s from %s: %w", g, principal, r.Err)
			}
		}
	}
	return nil
}

// ValidPrincipal checks the form "Type:name" Kafka's authorizer expects.
func ValidPrincipal(p string) error {
	typ, name, ok := strings.Cut(p, ":")
	if !ok || typ == "" || name == "" {
		return fmt.Errorf("principal %q: want Type:name, such as User:fhirstream-validate", p)
	}
	return nil
}

// uniqueSorted drops repeated grants, keeping the first (and its Why), and orders them by
// resource type, name and operation, so printouts are stable.
func uniqueSorted(grants []Grant) []Grant {
	seen := map[string]bool{}
	var out []Grant
	for _, g := range grants {
		if !seen[g.Key()] {
			seen[g.Key()] = true
			out = append(out, g)
		}
	}
	order := map[ResourceType]int{Topic: 0, Group: 1, TransactionalID: 2, Cluster: 3}
	slices.SortStableFunc(out, func(a, b Grant) int {
		if c := order[a.Resource] - order[b.Resource]; c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(string(a.Operation), string(b.Operation))
	})
	return out
}
