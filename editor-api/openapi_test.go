package editorapi

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/labstack/echo/v4"
)

// TestOpenAPIMatchesRoutes checks the embedded OpenAPI document against the
// routes echo has registered: no route undocumented, none documented that
// does not exist, each with the role it needs, and every $ref resolving.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi: %q, want 3.x", v)
	}
	roles := map[string]string{}
	for _, r := range routes() {
		roles[r.method+" "+Prefix+r.path] = r.role.String()
	}

	documented := map[string]string{} // "GET /api/v1/flows/{id}" -> x-role
	paths, _ := doc["paths"].(map[string]any)
	for p, item := range paths {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			o, _ := op.(map[string]any)
			if o["responses"] == nil || o["operationId"] == nil {
				t.Errorf("%s %s: needs operationId and responses", method, p)
			}
			role, _ := o["x-role"].(string)
			documented[strings.ToUpper(method)+" "+p] = role
		}
	}

	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	registered := map[string]bool{}
	for _, r := range New(nil, nil).(*echo.Echo).Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		key := r.Method + " " + param.ReplaceAllString(r.Path, "{$1}")
		registered[key] = true
		role, ok := documented[key]
		if !ok {
			t.Errorf("route %s is not documented in openapi.yaml", key)
			continue
		}
		if want := roles[r.Method+" "+r.Path]; role != want {
			t.Errorf("%s: x-role %q, the route needs %q", key, role, want)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("openapi.yaml documents %s, which is not a route", key)
		}
	}
	if len(registered) != len(routes()) {
		t.Errorf("%d routes registered, %d in the table", len(registered), len(routes()))
	}

	// Every $ref points into the document.
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	sort.Strings(refs)
	for _, ref := range refs {
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, _ := cur.(map[string]any)
			cur = m[part]
		}
		if cur == nil {
			t.Errorf("$ref %s does not resolve", ref)
		}
	}
}
