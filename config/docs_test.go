package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// configDoc is the reference of every option, relative to this package.
var configDoc = filepath.Join("..", "docs", "configuration.md")

// TestOptionsDocumented holds docs/configuration.md's option table to the
// options the loader registers: every flag has a row naming its
// environment variable and YAML key (a `prefix*` cell covers a group),
// and every flag in the table exists.
func TestOptionsDocumented(t *testing.T) {
	rows := optionRows(t)
	var c Config
	known := map[string]bool{"config": true}
	for _, o := range c.options() {
		known[o.flag] = true
		cells, ok := rows[o.flag]
		if !ok {
			t.Errorf("--%s has no row in %s", o.flag, configDoc)
			continue
		}
		for _, want := range []struct{ what, name, cell string }{
			{"environment variable", o.env, cells[1]},
			{"YAML key", o.yaml, cells[2]},
		} {
			if !documents(want.cell, want.name) {
				t.Errorf("--%s: %s's row does not name its %s %s: %q", o.flag, configDoc, want.what, want.name, want.cell)
			}
		}
	}
	for flag := range rows {
		if !known[flag] {
			t.Errorf("%s documents --%s, which tailor does not have", configDoc, flag)
		}
	}
}

// optionRows reads the option table: for each flag its row's cells
// (flags, environment, YAML, meaning).
func optionRows(t *testing.T) map[string][]string {
	t.Helper()
	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	flagName := regexp.MustCompile("`--([a-z0-9-]+)`")
	rows := map[string][]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			t.Fatalf("%s: a row of the option table has %d cells, want 4: %s", configDoc, len(cells), line)
		}
		for _, m := range flagName.FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = cells
		}
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no option table", configDoc)
	}
	return rows
}

// documents reports whether a table cell names name, as `name` or under a
// `prefix*` wildcard.
func documents(cell, name string) bool {
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
		if m[1] == name || strings.HasSuffix(m[1], "*") && strings.HasPrefix(name, strings.TrimSuffix(m[1], "*")) {
			return true
		}
	}
	return false
}
