package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// build builds the command with extra go build arguments.
func build(t *testing.T, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tailor")
	args = append(append([]string{"build"}, args...), "-o", bin, ".")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return bin
}

func versionLine(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("tailor version: %v", err)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "tailor ") || !strings.HasSuffix(line, runtime.Version()) {
		t.Errorf("tailor version printed %q, want tailor VERSION ... %s", line, runtime.Version())
	}
	return line
}

// TestVersion: `tailor version` prints the version and revision linked in
// (as make build and the Dockerfile do), else the revision the go command
// stamped from git.
func TestVersion(t *testing.T) {
	const pkg = "github.com/tailorcdp/tailor/internal/buildinfo"
	linked := build(t, "-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".revision=0123abc")
	if line, want := versionLine(t, linked), "tailor v9.8.7 (revision 0123abc) "; !strings.HasPrefix(line, want) {
		t.Errorf("linked: %q, want it to start %q", line, want)
	}

	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	// The go command finds a git repository by a .git directory: in a
	// linked worktree (.git is a file) it stamps nothing.
	if fi, err := os.Stat(filepath.Join("..", "..", ".git")); err != nil || !fi.IsDir() {
		t.Skip("a git worktree: the go command stamps no VCS information here (make build links it in)")
	}
	// -buildvcs=true: GOFLAGS may turn stamping off.
	stamped := build(t, "-buildvcs=true")
	if line, rev := versionLine(t, stamped), strings.TrimSpace(string(head)); !strings.Contains(line, "(revision "+rev) {
		t.Errorf("stamped: %q, want the revision %s", line, rev)
	}
}
