package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/fhirstream/fhirstream/internal/acl"
	"github.com/fhirstream/fhirstream/schemas"
)

func newACLsCmd() *cobra.Command {
	var (
		req                   acl.Request
		output, commandConfig string
		deidentify, apply     bool
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
	f.StringVar(&req.Principal, "principal", "", "principal to grant to, Type:name, such as User:fhirstream-validate")
	f.StringVar(&req.PrincipalPrefix, "principal-prefix", "", "one principal per command: this prefix and the command's name, such as User:fhirstream-")
	f.StringVarP(&output, "output", "o", "text", "output format: text (kafka-acls.sh lines) or json")
	f.StringVar(&commandConfig, "command-config", "admin.properties", "the --command-config file the printed kafka-acls.sh lines name (an admin's client properties)")
	deidentifyFlag(f, &deidentify)
	f.BoolVar(&req.Options.CreateTopics, "create-topics", false, "also grant Create on the topics each command writes, so the fetcher and stages may create topics of new resource types")
	f.StringSliceVar(&req.Options.ResourceTypes, "types", nil, "resource types 'topics create' is run for (default: its own default list)")
	f.BoolVar(&apply, "apply", false, "create the ACLs through the admin API instead of printing them")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req.Commands = args
		if err := req.Check(); err != nil {
			return err
		}
		t, err := schemas.NewTopics(kc.TopicPrefix)
		if err != nil {
			return err
		}
		set, err := acl.ForCommands(t.Topology(schemas.TopologyOptions{Deidentify: deidentify}), req)
		if err != nil {
			return err
		}
		if apply {
			cl, err := kc.NewClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			return acl.ApplyAll(cmd.Context(), kadm.NewClient(cl), set, cmd.OutOrStdout())
		}
		switch output {
		case "text":
			return acl.WriteScript(cmd.OutOrStdout(), set, strings.Join(kc.Brokers, ","), commandConfig)
		case "json":
			return writeJSON(cmd.OutOrStdout(), set)
		}
		return fmt.Errorf("--output %q: want text or json", output)
	}
	return cmd
}
