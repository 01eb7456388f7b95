package deid

import (
	"fmt"
	"os"
)

// Load reads the rules and keys a deid stage runs with, as the commands take them:
// config names a configuration file when one exists at that path, a preset (Presets)
// otherwise; the keys come from keyFile ("" for none) with the environment read through
// getenv overriding it (LoadKeys). Errors name the flags, --deid-config and --deid-keys.
func Load(config, keyFile string, getenv func(string) string) (*Config, Keys, error) {
	var cfg *Config
	var err error
	if _, statErr := os.Stat(config); statErr == nil {
		cfg, err = LoadConfig(config)
	} else {
		cfg, err = Preset(config)
	}
	if err != nil {
		return nil, Keys{}, fmt.Errorf("--deid-config: %w", err)
	}
	keys, err := LoadKeys(keyFile, getenv)
	if err != nil {
		return nil, Keys{}, fmt.Errorf("--deid-keys: %w", err)
	}
	return cfg, keys, nil
}
