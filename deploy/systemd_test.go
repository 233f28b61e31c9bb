package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailorcdp/tailor/internal/testenv"
)

// TestSystemdUnit runs systemd-analyze verify on the unit, with its binary
// path pointed at a stand-in: an unknown or misspelt option, a bad value
// or a bad section fails.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Missing(t, "systemd-analyze is not installed")
	}
	unit, err := os.ReadFile(filepath.Join("systemd", "tailor.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tailor")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/tailor", bin)
	if text == string(unit) {
		t.Fatal("the unit does not run /usr/local/bin/tailor")
	}
	path := filepath.Join(dir, "tailor.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "tailor.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"ExecStartPre=" + bin + " check-config", "TimeoutStopSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=tailor"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
