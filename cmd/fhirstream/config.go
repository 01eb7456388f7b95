package main

// One configuration model for every command: each flag can also be set by its
// FHIRSTREAM_<FLAG> environment variable and by a key of the same name in an optional
// YAML file (--config or FHIRSTREAM_CONFIG). The root command resolves them for whichever
// command runs, before it runs, with the precedence flag > env > file > default; 'config
// print' shows the outcome for any command.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/fhirstream/fhirstream/internal/kafkaclient"
)

// configFlag is the persistent flag naming the config file; configEnv backs it.
const (
	configFlag = "config"
	configEnv  = envPrefix + "CONFIG"
)

// maskedValue stands for a secret in 'config print' output. Reading a file, a secret
// flag whose value is exactly this is treated as absent, so that printed output can be
// fed back as a config file while the secret itself keeps coming from the environment.
const maskedValue = "*****"

var configPath string

func init() {
	rootCmd.PersistentFlags().StringVar(&configPath, configFlag, "",
		"YAML file of flag values, keyed by flag name, optionally in per-command sections (env "+configEnv+"); precedence: flag > env > file > default")
	rootCmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Name() == "help" || cmd.HasParent() && cmd.Parent().Name() == "completion" {
			return nil // cobra's own commands read no settings: help works with a broken file
		}
		file, err := loadConfigFile(configFileName(cmd))
		if err != nil {
			return err
		}
		if _, err := resolveFlags(cmd.Flags(), file, file.valuesFor(cmd)); err != nil {
			return err
		}
		return setupLogging(cmd)
	}
	addCommand(newConfigCmd())
}

// configFileName is --config if given, else FHIRSTREAM_CONFIG ("" for no file).
func configFileName(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup(configFlag); f != nil && f.Changed {
		return f.Value.String()
	}
	return os.Getenv(configEnv)
}

// configFile is a parsed config file: a YAML mapping whose keys are flag names, with
// values applied to every command that has the flag, or names of subcommands whose
// mapping values apply only to that command (and its own subcommands):
//
//	brokers: [kafka-0:9092, kafka-1:9092]
//	consume:
//	  max-poll-records: 2000
//	  validate:
//	    relax: [bad-coding]
//
// The more specific section wins: 'consume validate' takes relax from consume.validate,
// max-poll-records from consume and brokers from the top level.
type configFile struct {
	path string
	top  *yaml.Node // the top-level mapping; nil without a file
}

// loadConfigFile reads and checks the file at path; "" is no file.
func loadConfigFile(path string) (*configFile, error) {
	cf := &configFile{path: path}
	if path == "" {
		return cf, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return cf, nil // an empty file sets nothing
	case err != nil:
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: want one YAML document, found more", path)
	}
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return cf, nil // only comments
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s:%d: want a mapping of flag names to values at the top level", path, top.Line)
	}
	cf.top = top
	if err := cf.check(rootCmd, top, ""); err != nil {
		return nil, err
	}
	return cf, nil
}

// check reports the first key of section m (for command c) that names neither a flag of
// c or of a command below it, nor a subcommand of c, so that a typo is an error instead
// of a setting silently ignored.
func (cf *configFile) check(c *cobra.Command, m *yaml.Node, keyPrefix string) error {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := keyPrefix + k.Value
		at := fmt.Sprintf("config file %s:%d", cf.path, k.Line)
		if seen[k.Value] {
			return fmt.Errorf("%s: key %q given twice", at, key)
		}
		seen[k.Value] = true
		if sub := subcommand(c, k.Value); sub != nil && v.Kind == yaml.MappingNode {
			if err := cf.check(sub, v, key+"."); err != nil {
				return err
			}
			continue
		}
		switch {
		case k.Value == configFlag:
			return fmt.Errorf("%s: key %q: a config file cannot name another; use --config or %s", at, key, configEnv)
		case k.Value == "help":
			return fmt.Errorf("%s: key %q cannot be set in a config file", at, key)
		case !treeHasFlag(c, k.Value):
			if c == rootCmd {
				return fmt.Errorf("%s: unknown key %q: no fhirstream command has a flag --%s", at, key, k.Value)
			}
			return fmt.Errorf("%s: unknown key %q: neither '%s' nor a command below it has a flag --%s", at, key, c.CommandPath(), k.Value)
		case v.Kind == yaml.MappingNode:
			return fmt.Errorf("%s: key %q: the value of a flag is a scalar or a list, not a mapping", at, key)
		}
		if meanings := flagMeanings(c, k.Value); len(meanings) > 1 {
			return fmt.Errorf("%s: key %q means different things to different commands (%s): put it in the section of the command it is for",
				at, key, strings.Join(meanings, "; "))
		}
	}
	return nil
}

// flagMeanings lists the different meanings (type and description) that flags called
// name have in c and the commands below it, with the commands having each. A key that
// applies to several commands must mean the same to all: a shared "group" would put
// every stage in one consumer group, a shared "out" would aim 'keys generate' at the lake.
func flagMeanings(c *cobra.Command, name string) []string {
	commands := map[string][]string{}
	var order []string
	visit := func(cmd *cobra.Command) {
		f := cmd.LocalNonPersistentFlags().Lookup(name)
		if f == nil {
			f = cmd.PersistentFlags().Lookup(name)
		}
		if f == nil {
			return
		}
		meaning := f.Value.Type() + ": " + f.Usage
		if commands[meaning] == nil {
			order = append(order, meaning)
		}
		commands[meaning] = append(commands[meaning], "'"+cmd.CommandPath()+"'")
	}
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		visit(cmd)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(c)
	if len(order) < 2 {
		return nil
	}
	out := make([]string, len(order))
	for i, meaning := range order {
		_, usage, _ := strings.Cut(meaning, ": ")
		out[i] = strings.Join(commands[meaning], ", ") + ": " + usage
	}
	return out
}

func subcommand(c *cobra.Command, name string) *cobra.Command {
	for _, sub := range c.Commands() {
		if sub.Name() == name || sub.HasAlias(name) {
			return sub
		}
	}
	return nil
}

// treeHasFlag reports whether c, counting the persistent flags it inherits, or any
// command below it has a flag called name.
func treeHasFlag(c *cobra.Command, name string) bool {
	if c.Flags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil || c.InheritedFlags().Lookup(name) != nil {
		return true
	}
	return slices.ContainsFunc(c.Commands(), func(sub *cobra.Command) bool { return treeHasFlag(sub, name) })
}

// valuesFor returns the file's value nodes that apply to cmd, by flag name: top-level
// keys, overridden by the section of each command on the way down to cmd.
func (cf *configFile) valuesFor(cmd *cobra.Command) map[string]*yaml.Node {
	vals := map[string]*yaml.Node{}
	if cf.top == nil {
		return vals
	}
	var path []*cobra.Command
	for c := cmd; c != nil && c != rootCmd; c = c.Parent() {
		path = append([]*cobra.Command{c}, path...)
	}
	m := cf.top
	for depth := 0; ; depth++ {
		var next *yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if v.Kind == yaml.MappingNode { // a section (check rejected any other mapping)
				if depth < len(path) && (path[depth].Name() == k.Value || path[depth].HasAlias(k.Value)) {
					next = v
				}
				continue
			}
			vals[k.Value] = v
		}
		if next == nil {
			return vals
		}
		m = next
	}
}

// valueSource says where a flag's effective value came from.
type valueSource string

const (
	fromFlag    valueSource = "flag"
	fromEnv     valueSource = "env"
	fromFile    valueSource = "file"
	fromDefault valueSource = "default"
)

// unconfigurable flags are left alone: --config names the file itself and --help is
// an action, not a setting.
func unconfigurable(name string) bool { return name == configFlag || name == "help" }

// resolveFlags sets every flag of fs not given on the command line from its environment
// variable, else from the file's value for it, else back to its default, and returns
// where each value came from.
func resolveFlags(fs *pflag.FlagSet, cf *configFile, fileVals map[string]*yaml.Node) (map[string]valueSource, error) {
	sources := map[string]valueSource{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || unconfigurable(f.Name) {
			return
		}
		node, inFile := fileVals[f.Name]
		if inFile && isSecret(f) && node.Kind == yaml.ScalarNode && node.Value == maskedValue {
			inFile = false
		}
		if v, inEnv := lookupEnv(f); !f.Changed && inEnv {
			sources[f.Name], err = fromEnv, setFromEnv(f, v)
			return
		}
		switch {
		case f.Changed:
			sources[f.Name] = fromFlag
		case inFile:
			sources[f.Name], err = fromFile, cf.set(f, node)
		default:
			sources[f.Name], err = fromDefault, resetToDefault(f)
		}
	})
	return sources, err
}

// set sets f from a file value: a scalar as on the command line (a comma separated list
// for a list flag), or a YAML sequence for a list flag.
func (cf *configFile) set(f *pflag.Flag, n *yaml.Node) error {
	at := fmt.Sprintf("config file %s:%d: %s", cf.path, n.Line, f.Name)
	sv, isSlice := f.Value.(pflag.SliceValue)
	var err error
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return fmt.Errorf("%s: no value (remove the key to keep the default)", at)
	case n.Kind == yaml.ScalarNode && isSlice && f.Value.Type() != "stringArray":
		err = sv.Replace(splitList(n.Value))
	case n.Kind == yaml.ScalarNode && isSlice:
		err = sv.Replace([]string{n.Value})
	case n.Kind == yaml.ScalarNode:
		if err := f.Value.Set(n.Value); err != nil {
			return fmt.Errorf("%s: %q is not a valid %s: %w", at, n.Value, f.Value.Type(), err)
		}
	case n.Kind == yaml.SequenceNode && isSlice:
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s: list entries must be single values", at)
			}
			items = append(items, item.Value)
		}
		err = sv.Replace(items)
	case n.Kind == yaml.SequenceNode:
		return fmt.Errorf("%s: takes one value, not a list", at)
	default:
		return fmt.Errorf("%s: want a single value or a list", at)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	return nil
}

// resetToDefault puts f back to its default. A flag shared by several commands (the
// root's persistent flags) may hold a value resolved for another command of this
// process, as when 'config print run' resolves run's flags after its own.
func resetToDefault(f *pflag.Flag) error {
	if f.Value.String() == f.DefValue {
		return nil
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		// pflag prints a list default as [a,b].
		return sv.Replace(splitList(strings.TrimSuffix(strings.TrimPrefix(f.DefValue, "["), "]")))
	}
	return f.Value.Set(f.DefValue)
}

// secretName matches flag names whose values are credentials. Names of files holding
// keys (--tls-key, --key) are not: a path is no secret, and masking it would make the
// printed configuration useless.
var secretName = regexp.MustCompile(`password|passwd|secret|(^|-)(token|api-key|private-key|credentials)$`)

// isSecret reports whether f holds a credential: marked so where it is defined
// (kafkaclient.SecretFlagAnnotation) or named like one.
func isSecret(f *pflag.Flag) bool {
	_, marked := f.Annotations[kafkaclient.SecretFlagAnnotation]
	return marked || secretName.MatchString(f.Name)
}

// printedFlag is one flag in 'config print' output.
type printedFlag struct {
	Value  any         `json:"value"`
	Source valueSource `json:"source"`
	Env    string      `json:"env"`
	Masked bool        `json:"masked,omitempty"`
}

// printableValue is f's value typed for YAML and JSON (booleans, numbers and lists stay
// such), with secrets masked: a secret flag's whole value, and the password of a URL.
func printableValue(f *pflag.Flag) (v any, masked bool) {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		items := append([]string{}, sv.GetSlice()...)
		for i, s := range items {
			if r, ok := redactURL(s); ok {
				items[i], masked = r, true
			}
		}
		return items, masked
	}
	s := f.Value.String()
	if isSecret(f) && s != "" {
		return maskedValue, true
	}
	if strings.Contains(s, "-----BEGIN") { // an inline PEM key given where a file was meant
		return maskedValue, true
	}
	if r, ok := redactURL(s); ok {
		return r, true
	}
	switch t := f.Value.Type(); {
	case t == "bool":
		if b, err := strconv.ParseBool(s); err == nil {
			return b, false
		}
	case strings.HasPrefix(t, "int"):
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, false
		}
	case strings.HasPrefix(t, "uint"):
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n, false
		}
	case strings.HasPrefix(t, "float"):
		if n, err := strconv.ParseFloat(s, 64); err == nil {
			return n, false
		}
	}
	return s, false
}

// redactURL masks the password of a URL with credentials in it.
func redactURL(s string) (string, bool) {
	if !strings.Contains(s, "://") {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return "", false
	}
	if _, hasPassword := u.User.Password(); !hasPassword {
		return "", false
	}
	// Redacted writes the password as xxxxx; say ***** like every other masked value.
	return strings.Replace(u.Redacted(), ":xxxxx@", ":"+maskedValue+"@", 1), true
}

// effectiveConfig is what 'config print' reports.
type effectiveConfig struct {
	// Command is the command path, "fhirstream" for the shared flags.
	Command    string                 `json:"command"`
	ConfigFile string                 `json:"config_file,omitempty"`
	Flags      map[string]printedFlag `json:"flags"`
	// section is where the values go in a config file: the command path below the root.
	section []string
}

func newConfigCmd() *cobra.Command {
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration commands run with",
		Long: `Every flag of every command can also be set by an environment variable, FHIRSTREAM_ and
the flag name in capitals with '_' for '-' (--max-poll-records: FHIRSTREAM_MAX_POLL_RECORDS;
lists comma separated), and by a YAML config file given with --config or FHIRSTREAM_CONFIG.
Precedence: flag > environment > file > default.

The file's keys are flag names. Top-level keys apply to every command that has the flag
and are ignored by the others; a key that is no flag of any command is an error, and so
is one whose flag means different things to different commands (group, out, from, ...)
outside the section of one command. A key naming a command holds a section for that
command alone, nested like the commands:

  brokers: [kafka-0:9092, kafka-1:9092]
  sasl-mechanism: SCRAM-SHA-512
  consume:
    max-poll-records: 2000
    validate:
      relax: [bad-coding]

A section overrides the levels above it. Keep secrets (--sasl-password) in the
environment: 'config print' masks them as *****, and a secret set to ***** in a file
counts as unset, so printed output can be fed back as a file.`,
	}
	var output string
	printCmd := &cobra.Command{
		Use:   "print [command...] [-- flags of that command]",
		Short: "Print the effective value of every flag of a command, and where it came from",
		Long: `Print the value each flag of a command would take, resolved from the command line,
the environment, the config file and the defaults, with its source, as YAML that can be
used as a config file (secrets masked as *****), or as JSON with --output json.

Without a command it prints the flags all commands share: logging and the Kafka
connection. Give flags of the command after --:

  fhirstream config print consume validate -- --group my-validate`,
		Example: `  fhirstream config print
  FHIRSTREAM_BROKERS=kafka:9092 fhirstream config print run --output json
  fhirstream --config site.yaml config print consume sink-omop > sink-omop.yaml`,
	}
	printCmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	printCmd.RunE = func(cmd *cobra.Command, args []string) error {
		if output != "yaml" && output != "json" {
			return fmt.Errorf("--output %q: want yaml or json", output)
		}
		words, flagArgs := args, []string(nil)
		if dash := cmd.ArgsLenAtDash(); dash >= 0 {
			words, flagArgs = args[:dash], args[dash:]
		}
		file, err := loadConfigFile(configFileName(cmd))
		if err != nil {
			return err
		}
		ec, err := effectiveConfigOf(words, flagArgs, file)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(ec)
		}
		return ec.writeYAML(w)
	}
	cfg.AddCommand(printCmd)
	return cfg
}

// effectiveConfigOf resolves the flags of the command named by words (the shared flags
// when there are none) with flagArgs as its command line.
func effectiveConfigOf(words, flagArgs []string, file *configFile) (*effectiveConfig, error) {
	ec := &effectiveConfig{ConfigFile: file.path, Flags: map[string]printedFlag{}}
	var fs *pflag.FlagSet
	var sources map[string]valueSource
	if len(words) == 0 {
		// A fresh set of the shared flags: the root's persistent flags and the Kafka
		// connection every Kafka command binds.
		fs = pflag.NewFlagSet("fhirstream", pflag.ContinueOnError)
		fs.AddFlagSet(rootCmd.PersistentFlags())
		kc := kafkaclient.Defaults()
		kc.BindFlags(fs)
		saved := saveFlags(rootCmd.PersistentFlags())
		defer restoreFlags(saved)
		if err := fs.Parse(flagArgs); err != nil {
			return nil, fmt.Errorf("flags: %w", err)
		}
		ec.Command = rootCmd.Name()
		var err error
		if sources, err = resolveFlags(fs, file, file.valuesFor(rootCmd)); err != nil {
			return nil, err
		}
	} else {
		target, rest, err := rootCmd.Find(words)
		if err != nil || len(rest) > 0 || target == rootCmd {
			return nil, fmt.Errorf("no command %q: see 'fhirstream --help'", strings.Join(words, " "))
		}
		// Resolving sets the target's flags; put them back afterwards so that this
		// process, and any command run in it later (tests), sees them untouched.
		saved := saveFlags(target.Flags())
		saved = append(saved, saveFlags(target.InheritedFlags())...)
		defer restoreFlags(saved)
		if err := target.ParseFlags(flagArgs); err != nil {
			return nil, fmt.Errorf("flags of '%s': %w", target.CommandPath(), err)
		}
		fs = target.Flags()
		ec.Command = target.CommandPath()
		for c := target; c != rootCmd; c = c.Parent() {
			ec.section = append([]string{c.Name()}, ec.section...)
		}
		if sources, err = resolveFlags(fs, file, file.valuesFor(target)); err != nil {
			return nil, err
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if unconfigurable(f.Name) {
			return
		}
		v, masked := printableValue(f)
		ec.Flags[f.Name] = printedFlag{Value: v, Source: sources[f.Name], Env: envName(f.Name), Masked: masked}
	})
	return ec, nil
}

// writeYAML writes ec as a config file: the values in the section of the command, each
// with its source as a comment.
func (ec *effectiveConfig) writeYAML(w io.Writer) error {
	body := &yaml.Node{Kind: yaml.MappingNode}
	names := make([]string, 0, len(ec.Flags))
	for name := range ec.Flags {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		pf := ec.Flags[name]
		var v yaml.Node
		if err := v.Encode(pf.Value); err != nil {
			return fmt.Errorf("flag %s: %w", name, err)
		}
		if v.Kind == yaml.SequenceNode {
			v.Style = yaml.FlowStyle
		}
		v.LineComment = string(pf.Source)
		if pf.Source == fromEnv {
			v.LineComment += " " + pf.Env
		}
		if pf.Masked {
			v.LineComment += "; secret, masked: set it with " + pf.Env
		}
		body.Content = append(body.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, &v)
	}
	doc := body
	for i := len(ec.section) - 1; i >= 0; i-- {
		doc = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: ec.section[i]}, doc}}
	}
	doc.HeadComment = fmt.Sprintf("Effective configuration of '%s'; after each value, where it came from.\nPrecedence: flag > env > file > default.", ec.Command)
	if ec.ConfigFile != "" {
		doc.HeadComment += "\nConfig file: " + ec.ConfigFile
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

// savedFlag is a flag's value and Changed mark, to put back with restoreFlags.
type savedFlag struct {
	flag    *pflag.Flag
	value   string
	list    []string
	changed bool
}

func saveFlags(fs *pflag.FlagSet) []savedFlag {
	var saved []savedFlag
	fs.VisitAll(func(f *pflag.Flag) {
		s := savedFlag{flag: f, value: f.Value.String(), changed: f.Changed}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			s.list = append([]string{}, sv.GetSlice()...)
		}
		saved = append(saved, s)
	})
	return saved
}

func restoreFlags(saved []savedFlag) {
	for _, s := range saved {
		if sv, ok := s.flag.Value.(pflag.SliceValue); ok {
			_ = sv.Replace(s.list)
		} else {
			_ = s.flag.Value.Set(s.value)
		}
		s.flag.Changed = s.changed
	}
}
