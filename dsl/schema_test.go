package dsl_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/conveyor-run/conveyor/dsl"
)

// schemaJSON renders the schema of kind as dsl/schema/<kind>.json holds it
// (and `conveyor schema --kind` prints it): 2-space indent, no HTML
// escaping, a trailing newline.
func schemaJSON(t testing.TB, kind string) []byte {
	t.Helper()
	s := dsl.JSONSchema(kind)
	if s == nil {
		t.Fatalf("JSONSchema(%q) = nil", kind)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSchemaFiles fails when dsl/schema/*.json, which editors load through
// the yaml-language-server comment of each file, is not what JSONSchema
// generates. Regenerate with: go test ./dsl/ -run TestSchemaFiles -update
func TestSchemaFiles(t *testing.T) {
	if dsl.JSONSchema("nothing") != nil {
		t.Error(`JSONSchema("nothing") is not nil`)
	}
	for _, kind := range dsl.SchemaKinds() {
		path := filepath.Join("schema", kind+".json")
		got := schemaJSON(t, kind)
		if *update {
			if err := os.MkdirAll("schema", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test ./dsl/ -run TestSchemaFiles -update)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run go test ./dsl/ -run TestSchemaFiles -update", path)
		}
	}
}

// compileSchemas checks every schema against the draft-07 meta-schema and
// compiles it.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	meta, err := c.Compile("http://json-schema.org/draft-07/schema")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*jsonschema.Schema{}
	for _, kind := range dsl.SchemaKinds() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON(t, kind)))
		if err != nil {
			t.Fatal(err)
		}
		if err := meta.Validate(doc); err != nil {
			t.Errorf("%s schema is not a valid draft-07 schema: %v", kind, err)
			continue
		}
		if s := doc.(map[string]any)["$schema"]; s != "http://json-schema.org/draft-07/schema#" {
			t.Errorf("%s schema: $schema = %v", kind, s)
		}
		url := "https://conveyor.run/schema/" + kind + ".json"
		if err := c.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			t.Errorf("%s schema: %v", kind, err)
			continue
		}
		out[kind] = sch
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// yamlAsJSON reads a YAML file as the JSON-compatible value an editor's
// YAML language server validates.
func yamlAsJSON(t *testing.T, path string) any {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestSchemaValidates: every file of the example workspace and the
// DESIGN.md example pass their schema; broken files fail it.
func TestSchemaValidates(t *testing.T) {
	schemas := compileSchemas(t)
	valid := map[string][]string{
		"flow":    append(yamlFiles(t, "../examples/distribution/flows"), designExample),
		"mapping": append(yamlFiles(t, "../examples/distribution/mappings"), yamlFiles(t, "testdata/mappings")...),
		"test":    yamlFiles(t, "../examples/distribution/tests"),
		"config":  {"../examples/distribution/conveyor.yaml"},
	}
	if len(valid["flow"]) < 2 || len(valid["mapping"]) < 2 {
		t.Fatalf("too few files: %v", valid)
	}
	for kind, files := range valid {
		for _, path := range files {
			if err := schemas[kind].Validate(yamlAsJSON(t, path)); err != nil {
				t.Errorf("%s does not pass the %s schema: %v", path, kind, err)
			}
		}
	}

	// Files that decode with diagnostics the schema can see too.
	for _, name := range []string{
		"unknown_top_level", // setps
		"two_step_kinds",    // map and set in one step
		"unknown_step_kind", // mapp
		"two_triggers",      // http and schedule
		"missing_trigger",
		"list_for_mapping", // trigger: [...]
		"text_for_number",  // limit: fifty
		"bad_enum",         // mode: asynk
		"bad_duration",     // ttl: 72 hours
		"many_decode_errors",
	} {
		path := "testdata/broken/" + name + ".yaml"
		err := schemas["flow"].Validate(yamlAsJSON(t, path))
		if err == nil {
			t.Errorf("%s passes the flow schema", path)
		}
	}
}

// TestSchemaDescribesEveryField: the flow schema names the settled
// vocabulary of DESIGN.md, with a description for every property.
func TestSchemaDescribesEveryField(t *testing.T) {
	s := dsl.JSONSchema("flow")
	b, _ := json.Marshal(s)
	for _, word := range []string{`"trigger"`, `"dedup"`, `"rate_limit"`, `"retry"`, `"steps"`, `"tests"`,
		`"http"`, `"schedule"`, `"file"`, `"event"`, `"validate"`, `"map"`, `"set"`, `"choice"`, `"filter"`,
		`"split"`, `"call"`, `"publish"`, `"respond"`, `"log"`, `"when"`, `"otherwise"`, `"items"`} {
		if !strings.Contains(string(b), word) {
			t.Errorf("flow schema lacks %s", word)
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if props, ok := x["properties"].(map[string]any); ok {
				for name, p := range props {
					if pm, ok := p.(map[string]any); ok && pm["description"] == nil {
						t.Errorf("%s.%s has no description", path, name)
					}
				}
			}
			for k, e := range x {
				walk(path+"/"+k, e)
			}
		case []any:
			for _, e := range x {
				walk(path, e)
			}
		}
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	walk("#", generic)
}
