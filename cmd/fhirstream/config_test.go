package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fhirstream/fhirstream/internal/cliconfig"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runCLI runs fhirstream with args in this process, on a command tree of its own as a
// fresh process would, and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func visitCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		visitCommands(sub, fn)
	}
}

// clearFlagEnv unsets, for the test, every environment variable that backs a flag.
func clearFlagEnv(t *testing.T) {
	t.Helper()
	configEnv := envPrefix + "CONFIG"
	t.Setenv(configEnv, "")
	os.Unsetenv(configEnv)
	visitCommands(newRootCmd(), func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if _, ok := os.LookupEnv(configOptions.EnvName(f.Name)); ok {
					t.Setenv(configOptions.EnvName(f.Name), "")
					os.Unsetenv(configOptions.EnvName(f.Name))
				}
			})
		}
	})
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fhirstream.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// printConfig runs 'config print' with args and decodes its JSON output.
func printConfig(t *testing.T, args ...string) cliconfig.Effective {
	t.Helper()
	out, err := runCLI(t, append([]string{"config", "print", "--output", "json"}, args...)...)
	if err != nil {
		t.Fatalf("config print %v: %v\n%s", args, err, out)
	}
	var ec cliconfig.Effective
	if err := json.Unmarshal([]byte(out), &ec); err != nil {
		t.Fatalf("config print %v: output is not JSON: %v\n%s", args, err, out)
	}
	return ec
}

func TestConfigPrecedence(t *testing.T) {
	clearFlagEnv(t)
	file := writeConfig(t, `
brokers: [file-0:9092, file-1:9092]
client-id: from-file
max-poll-records: 100
log-level: warn
consume:
  max-poll-records: 200
  dedupe:
    group: dedupe-group
  validate:
    relax: [bad-coding, bad-reference]
    group: validate-group
    log-level: debug
`)
	t.Setenv("FHIRSTREAM_CLIENT_ID", "from-env")
	t.Setenv("FHIRSTREAM_INSTANCE_ID", "from-env")
	ec := printConfig(t, "--config", file, "consume", "validate", "--", "--instance-id", "from-flag")

	want := map[string]cliconfig.PrintedFlag{
		"instance-id":      {Value: "from-flag", Source: cliconfig.FromFlag},                         // flag beats env
		"client-id":        {Value: "from-env", Source: cliconfig.FromEnv},                           // env beats file
		"brokers":          {Value: []any{"file-0:9092", "file-1:9092"}, Source: cliconfig.FromFile}, // a YAML list
		"max-poll-records": {Value: float64(200), Source: cliconfig.FromFile},                        // consume section beats top level
		"group":            {Value: "validate-group", Source: cliconfig.FromFile},                    // its own section
		"log-level":        {Value: "debug", Source: cliconfig.FromFile},                             // consume.validate beats top level
		"relax":            {Value: []any{"bad-coding", "bad-reference"}, Source: cliconfig.FromFile},
		"topic-prefix":     {Value: "fhir", Source: cliconfig.FromDefault},
		"metrics-addr":     {Value: "127.0.0.1:9191", Source: cliconfig.FromDefault},
	}
	for name, w := range want {
		got := ec.Flags[name]
		if !reflect.DeepEqual(got.Value, w.Value) || got.Source != w.Source {
			t.Errorf("%s = %#v from %s, want %#v from %s", name, got.Value, got.Source, w.Value, w.Source)
		}
	}
	if ec.Command != "fhirstream consume validate" || ec.ConfigFile != file {
		t.Errorf("command %q, file %q", ec.Command, ec.ConfigFile)
	}

	// The section of another command does not apply.
	ded := printConfig(t, "--config", file, "consume", "dedupe")
	if g := ded.Flags["group"]; g.Value != "dedupe-group" || g.Source != cliconfig.FromFile {
		t.Errorf("consume dedupe group = %v from %s, want dedupe-group from file", g.Value, g.Source)
	}
	if l := ded.Flags["log-level"]; l.Value != "warn" {
		t.Errorf("consume dedupe log-level = %v, want the top level's warn", l.Value)
	}
	if m := ded.Flags["max-poll-records"]; m.Value != float64(200) {
		t.Errorf("consume dedupe max-poll-records = %v, want the consume section's 200", m.Value)
	}
}

// The hook that runs before every command applies the file and the environment to the
// command's own flags, which is what the command then reads.
func TestConfigAppliedBeforeCommandRuns(t *testing.T) {
	clearFlagEnv(t)
	file := writeConfig(t, "max-poll-records: 321\nconsume:\n  validate:\n    relax: bad-coding,bad-reference\n")
	t.Setenv(envPrefix+"CONFIG", file)
	t.Setenv("FHIRSTREAM_LOG_LEVEL", "warn")
	root := newRootCmd()
	validateCmd, _, err := root.Find([]string{"consume", "validate"})
	if err != nil {
		t.Fatal(err)
	}
	if err := validateCmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := root.PersistentPreRunE(validateCmd, nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"max-poll-records": "321", "relax": "[bad-coding,bad-reference]", "log-level": "warn"} {
		if got := validateCmd.Flags().Lookup(name).Value.String(); got != want {
			t.Errorf("--%s = %s, want %s", name, got, want)
		}
	}
}

func TestConfigPrintMasksSecrets(t *testing.T) {
	clearFlagEnv(t)
	const password = "hunter2-not-for-logs"
	t.Setenv("FHIRSTREAM_SASL_PASSWORD", password)
	for _, args := range [][]string{
		{"config", "print"},
		{"config", "print", "--output", "json"},
		{"config", "print", "fetch", "--", "--token-url", "https://svc:" + password + "@ehr.example/token"},
	} {
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if strings.Contains(out, password) {
			t.Errorf("%v prints the secret:\n%s", args, out)
		}
		if !strings.Contains(out, cliconfig.MaskedValue) {
			t.Errorf("%v shows no masked value:\n%s", args, out)
		}
	}
	ec := printConfig(t)
	if p := ec.Flags["sasl-password"]; p.Value != cliconfig.MaskedValue || !p.Masked || p.Source != cliconfig.FromEnv {
		t.Errorf("sasl-password printed as %+v", p)
	}
	// A path to a key file is not a secret, and an unset secret shows as unset.
	clearFlagEnv(t)
	ec = printConfig(t, "--", "--tls-key", "/etc/fhirstream/client.key")
	if k := ec.Flags["tls-key"]; k.Value != "/etc/fhirstream/client.key" || k.Masked {
		t.Errorf("tls-key printed as %+v", k)
	}
	if p := ec.Flags["sasl-password"]; p.Value != "" || p.Masked {
		t.Errorf("unset sasl-password printed as %+v", p)
	}
}

func TestConfigFileErrors(t *testing.T) {
	clearFlagEnv(t)
	for _, tc := range []struct {
		name, file, want string
	}{
		{"typo at the top", "brokers: [a:1]\nbrokrs: [b:1]\n", `:2: unknown key "brokrs": no fhirstream command has a flag --brokrs`},
		{"typo in a section", "consume:\n  validate:\n    relx: [bad-coding]\n", `:3: unknown key "consume.validate.relx"`},
		{"flag of another command in a section", "consume:\n  validate:\n    vocab: /athena\n", `unknown key "consume.validate.vocab"`},
		{"mapping for a flag", "brokers:\n  a: 1\n", `key "brokers": the value of a flag is a scalar or a list`},
		{"a nested config file", "config: other.yaml\n", `a config file cannot name another`},
		{"twice", "brokers: a:1\nbrokers: b:1\n", `key "brokers" given twice`},
		{"not a mapping", "- brokers\n", `want a mapping of flag names to values`},
		{"bad value", "max-poll-records: many\n", `:1: max-poll-records: "many" is not a valid int`},
		{"list for a single value", "client-id: [a, b]\n", `client-id: takes one value, not a list`},
		{"no value", "client-id:\n", `client-id: no value`},
		{"not YAML", "brokers: [a\n", `config file`},
		{"group at the top", "group: site-a\n", `key "group" means different things to different commands`},
		{"group in the consume section", "consume:\n  group: g\n", `key "consume.group" means different things`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			_, err := runCLI(t, "--config", path, "config", "print", "consume", "validate")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	// A top-level flag that the running command lacks is ignored, not an error, and a
	// key that means the same to every command of its section (both sinks' out) is fine.
	path := writeConfig(t, "relax: [bad-coding]\nvocab: /athena\nconsume:\n  out: /lake\n")
	if out, err := runCLI(t, "--config", path, "config", "print"); err != nil {
		t.Fatalf("flags of other commands at the top level: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"), "version"); err == nil ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: error %v", err)
	}
}

// What 'config print' writes, read back as the config file, gives the same values.
func TestConfigPrintRoundTrip(t *testing.T) {
	for _, command := range [][]string{nil, {"consume", "validate"}, {"run"}, {"fetch"}} {
		t.Run(strings.Join(append([]string{"root"}, command...), " "), func(t *testing.T) {
			clearFlagEnv(t)
			t.Setenv("FHIRSTREAM_BROKERS", "env-0:9092,env-1:9092")
			t.Setenv("FHIRSTREAM_SASL_PASSWORD", "s3cret")
			t.Setenv("FHIRSTREAM_LOG_LEVEL", "debug")
			in := writeConfig(t, "client-id: site-a\ntls: true\nmax-record-bytes: 1048576\n")
			flags := []string{"--", "--topic-prefix", "site.a"}
			if len(command) > 0 && command[0] == "fetch" {
				flags = append(flags, "--type-filter", "Observation?category=laboratory,vital-signs", "--commit-interval", "2s")
			}
			args := append(append([]string{"--config", in, "config", "print"}, command...), flags...)
			printed, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("%v: %v", args, err)
			}
			before := printConfig(t, append(append([]string{"--config", in}, command...), flags...)...)

			// Same environment minus everything the file now holds; the secret stays in
			// the environment, as the printed comment says.
			clearFlagEnv(t)
			t.Setenv("FHIRSTREAM_SASL_PASSWORD", "s3cret")
			out := writeConfig(t, printed)
			after := printConfig(t, append([]string{"--config", out}, command...)...)

			if len(after.Flags) != len(before.Flags) {
				t.Errorf("%d flags after the round trip, %d before", len(after.Flags), len(before.Flags))
			}
			for name, b := range before.Flags {
				a := after.Flags[name]
				if !reflect.DeepEqual(a.Value, b.Value) {
					t.Errorf("%s: %#v after the round trip, %#v before", name, a.Value, b.Value)
				}
				wantSource := cliconfig.FromFile
				if name == "sasl-password" {
					wantSource = cliconfig.FromEnv // the masked placeholder in the file counts as unset
				}
				if a.Source != wantSource {
					t.Errorf("%s: from %s after the round trip, want %s", name, a.Source, wantSource)
				}
			}
			if before.Flags["brokers"].Source != cliconfig.FromEnv || before.Flags["topic-prefix"].Source != cliconfig.FromFlag ||
				before.Flags["client-id"].Source != cliconfig.FromFile {
				t.Errorf("sources before the round trip: %+v", before.Flags)
			}
		})
	}
}

func TestConfigPrintUnknownCommand(t *testing.T) {
	clearFlagEnv(t)
	for _, args := range [][]string{{"config", "print", "consume", "nosuch"}, {"config", "print", "nosuch"}} {
		if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "no command") {
			t.Errorf("%v: error %v", args, err)
		}
	}
	if _, err := runCLI(t, "config", "print", "run", "--", "--no-such-flag"); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag of the command: error %v", err)
	}
}

// The example shipped in deploy/ stays a valid config file.
func TestExampleConfigFile(t *testing.T) {
	clearFlagEnv(t)
	const example = "../../deploy/fhirstream.example.yaml"
	ec := printConfig(t, "--config", example, "consume", "sink-omop")
	for name, want := range map[string]any{
		"out":     "/data/lake",
		"brokers": []any{"kafka-0.kafka:9092", "kafka-1.kafka:9092", "kafka-2.kafka:9092"},
		"tls":     true,
	} {
		if got := ec.Flags[name]; !reflect.DeepEqual(got.Value, want) || got.Source != cliconfig.FromFile {
			t.Errorf("%s = %#v from %s, want %#v from the file", name, got.Value, got.Source, want)
		}
	}
	if _, err := runCLI(t, "--config", example, "config", "print", "fetch"); err != nil {
		t.Errorf("fetch: %v", err)
	}
}
