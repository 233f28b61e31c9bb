package serve

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"
)

// openapiYAML is the OpenAPI 3.1 description of every route (route.go),
// written once as YAML (anchors share what routes have in common) and
// served as JSON at /openapi.json.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON returns the description as JSON.
func openapiJSON() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("serve/openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("serve/openapi.yaml as JSON: %w", err)
	}
	return b, nil
}

// openapi serves GET /openapi.json.
func (s *Server) openapi(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(s.openapiDoc)
}
