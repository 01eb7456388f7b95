package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fhirstream/fhirstream/consumers/deid"
	"github.com/fhirstream/fhirstream/schemas"
)

// deidFlags are the de-identification settings of the commands that run the deid stage.
type deidFlags struct {
	config string // a preset name or a configuration file
	keys   string // a key file; the environment overrides it
}

func bindDeidFlags(fs *pflag.FlagSet, d *deidFlags, preset string) {
	fs.StringVar(&d.config, "deid-config", preset, "de-identification rules: a preset ("+strings.Join(deid.Presets(), ", ")+") or a configuration file in the format of Microsoft's FHIR anonymizer (docs/deid.md) (env FHIRSTREAM_DEID_CONFIG)")
	fs.StringVar(&d.keys, "deid-keys", "", "JSON file with cryptoHashKey, dateShiftKey and encryptKey; "+deid.EnvCryptoHashKey+", "+deid.EnvDateShiftKey+" and "+deid.EnvEncryptKey+" override it; never a flag value (env FHIRSTREAM_DEID_KEYS)")
}

// deidentifyFlag binds --deidentify, the topology variant every command that reads or
// names the de-identified topics must agree on (one meaning in a shared config file).
func deidentifyFlag(fs *pflag.FlagSet, p *bool) {
	fs.BoolVar(p, "deidentify", false, "the pipeline de-identifies: the deid stage runs between dedupe and omop, and omop and the silver sink read <prefix>.deid.<Type> (env FHIRSTREAM_DEIDENTIFY)")
}

// load returns the configuration and keys (deid.Load, the environment overriding the key file).
func (d *deidFlags) load() (*deid.Config, deid.Keys, error) {
	return deid.Load(d.config, d.keys, os.Getenv)
}

func newConsumeDeidCmd() *cobra.Command {
	var d deidFlags
	cmd := &cobra.Command{
		Use:   "deid",
		Short: "De-identify resources: <prefix>.unique.* → <prefix>.deid.* (HIPAA Safe Harbor or a limited data set)",
		Long: `deid applies de-identification rules to every resource on <prefix>.unique.<Type> and
writes the result to <prefix>.deid.<Type>, keyed by the pseudonymised id: ids and every
reference to them are hashed with one keyed HMAC, so links survive; dates shift by a
per-patient offset, so intervals survive; free text is removed unless a rule keeps it. A
resource a rule cannot process is dead-lettered, never passed on with PHI.

The rules are in the format of Microsoft's FHIR anonymizer (fhirPathRules and
parameters); built-in presets cover HIPAA Safe Harbor and a limited data set, and
docs/deid.md documents each, element by element. Run omop and the silver sink with
--deidentify so they read the de-identified topics; every instance must use the same keys.`,
		Example: `  export FHIRSTREAM_DEID_CRYPTO_HASH_KEY=... FHIRSTREAM_DEID_DATE_SHIFT_KEY=...
  fhirstream consume deid --deid-config safe-harbor-dateshift
  fhirstream consume omop --deidentify`,
		Args: cobra.NoArgs,
	}
	f := bindStageFlags(cmd, defaultMetricsAddr(schemas.NodeDeid))
	bindDeidFlags(cmd.Flags(), &d, "safe-harbor")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		t, err := schemas.NewTopics(f.kc.TopicPrefix)
		if err != nil {
			return err
		}
		cfg, keys, err := d.load()
		if err != nil {
			return err
		}
		// Fail here, with the rule that is wrong, rather than when the first record comes.
		if _, err := deid.New(cfg, keys); err != nil {
			return err
		}
		return f.run(cmd, deid.Definition(t.Topology(schemas.TopologyOptions{Deidentify: true}), cfg, keys))
	}
	return cmd
}
