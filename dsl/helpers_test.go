package dsl_test

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
)

// update rewrites the golden files of TestBroken and the schema files of
// TestSchemaFiles: go test ./dsl/ -run 'TestBroken|TestSchemaFiles' -update
var update = flag.Bool("update", false, "rewrite golden files and dsl/schema/*.json")

// testEnvVars is the environment testFlowEnv's Getenv sees; everything
// else is unset.
var testEnvVars = map[string]string{"SHOPIFY_SECRET": "s3cret"}

// testFlowEnv is the workspace the broken flows are compiled against, as
// the CLI's lint would: two lookup tables, the connections erp and wms,
// the mapping files of testdata/mappings and an environment holding only
// testEnvVars.
func testFlowEnv(t testing.TB) flows.Env {
	t.Helper()
	lk := mappings.NewLookups(map[string][][]string{
		"sku_to_item": {{"sku", "item_code"}, {"TSHIRT-RED-M", "100234"}},
		"warehouses":  {{"location", "warehouse"}, {"AMS", "WH-NL-01"}},
	})
	return flows.Env{
		Compiler:    mappings.NewCompiler(lk),
		Mappings:    loadMappings(t, "testdata/mappings"),
		Connections: []string{"erp", "wms"},
		Getenv: func(name string) (string, bool) {
			v, ok := testEnvVars[name]
			return v, ok
		},
	}
}

// loadMappings parses every mapping file in dir; they must be clean.
func loadMappings(t testing.TB, dir string) map[string]*dsl.MappingFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dsl.MappingFile{}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, ds := dsl.ParseMapping(p, src)
		if len(ds) > 0 {
			t.Fatalf("mapping %s: %v", p, ds)
		}
		out[m.ID] = m
	}
	return out
}

// lint runs a flow file through the CLI's path: dsl.ParseFlow, then, when
// it decoded without diagnostics, flows.Compile.
func lint(file string, src []byte, env flows.Env) dsl.Diagnostics {
	f, ds := dsl.ParseFlow(file, src)
	if len(ds) > 0 {
		return ds
	}
	_, ds = flows.Compile(f, env)
	return ds
}

// yamlFiles lists dir/*.yaml, sorted.
func yamlFiles(t testing.TB, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	return paths
}
