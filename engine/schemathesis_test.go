package engine_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/decide"
	"github.com/tailorcdp/tailor/internal/testenv"
	"github.com/tailorcdp/tailor/internal/testkafka"
	"github.com/tailorcdp/tailor/state"
)

// schemathesisVersion is the schemathesis release scripts/test.sh
// installs (from PyPI, with the hashes of scripts/schemathesis.txt) into
// .cache/schemathesis.
const schemathesisVersion = "4.32.5"

// schemathesisExamples bounds the cases generated per operation and
// phase, which keeps the run within a minute or two.
const schemathesisExamples = 15

// schemathesis returns the schemathesis CLI (TAILOR_SCHEMATHESIS, else
// the one scripts/test.sh installs), or skips the test.
func schemathesis(t *testing.T) string {
	t.Helper()
	for _, path := range []string{os.Getenv("TAILOR_SCHEMATHESIS"), filepath.Join("..", ".cache", "schemathesis", "bin", "st")} {
		if path == "" {
			continue
		}
		if abs, err := filepath.Abs(path); err == nil {
			if _, err := os.Stat(abs); err == nil {
				return abs
			}
		}
	}
	testenv.Missing(t, "no schemathesis %s in .cache/schemathesis: scripts/test.sh installs it with pip (python3-venv), or set TAILOR_SCHEMATHESIS", schemathesisVersion)
	return ""
}

// TestSchemathesis runs schemathesis against a live engine with the
// description it serves at /openapi.json: generated requests, valid and
// not, to every operation, each group of operations with its key. No
// answer may be a 5xx, and every answer must be as described (status
// code, content type, headers, body schema).
func TestSchemathesis(t *testing.T) {
	st := schemathesis(t)
	cfg := testConfig(t, testkafka.Brokers(t), testkafka.Prefix(t), t.TempDir())
	cfg.HTTP.DecideKeys = config.NewKeys("page-key")
	cfg.HTTP.AdminKeys = config.NewKeys("admin-key")
	cfg.HTTP.CORSOrigins = []string{"*"}
	cfg.Decide.IdentitySecret = "site-secret"
	cfg.Aggregates = map[string]config.Aggregate{"views": {Event: "Product Viewed", Fn: "count"}}
	cfg.Segments = map[string]string{"browser": "views >= 2"}
	cfg.Placements = map[string]config.Placement{"hero": {Fallback: "welcome"}, "recs": {Kind: decide.KindRecentlyViewed}}
	cfg.Offers = []config.Offer{{ID: "welcome", Placements: []string{"hero"}, Content: config.JSONContent(`{"title": "Hello"}`)},
		{ID: "deal", Placements: []string{"hero"}, When: `segment("browser")`, Priority: 1}}
	e := startEngine(t, cfg)
	// The description's examples name profile u1 and placements hero and
	// recs: answered 200, their bodies are checked too.
	if r := e.post(t, "/v1/track", `{"userId": "u1", "event": "Product Viewed", "properties": {"product_id": "p1"}}`); r.Status != 200 {
		t.Fatalf("track: %d %s", r.Status, r.Body)
	}
	// Traits, one flagged, so that traitSources is checked too.
	if r := e.post(t, "/v1/identify", `{"userId": "u1", "traits": {"email": " U1@Example.com", "phone": "12"}, "context": {"library": {"name": "analytics.js"}}}`); r.Status != 200 {
		t.Fatalf("identify: %d %s", r.Status, r.Body)
	}
	e.waitProfile(t, "u1", func(v state.View) bool { return v.Events["Product Viewed"] == 1 && len(v.TraitSources) == 2 })
	schema := e.url + "/openapi.json"

	for _, g := range []struct {
		name, tags, key string
	}{
		{"collect", "collect", writeKey},
		{"decide", "decide", "page-key"},
		{"read", "read|decide", readKey},
		{"admin", "admin", "admin-key"},
		{"operations", "operations", ""},
	} {
		t.Run(g.name, func(t *testing.T) {
			args := []string{"run", schema,
				"--include-tag-regex", "^(" + g.tags + ")$",
				"--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
				"--max-examples", strconv.Itoa(schemathesisExamples), "--seed", "1", "--workers", "2",
				"--request-timeout", "10", "--no-color", "--suppress-health-check", "all",
			}
			if g.key != "" {
				args = append(args, "--header", "Authorization: Bearer "+g.key)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, st, args...)
			cmd.Dir = t.TempDir() // its report and cache directories
			cmd.Env = append(os.Environ(), "SCHEMATHESIS_HOOKS=", "NO_COLOR=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("schemathesis found answers that are 5xx or not as described (%v):\n%s", err, out)
			} else {
				t.Logf("%s", lastLines(out, 12))
			}
		})
	}
}

// lastLines returns the last n lines of out.
func lastLines(out []byte, n int) []byte {
	end := len(out)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] == '\n' && i < end-1 {
			if n--; n == 0 {
				return out[i+1:]
			}
		}
	}
	return out
}
