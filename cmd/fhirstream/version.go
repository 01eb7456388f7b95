package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of fhirstream and of its Kafka client",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " (" + s.Value + ")"
					}
				}
				for _, d := range bi.Deps {
					if d.Path == "github.com/twmb/franz-go" {
						defer fmt.Fprintf(cmd.OutOrStdout(), "franz-go %s\n", d.Version)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fhirstream %s%s\n", version, rev)
		},
	}
}
