// Package cliconfig is one configuration model for every command of a cobra command
// tree: each flag can also be set by its <PREFIX><FLAG> environment variable and by a key
// of the same name in an optional YAML file (--config or <PREFIX>CONFIG). Install
// resolves them for whichever command runs, before it runs, with the precedence flag >
// env > file > default; the 'config print' command (NewCommand) shows the outcome for
// any command, resolving it on a fresh command tree so the running one is not touched.
package cliconfig

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
)

// ConfigFlag is the persistent flag naming the config file; the variable
// <EnvPrefix>CONFIG backs it.
const ConfigFlag = "config"

// Options say how a command tree is configured.
type Options struct {
	// EnvPrefix prefixes the environment variables backing flags: with "FHIRSTREAM_",
	// --max-poll-records reads FHIRSTREAM_MAX_POLL_RECORDS.
	EnvPrefix string
	// SecretAnnotation marks, in a flag's annotations, a flag that holds a credential
	// beyond those named like one (password, secret, token, ...): masked in 'config print'.
	SecretAnnotation string
	// SharedFlags binds to fs the flags most commands share beyond the root's persistent
	// ones (a connection's), which 'config print' without a command shows.
	SharedFlags func(fs *pflag.FlagSet)
	// Example is a sample configuration file for the 'config' command's help.
	Example string
}

func (o Options) configEnv() string { return o.EnvPrefix + "CONFIG" }

// MaskedValue stands for a secret in 'config print' output. Reading a file, a secret
// flag whose value is exactly this is treated as absent, so that printed output can be
// fed back as a config file while the secret itself keeps coming from the environment.
const MaskedValue = "*****"

// Install adds the --config flag to root and resolves the flags of whichever command of
// the tree runs, before it runs; then it calls then (set up logging, say).
func Install(root *cobra.Command, o Options, then func(*cobra.Command) error) {
	var path string
	root.PersistentFlags().StringVar(&path, ConfigFlag, "",
		"YAML file of flag values, keyed by flag name, optionally in per-command sections (env "+o.configEnv()+"); precedence: flag > env > file > default")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Name() == "help" || cmd.HasParent() && cmd.Parent().Name() == "completion" {
			return nil // cobra's own commands read no settings: help works with a broken file
		}
		file, err := loadConfigFile(root, o.configFileName(cmd))
		if err != nil {
			return err
		}
		if _, err := o.resolveFlags(cmd.Flags(), file, file.valuesFor(cmd)); err != nil {
			return err
		}
		return then(cmd)
	}
}

// configFileName is --config if given, else <EnvPrefix>CONFIG ("" for no file).
func (o Options) configFileName(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup(ConfigFlag); f != nil && f.Changed {
		return f.Value.String()
	}
	return os.Getenv(o.configEnv())
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
	root *cobra.Command // the command tree the file configures
	top  *yaml.Node     // the top-level mapping; nil without a file
}

// loadConfigFile reads and checks the file at path; "" is no file.
func loadConfigFile(root *cobra.Command, path string) (*configFile, error) {
	cf := &configFile{path: path, root: root}
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
	if err := cf.check(root, top, ""); err != nil {
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
		case k.Value == ConfigFlag:
			return fmt.Errorf("%s: key %q: a config file cannot name another; use --config or its environment variable", at, key)
		case k.Value == "help":
			return fmt.Errorf("%s: key %q cannot be set in a config file", at, key)
		case !treeHasFlag(c, k.Value):
			if c == cf.root {
				return fmt.Errorf("%s: unknown key %q: no %s command has a flag --%s", at, key, c.Name(), k.Value)
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
	for c := cmd; c != nil && c != cf.root; c = c.Parent() {
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

// Source says where a flag's effective value came from.
type Source string

// Sources.
const (
	FromFlag    Source = "flag"
	FromEnv     Source = "env"
	FromFile    Source = "file"
	FromDefault Source = "default"
)

// unconfigurable flags are left alone: --config names the file itself and --help is
// an action, not a setting.
func unconfigurable(name string) bool { return name == ConfigFlag || name == "help" }

// resolveFlags sets every flag of fs not given on the command line from its environment
// variable, else from the file's value for it, else back to its default, and returns
// where each value came from.
func (o Options) resolveFlags(fs *pflag.FlagSet, cf *configFile, fileVals map[string]*yaml.Node) (map[string]Source, error) {
	sources := map[string]Source{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || unconfigurable(f.Name) {
			return
		}
		node, inFile := fileVals[f.Name]
		if inFile && o.isSecret(f) && node.Kind == yaml.ScalarNode && node.Value == MaskedValue {
			inFile = false
		}
		if v, inEnv := os.LookupEnv(o.EnvName(f.Name)); !f.Changed && inEnv {
			sources[f.Name], err = FromEnv, o.setFromEnv(f, v)
			return
		}
		switch {
		case f.Changed:
			sources[f.Name] = FromFlag
		case inFile:
			sources[f.Name], err = FromFile, cf.set(f, node)
		default:
			sources[f.Name], err = FromDefault, resetToDefault(f)
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
// (Options.SecretAnnotation) or named like one.
func (o Options) isSecret(f *pflag.Flag) bool {
	_, marked := f.Annotations[o.SecretAnnotation]
	return marked && o.SecretAnnotation != "" || secretName.MatchString(f.Name)
}

// PrintedFlag is one flag in 'config print' output.
type PrintedFlag struct {
	Value  any    `json:"value"`
	Source Source `json:"source"`
	Env    string `json:"env"`
	Masked bool   `json:"masked,omitempty"`
}

// printableValue is f's value typed for YAML and JSON (booleans, numbers and lists stay
// such), with secrets masked: a secret flag's whole value, and the password of a URL.
func (o Options) printableValue(f *pflag.Flag) (v any, masked bool) {
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
	if o.isSecret(f) && s != "" {
		return MaskedValue, true
	}
	if strings.Contains(s, "-----BEGIN") { // an inline PEM key given where a file was meant
		return MaskedValue, true
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
	return strings.Replace(u.Redacted(), ":xxxxx@", ":"+MaskedValue+"@", 1), true
}

// Effective is what 'config print' reports: the value of every flag of a command and where
// it came from.
type Effective struct {
	// Command is the command path, "fhirstream" for the shared flags.
	Command    string                 `json:"command"`
	ConfigFile string                 `json:"config_file,omitempty"`
	Flags      map[string]PrintedFlag `json:"flags"`
	// section is where the values go in a config file: the command path below the root.
	section []string
}

// NewCommand returns the 'config' command, with 'print'. newRoot builds a fresh command
// tree like the one the command runs in: 'config print' resolves the flags of a command of
// that fresh tree, so the running tree's flags stay untouched.
func NewCommand(newRoot func() *cobra.Command, o Options) *cobra.Command {
	cfg := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration commands run with",
		Long: `Every flag of every command can also be set by an environment variable, ` + o.EnvPrefix + ` and
the flag name in capitals with '_' for '-' (--max-poll-records: ` + o.EnvName("max-poll-records") + `;
lists comma separated), and by a YAML config file given with --config or ` + o.configEnv() + `.
Precedence: flag > environment > file > default.

The file's keys are flag names. Top-level keys apply to every command that has the flag
and are ignored by the others; a key that is no flag of any command is an error, and so
is one whose flag means different things to different commands (group, out, from, ...)
outside the section of one command. A key naming a command holds a section for that
command alone, nested like the commands:

` + o.Example + `
A section overrides the levels above it. Keep secrets (passwords) in the environment:
'config print' masks them as ` + MaskedValue + `, and a secret set to ` + MaskedValue + ` in a file counts as
unset, so printed output can be fed back as a file.`,
	}
	var output string
	printCmd := &cobra.Command{
		Use:   "print [command...] [-- flags of that command]",
		Short: "Print the effective value of every flag of a command, and where it came from",
		Long: `Print the value each flag of a command would take, resolved from the command line,
the environment, the config file and the defaults, with its source, as YAML that can be
used as a config file (secrets masked as ` + MaskedValue + `), or as JSON with --output json.

Without a command it prints the flags all commands share. Give flags of the command
after --.`,
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
		ec, err := o.Print(newRoot(), o.configFileName(cmd), words, flagArgs)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if output == "json" {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(ec)
		}
		return ec.WriteYAML(w)
	}
	cfg.AddCommand(printCmd)
	return cfg
}

// Print resolves, on root (a command tree not otherwise in use: resolving sets its flags),
// the flags of the command named by words (the shared flags when there are none) with
// flagArgs as its command line and the config file path ("" for none).
func (o Options) Print(root *cobra.Command, path string, words, flagArgs []string) (*Effective, error) {
	file, err := loadConfigFile(root, path)
	if err != nil {
		return nil, err
	}
	ec := &Effective{ConfigFile: file.path, Flags: map[string]PrintedFlag{}}
	var fs *pflag.FlagSet
	var sources map[string]Source
	if len(words) == 0 {
		// The root's persistent flags and the flags most commands share.
		fs = pflag.NewFlagSet(root.Name(), pflag.ContinueOnError)
		fs.AddFlagSet(root.PersistentFlags())
		if o.SharedFlags != nil {
			o.SharedFlags(fs)
		}
		if err := fs.Parse(flagArgs); err != nil {
			return nil, fmt.Errorf("flags: %w", err)
		}
		ec.Command = root.Name()
		if sources, err = o.resolveFlags(fs, file, file.valuesFor(root)); err != nil {
			return nil, err
		}
	} else {
		target, rest, err := root.Find(words)
		if err != nil || len(rest) > 0 || target == root {
			return nil, fmt.Errorf("no command %q: see '%s --help'", strings.Join(words, " "), root.Name())
		}
		if err := target.ParseFlags(flagArgs); err != nil {
			return nil, fmt.Errorf("flags of '%s': %w", target.CommandPath(), err)
		}
		fs = target.Flags()
		ec.Command = target.CommandPath()
		for c := target; c != root; c = c.Parent() {
			ec.section = append([]string{c.Name()}, ec.section...)
		}
		if sources, err = o.resolveFlags(fs, file, file.valuesFor(target)); err != nil {
			return nil, err
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if unconfigurable(f.Name) {
			return
		}
		v, masked := o.printableValue(f)
		ec.Flags[f.Name] = PrintedFlag{Value: v, Source: sources[f.Name], Env: o.EnvName(f.Name), Masked: masked}
	})
	return ec, nil
}

// WriteYAML writes ec as a config file: the values in the section of the command, each
// with its source as a comment.
func (ec *Effective) WriteYAML(w io.Writer) error {
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
		if pf.Source == FromEnv {
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
