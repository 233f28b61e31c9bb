package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig checks the sample config and a table of broken ones:
// each is rejected with exit 1 and the message a reload gives, naming the
// rule and the position in it.
func TestCheckConfig(t *testing.T) {
	code, stdout, stderr := runArgs(t, "check-config", filepath.Join("..", "..", "config", "sample.yaml"))
	if code != 0 || !strings.Contains(stdout, "valid:") || !strings.Contains(stdout, "offers") {
		t.Fatalf("sample.yaml: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	const keys = "http:\n  write_keys: [w]\n  read_keys: [r]\n"
	for _, tc := range []struct {
		name, doc string
		want      []string // each in stderr
	}{
		{"segment syntax", keys + "segments:\n  big: \"total_spend >= \"\n",
			[]string{`rule "segments.big" at 1:16: unexpected end of rule`}},
		{"unknown name", keys + "segments:\n  big: \"nosuch > 3\"\n",
			[]string{`rule "segments.big" at 1:1: unknown name "nosuch"`}},
		{"placement and offer", keys + "placements:\n  hero: {kind: banner}\noffers:\n  - id: x\n    placements: [hero]\n    when: \"frobnicate(1)\"\n",
			[]string{"2 problem(s)", `placement "hero": kind "banner"`, `rule "offers.x.when" at 1:1: unknown function frobnicate()`}},
		{"aggregate function", keys + "aggregates:\n  spend: {event: Order Completed, fn: summ, property: revenue}\n",
			[]string{`aggregate "spend": fn "summ"`}},
		{"unknown key", keys + "bogus: 1\n",
			[]string{"line 4: field bogus not found"}},
		{"validation", keys + "kafka:\n  partitions: 0\n",
			[]string{"kafka.partitions is 0"}},
		{"no keys", "segments: {}\n",
			[]string{"http.write_keys is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "tailor.yaml")
			if err := os.WriteFile(file, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runArgs(t, "check-config", file)
			if code != 1 {
				t.Errorf("exit %d, want 1; stdout %q", code, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	if code, _, stderr := runArgs(t, "check-config", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}
