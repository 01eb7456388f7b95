package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/schemas"
)

// commandGrants are the grants of one command for one principal.
type commandGrants struct {
	Command   string      `json:"command"`
	Run       string      `json:"run"`
	Principal string      `json:"principal"`
	Grants    []acl.Grant `json:"grants"`
}

func newACLsCmd() *cobra.Command {
	var (
		principal, principalPrefix, output, commandConfig string
		deidentify, apply                                 bool
		opts                                              acl.Options
	)
	cmd := &cobra.Command{
		Use:   "acls <command>... | all",
		Short: "Print (or apply) the least Kafka ACLs each command needs, read off the topology",
		Long: `acls prints the Kafka ACLs a command needs to run under its own principal on a cluster
with an authorizer (allow.everyone.if.no.acl.found=false), as kafka-acls.sh command lines
or JSON. They are derived from the declared topology ('fhirstream topology'): a node reads
its input topics and its state, writes its outputs, the dead-letter topic and its state,
reads its consumer group and writes its transactional ids. Topic sets are granted by
PREFIXED pattern (fhir.raw. covers every resource type), single topics LITERAL. No
command needs cluster-wide rights except status --resolve-hanging (ClusterAction, to
write transaction markers, as kafka-transactions.sh abort does).

Commands: the nodes (fetch, validate, dedupe, deid, omop, sink-bronze, sink-silver,
sink-omop, dlq-replay), topics-create, status and status-resolve-hanging; "all" for
every one. Run 'fhirstream topics create' as an operator first: the fetcher and the
stages do not get Create unless --create-topics is given.

Give --principal for one principal, or --principal-prefix to name one per command
(User:fhirstream- gives User:fhirstream-validate, ...). --apply creates the ACLs
through the admin API with this command's Kafka connection, whose principal needs
Alter on the cluster (a super user).`,
		Example: `  fhirstream acls validate --principal User:fhirstream-validate
  fhirstream acls all --principal-prefix User:fhirstream- -o json
  fhirstream acls all --principal-prefix User:fhirstream- --apply   # with an admin's --brokers, SASL/TLS flags`,
		Args: cobra.MinimumNArgs(1),
	}
	kc := kafkaFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&principal, "principal", "", "principal to grant to, Type:name, such as User:fhirstream-validate")
	f.StringVar(&principalPrefix, "principal-prefix", "", "one principal per command: this prefix and the command's name, such as User:fhirstream-")
	f.StringVarP(&output, "output", "o", "text", "output format: text (kafka-acls.sh lines) or json")
	f.StringVar(&commandConfig, "command-config", "admin.properties", "the --command-config file the printed kafka-acls.sh lines name (an admin's client properties)")
	deidentifyFlag(f, &deidentify)
	f.BoolVar(&opts.CreateTopics, "create-topics", false, "also grant Create on the topics each command writes, so the fetcher and stages may create topics of new resource types")
	f.StringSliceVar(&opts.ResourceTypes, "types", nil, "resource types 'topics create' is run for (default: its own default list)")
	f.BoolVar(&apply, "apply", false, "create the ACLs through the admin API instead of printing them")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if (principal == "") == (principalPrefix == "") {
			return fmt.Errorf("give one of --principal and --principal-prefix")
		}
		t, err := schemas.NewTopics(kc.TopicPrefix)
		if err != nil {
			return err
		}
		topo := t.Topology(schemas.TopologyOptions{Deidentify: deidentify})
		set, err := aclsFor(topo, args, principal, principalPrefix, opts)
		if err != nil {
			return err
		}
		if apply {
			cl, err := kc.NewClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			for _, c := range set {
				if err := acl.Apply(cmd.Context(), adm, c.Principal, c.Grants); err != nil {
					return fmt.Errorf("%s: %w", c.Command, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d ACLs for %s\n", c.Command, len(c.Grants), c.Principal)
			}
			return nil
		}
		switch output {
		case "text":
			return printACLs(cmd.OutOrStdout(), set, strings.Join(kc.Brokers, ","), commandConfig)
		case "json":
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(set)
		}
		return fmt.Errorf("--output %q: want text or json", output)
	}
	return cmd
}

// aclsFor derives the grants of the named commands ("all" for every one).
func aclsFor(topo schemas.Topology, names []string, principal, principalPrefix string, o acl.Options) ([]commandGrants, error) {
	if slices.Contains(names, "all") {
		names = acl.Commands(topo)
	}
	var out []commandGrants
	for _, name := range names {
		grants, err := acl.Derive(topo, name, o)
		if err != nil {
			return nil, err
		}
		p := principal
		if principalPrefix != "" {
			p = principalPrefix + name
		}
		if err := acl.ValidPrincipal(p); err != nil {
			return nil, err
		}
		out = append(out, commandGrants{Command: name, Run: acl.CommandLine(topo, name), Principal: p, Grants: grants})
	}
	return out, nil
}

// printACLs writes a shell script: a comment per command and grant, then the
// kafka-acls.sh line that creates the grant.
func printACLs(w io.Writer, set []commandGrants, brokers, commandConfig string) error {
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
