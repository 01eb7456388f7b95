package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variables that back flags: --brokers reads
// FHIRSTREAM_BROKERS when the flag is not given on the command line.
const envPrefix = "FHIRSTREAM_"

func init() {
	rootCmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyEnv(cmd.Flags()); err != nil {
			return err
		}
		return setupLogging(cmd)
	}
}

// applyEnv sets every flag not given on the command line from its FHIRSTREAM_<NAME>
// environment variable, if set. It runs after parsing, so flag > env > default holds for
// every command without each one repeating it.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || f.Changed || err != nil {
			return
		}
		var setErr error
		if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
			setErr = sv.Replace(strings.Split(v, ","))
		} else {
			setErr = f.Value.Set(v)
		}
		if setErr != nil {
			err = fmt.Errorf("environment %s: %w", envName(f.Name), setErr)
		}
	})
	return err
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
