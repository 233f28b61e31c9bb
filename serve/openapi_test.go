package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPICoversRoutes holds the route table (route.go) and the
// OpenAPI description (openapi.yaml) to each other: every method of every
// route served is described, and everything described is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		t.Fatalf("serve/openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi: %q, want 3.1.0", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, r := range routes() {
		for _, m := range r.methods {
			op := strings.ToLower(m)
			served[op+" "+r.path] = true
			if _, ok := doc.Paths[r.path][op]; !ok {
				t.Errorf("route %s %s is served (serve/route.go) but not described: add paths[%q].%s to serve/openapi.yaml", m, r.path, r.path, op)
			}
		}
	}
	var described []string
	for path, item := range doc.Paths {
		for op := range item {
			described = append(described, op+" "+path)
		}
	}
	sort.Strings(described)
	for _, d := range described {
		if !served[d] {
			op, path, _ := strings.Cut(d, " ")
			t.Errorf("%s %s is described in serve/openapi.yaml but not served: add it to routes() in serve/route.go, or remove paths[%q].%s", strings.ToUpper(op), path, path, op)
		}
	}
}

// TestOpenAPIServed: /openapi.json serves the description as JSON, its
// shared parts (YAML anchors) written out.
func TestOpenAPIServed(t *testing.T) {
	addr, _ := startServer(t, Config{}, &recorder{}, noProfiles{})
	resp, err := http.Get("http://" + addr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %v: %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), err, body)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Paths["/v1/t"]["post"]) == 0 || !slices.Equal(doc.Paths["/v1/t"]["post"], doc.Paths["/v1/track"]["post"]) {
		t.Errorf("openapi %q; /v1/t's post: %.200s", doc.OpenAPI, doc.Paths["/v1/t"]["post"])
	}
}
