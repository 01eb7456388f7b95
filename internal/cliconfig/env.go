package cliconfig

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// EnvName is the environment variable backing a flag: with the prefix FHIRSTREAM_,
// --max-poll-records is FHIRSTREAM_MAX_POLL_RECORDS.
func (o Options) EnvName(flag string) string {
	return o.EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// setFromEnv sets f from its environment variable's value v. A list flag takes a comma
// separated list, as on the command line, except a string-array flag (such as
// --type-filter), whose single values may themselves contain commas: there v is one
// entry.
func (o Options) setFromEnv(f *pflag.Flag, v string) error {
	var err error
	if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
		if f.Value.Type() == "stringArray" {
			err = sv.Replace([]string{v})
		} else {
			err = sv.Replace(splitList(v))
		}
	} else if err = f.Value.Set(v); err != nil {
		return fmt.Errorf("environment %s: %q is not a valid %s: %w", o.EnvName(f.Name), v, f.Value.Type(), err)
	}
	if err != nil {
		return fmt.Errorf("environment %s: %w", o.EnvName(f.Name), err)
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
