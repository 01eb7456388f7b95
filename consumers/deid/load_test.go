package deid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Load takes a file where one exists at the path, a preset otherwise, and keys from the
// environment; each error names its flag.
func TestLoad(t *testing.T) {
	env := map[string]string{EnvCryptoHashKey: "hash-key-of-this-test", EnvDateShiftKey: "shift-key-of-this-test"}
	getenv := func(k string) string { return env[k] }
	preset, keys, err := Load("safe-harbor", "", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if string(keys.CryptoHash) != env[EnvCryptoHashKey] || string(keys.DateShift) != env[EnvDateShiftKey] {
		t.Errorf("keys %+v do not come from the environment", keys)
	}
	want, err := Preset("safe-harbor")
	if err != nil || len(preset.Rules) == 0 || len(preset.Rules) != len(want.Rules) {
		t.Errorf("preset: %d rules, want %d (%v)", len(preset.Rules), len(want.Rules), err)
	}

	// A file named like a preset is read as the file.
	dir := t.TempDir()
	file := filepath.Join(dir, "safe-harbor")
	if err := os.WriteFile(file, []byte(`{"fhirPathRules":[{"path":"Patient.name","method":"redact"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(file, "", getenv)
	if err != nil || len(cfg.Rules) != 1 {
		t.Errorf("file: %v, %+v", err, cfg)
	}

	if _, _, err := Load("no-such-preset", "", getenv); err == nil || !strings.HasPrefix(err.Error(), "--deid-config: ") {
		t.Errorf("unknown preset: %v", err)
	}
	if _, _, err := Load("safe-harbor", filepath.Join(dir, "nokeys.json"), getenv); err == nil || !strings.HasPrefix(err.Error(), "--deid-keys: ") {
		t.Errorf("missing key file: %v", err)
	}
}
