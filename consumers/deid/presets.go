package deid

import (
	"embed"
	"fmt"
	"slices"
	"strings"
)

// The presets, documented element by element in docs/deid.md:
//
//	safe-harbor            HIPAA Safe Harbor (45 CFR 164.514(b)(2)): dates to the year
//	safe-harbor-dateshift  the same identifiers removed, dates shifted per patient
//	limited-data-set       a limited data set (164.514(e)): direct identifiers removed,
//	                       dates, city, state and ZIP code kept
//
//go:embed presets/*.json
var presets embed.FS

// Presets lists the names of the built-in configurations.
func Presets() []string {
	entries, _ := presets.ReadDir("presets")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	slices.Sort(names)
	return names
}

// Preset returns the built-in configuration called name.
func Preset(name string) (*Config, error) {
	b, err := PresetJSON(name)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b)
}

// PresetJSON returns the text of a built-in configuration, to start one's own from.
func PresetJSON(name string) ([]byte, error) {
	b, err := presets.ReadFile("presets/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("no de-identification preset %q (presets: %s)", name, strings.Join(Presets(), ", "))
	}
	return b, nil
}
