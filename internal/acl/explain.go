package acl

import (
	"fmt"
	"strings"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
	"github.com/fhirstream/fhirstream/schemas"
)

// Explain is kc.Explain(err) with, for a request the broker refused for lack of an ACL,
// the grants of command (as Derive gives them) that would have allowed it: the one on
// the named resource, or, when the broker's error named none (Kafka's authorization
// errors carry no resource name), every grant of command on that resource type. command
// is a name of Commands; "" adds nothing.
func Explain(err error, kc kafkaclient.Config, topo schemas.Topology, command string) error {
	if err == nil {
		return nil
	}
	explained := kc.Explain(err)
	if command == "" || !kafkaclient.IsDenied(err) {
		return explained
	}
	grants, derr := Derive(topo, command, Options{})
	if derr != nil {
		return explained
	}
	resource, names := kafkaclient.DeniedResource(err)
	var fits []string
	for _, g := range grants {
		if string(g.Resource) != resource {
			continue
		}
		if len(names) == 0 || coversAny(g, names) {
			fits = append(fits, g.String())
		}
	}
	if len(fits) == 0 {
		return explained
	}
	if len(names) == 0 {
		return &grantHint{err: explained, hint: fmt.Sprintf("'%s' needs these grants on a %s: %s", CommandLine(topo, command), resource, strings.Join(fits, "; "))}
	}
	return &grantHint{err: explained, hint: fmt.Sprintf("the grant of '%s' that allows it: %s", CommandLine(topo, command), strings.Join(fits, "; "))}
}

// coversAny reports whether g's pattern matches one of names (a name ending in "*"
// stands for a prefix).
func coversAny(g Grant, names []string) bool {
	for _, n := range names {
		n = strings.TrimSuffix(n, "*")
		if g.Pattern == Prefixed && (strings.HasPrefix(n, g.Name) || strings.HasPrefix(g.Name, n)) || g.Name == n {
			return true
		}
	}
	return false
}

type grantHint struct {
	err  error
	hint string
}

func (e *grantHint) Error() string { return e.err.Error() + "\n  " + e.hint }
func (e *grantHint) Unwrap() error { return e.err }

// CommandOf is the command name of a cobra command path such as "fhirstream consume
// validate" or "fhirstream dlq replay" ("" for commands with no grants of their own).
// resolveHanging says status ran with --resolve-hanging.
func CommandOf(path string, resolveHanging bool) string {
	fields := strings.Fields(path)
	if len(fields) > 0 && fields[0] == "fhirstream" {
		fields = fields[1:]
	}
	switch strings.Join(fields, " ") {
	case "fetch":
		return schemas.NodeFetch
	case "dlq replay":
		return schemas.NodeDLQReplay
	case "topics create":
		return CommandTopicsCreate
	case "status":
		if resolveHanging {
			return CommandStatusResolve
		}
		return CommandStatus
	}
	if len(fields) == 2 && fields[0] == "consume" {
		return fields[1]
	}
	return ""
}
