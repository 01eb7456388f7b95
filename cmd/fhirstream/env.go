package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variables that back flags: --brokers reads
// FHIRSTREAM_BROKERS when the flag is not given on the command line.
const envPrefix = "FHIRSTREAM_"

// envName is the environment variable backing a flag: --max-poll-records is
// FHIRSTREAM_MAX_POLL_RECORDS.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// lookupEnv returns the value of the environment variable backing f, if set.
func lookupEnv(f *pflag.Flag) (string, bool) {
	return os.LookupEnv(envName(f.Name))
}

// setFromEnv sets f from its environment variable's value v. A list flag takes a comma
// separated list, as on the command line, except a string-array flag (such as
// --type-filter), whose single values may themselves contain commas: there v is one
// entry.
func setFromEnv(f *pflag.Flag, v string) error {
	var err error
	if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
		if f.Value.Type() == "stringArray" {
			err = sv.Replace([]string{v})
		} else {
			err = sv.Replace(splitList(v))
		}
	} else if err = f.Value.Set(v); err != nil {
		return fmt.Errorf("environment %s: %q is not a valid %s: %w", envName(f.Name), v, f.Value.Type(), err)
	}
	if err != nil {
		return fmt.Errorf("environment %s: %w", envName(f.Name), err)
	}
	return nil
}

// splitList splits a comma separated list, trimming blanks around entries; "" is the
// empty list.
func splitList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}
