package config

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestKeyLabels: a key is written alone (its label derived from it) or
// with a label, in the file (label:key, or {label, key}), the
// environment and flags (label:key); a key with '=' in it is a key.
func TestKeyLabels(t *testing.T) {
	derived := func(secret string) string { return fmt.Sprintf("key-%x", sha256.Sum256([]byte(secret)))[:12] }
	file := filepath.Join(t.TempDir(), "tailor.yaml")
	os.WriteFile(file, []byte(`
http:
  write_keys: [w1, "web:w2", "YWJj=="]
  read_keys:
    - {label: backend, key: r1}
    - {key: r2}
    - r3
  admin_keys: ["ops:a1"]
`), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want map[string]string // option: label=secret, ...
	}{
		{"file", []string{"--config", file}, nil, map[string]string{
			"write":  derived("w1") + "=w1 web=w2 " + derived("YWJj==") + "=YWJj==",
			"read":   "backend=r1 " + derived("r2") + "=r2 " + derived("r3") + "=r3",
			"admin":  "ops=a1",
			"decide": "",
		}},
		{"environment", []string{"--config", file}, map[string]string{"TAILOR_ADMIN_KEYS": " ops:a2 , a3", "TAILOR_DECIDE_KEYS": "page:d=1"}, map[string]string{
			"admin":  "ops=a2 " + derived("a3") + "=a3",
			"decide": "page=d=1",
		}},
		{"flag", []string{"--config", file, "--write-keys", "app:w9,w8="}, nil, map[string]string{
			"write": "app=w9 " + derived("w8=") + "=w8=",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			lists := map[string]Keys{"write": cfg.HTTP.WriteKeys, "read": cfg.HTTP.ReadKeys, "decide": cfg.HTTP.DecideKeys, "admin": cfg.HTTP.AdminKeys}
			for option, want := range tc.want {
				var got []string
				for _, k := range lists[option] {
					got = append(got, k.Label+"="+k.Secret)
				}
				if strings.Join(got, " ") != want {
					t.Errorf("%s keys %q, want %q", option, strings.Join(got, " "), want)
				}
			}
		})
	}
	if got := DerivedLabel("dev-write-key"); got != derived("dev-write-key") || len(got) != len("key-")+8 {
		t.Errorf("DerivedLabel = %q, want key- and 8 hex digits of the SHA-256", got)
	}
	// Printed, keys show their labels only.
	cfg, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, printed := range []string{fmt.Sprint(cfg.HTTP), fmt.Sprintf("%+v", cfg.HTTP), cfg.HTTP.AdminKeys.String()} {
		if strings.Contains(printed, "a1") || strings.Contains(printed, "r1") || !strings.Contains(printed, "ops") {
			t.Errorf("printed keys show a secret or no label: %s", printed)
		}
	}
}

// TestKeyErrors: a bad key entry is refused with the option and the
// entry's place, never with the secret.
func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(s string) string {
		n++
		p := filepath.Join(dir, strconv.Itoa(n)+".yaml")
		os.WriteFile(p, []byte("http: {write_keys: [w], read_keys: [r], "+s+"}\n"), 0o644)
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		err  string
	}{
		{"empty label", []string{"--admin-keys", ":hush1"}, nil, "http.admin_keys[0]: the label is empty"},
		{"empty key", nil, map[string]string{"TAILOR_DECIDE_KEYS": "d, page:"}, "http.decide_keys[1] (page): the key is empty"},
		{"key with a colon", []string{"--config", write(`admin_keys: ["a:hush1:hush2"]`)}, nil, "http.admin_keys[0] (a): the key contains ':'"},
		{"bad label", []string{"--config", write(`admin_keys: [{label: "o ps", key: hush1}]`)}, nil, `http.admin_keys[0]: label "o ps": want 1 to 64 letters`},
		{"empty label in a mapping", []string{"--config", write(`admin_keys: [a1, {label: "", key: hush1}]`)}, nil, "http.admin_keys[1]: the label is empty"},
		{"no key in a mapping", []string{"--config", write(`decide_keys: [{label: page}]`)}, nil, "http.decide_keys[0] (page): the key is empty"},
		{"unknown field", []string{"--config", write(`admin_keys: [{name: ops, key: hush1}]`)}, nil, "line 1, column 54: key 0: field name not found in a key (label, key)"},
		{"a mapping as a value", []string{"--config", write(`admin_keys: [{label: {a: b}, key: hush1}]`)}, nil, "key 0: label: want a string"},
		{"not a list", []string{"--config", write(`admin_keys: hush1`)}, nil, "want a list of keys"},
		{"a list in the list", []string{"--config", write(`admin_keys: [[hush1]]`)}, nil, "key 0: want a string (the key, or label:key) or {label: ..., key: ...}"},
		{"one label, two keys", []string{"--config", write(`admin_keys: ["ops:hush1"], decide_keys: ["ops:hush2"]`)}, nil, `http.admin_keys[0]: label "ops" already names another key (http.decide_keys[0])`},
		{"white space", []string{"--config", write(`admin_keys: ["ops: hush1"]`)}, nil, "http.admin_keys[0] (ops): the key begins or ends with white space"},
		{"a write key read", []string{"--config", write("decide_keys: []"), "--read-keys", "ops:w"}, nil, "read key ops is also a write key"},
		{"an admin key written", []string{"--config", write("decide_keys: []"), "--admin-keys", "ops:w"}, nil, "admin key ops is also a write, read or decide key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "hush") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
	// The same key in two lists under one label is one key.
	if _, err := load(t, []string{"--config", write(`decide_keys: ["page:p1"]`), "--write-keys", "page:p1"}, nil); err != nil {
		t.Errorf("a key that is a write and a decide key under one label: %v", err)
	}
}
