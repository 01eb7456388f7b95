package acl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/schemas"
)

// Request names the commands to grant and to whom: one Principal for all, or one per
// command named PrincipalPrefix and the command's name (User:fhirstream- gives
// User:fhirstream-validate, ...).
type Request struct {
	// Commands are command names as Commands lists them; "all" stands for every one.
	Commands        []string
	Principal       string
	PrincipalPrefix string
	Options         Options
}

// Check says whether the request names its principals one way, and only one.
func (r Request) Check() error {
	if (r.Principal == "") == (r.PrincipalPrefix == "") {
		return errors.New("give one of --principal and --principal-prefix")
	}
	return nil
}

// CommandGrants are the grants of one command for one principal.
type CommandGrants struct {
	Command   string  `json:"command"`
	Run       string  `json:"run"`
	Principal string  `json:"principal"`
	Grants    []Grant `json:"grants"`
}

// ForCommands derives the grants of the requested commands, in the order named ("all":
// the order of Commands).
func ForCommands(topo schemas.Topology, r Request) ([]CommandGrants, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	names := r.Commands
	if slices.Contains(names, "all") {
		names = Commands(topo)
	}
	var out []CommandGrants
	for _, name := range names {
		grants, err := Derive(topo, name, r.Options)
		if err != nil {
			return nil, err
		}
		p := r.Principal
		if r.PrincipalPrefix != "" {
			p = r.PrincipalPrefix + name
		}
		if err := ValidPrincipal(p); err != nil {
			return nil, err
		}
		out = append(out, CommandGrants{Command: name, Run: CommandLine(topo, name), Principal: p, Grants: grants})
	}
	return out, nil
}

// ApplyAll creates every command's ACLs through the admin API, writing a line per
// command to w as it goes.
func ApplyAll(ctx context.Context, adm *kadm.Client, set []CommandGrants, w io.Writer) error {
	for _, c := range set {
		if err := Apply(ctx, adm, c.Principal, c.Grants); err != nil {
			return fmt.Errorf("%s: %w", c.Command, err)
		}
		fmt.Fprintf(w, "%s: %d ACLs for %s\n", c.Command, len(c.Grants), c.Principal)
	}
	return nil
}

// WriteScript writes a shell script: a comment per command and grant, then the
// kafka-acls.sh line that creates the grant, naming brokers and the admin's
// --command-config file.
func WriteScript(w io.Writer, set []CommandGrants, brokers, commandConfig string) error {
	for i, c := range set {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "# %s (%s) as %s\n", c.Command, c.Run, c.Principal)
		for _, g := range c.Grants {
			args := append([]string{"kafka-acls.sh", "--bootstrap-server", brokers, "--command-config", commandConfig}, g.KafkaACLsArgs(c.Principal)...)
			fmt.Fprintf(w, "%s   # %s\n", shellJoin(args), g.Why)
		}
	}
	return nil
}

// shellJoin quotes the arguments that need it for a POSIX shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.,:/=@+", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
