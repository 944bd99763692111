package examples_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime"
)

const workspace = "distribution"

// minCases keeps the test from passing vacuously when tests stop loading.
const minCases = 15

func load(t *testing.T) *runtime.Workspace {
	t.Helper()
	ws := runtime.LoadWorkspace(workspace, nil)
	if len(ws.Diagnostics) > 0 {
		var lines []string
		for _, d := range ws.Diagnostics {
			lines = append(lines, d.String())
		}
		t.Fatalf("%s has %d diagnostic(s):\n%s", workspace, len(ws.Diagnostics), strings.Join(lines, "\n"))
	}
	return ws
}

// TestWorkspaceLoads checks that every flow file compiled and has tests.
func TestWorkspaceLoads(t *testing.T) {
	ws := load(t)
	if len(ws.FlowFiles) == 0 {
		t.Fatal("no flows loaded")
	}
	tested := map[string]int{}
	for id, f := range ws.Flows {
		tested[id] += len(f.Source.Tests)
	}
	for _, tf := range ws.TestFiles {
		tested[tf.Flow] += len(tf.Tests)
	}
	for id, file := range ws.FlowFiles {
		if ws.Flows[id] == nil {
			t.Errorf("%s: flow %q did not compile", file, id)
			continue
		}
		if tested[id] == 0 {
			t.Errorf("%s: flow %q has no tests", file, id)
		}
	}
}

// TestFlowTests runs every inline test and every tests/*.yaml case, as
// `conveyor test` does.
func TestFlowTests(t *testing.T) {
	ws := load(t)
	ctx := context.Background()
	ids := make([]string, 0, len(ws.Flows))
	for id := range ws.Flows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var results []flowtest.CaseResult
	for _, id := range ids {
		f := ws.Flows[id]
		for _, tc := range f.Source.Tests {
			results = append(results, flowtest.RunCase(ctx, f, tc, f.File))
		}
		for _, tf := range ws.TestFiles {
			if tf.Flow != id {
				continue
			}
			for _, tc := range tf.Tests {
				results = append(results, flowtest.RunCase(ctx, f, tc, tf.File))
			}
		}
	}
	if len(results) < minCases {
		t.Errorf("ran %d test cases, expected at least %d", len(results), minCases)
	}
	var failures []string
	for _, r := range results {
		if r.Passed() {
			continue
		}
		failures = append(failures, r.Flow+": "+r.Name+" ("+r.File+")\n    "+strings.Join(r.Failures, "\n    "))
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d flow tests failed:\n%s", len(failures), len(results), strings.Join(failures, "\n"))
	}
	t.Logf("%d flow tests passed", len(results)-len(failures))
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonv.Decode(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func readMocks(t *testing.T, path string) flowtest.Mocks {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ds := dsl.ParseMocks(path, src)
	if len(ds) > 0 {
		t.Fatalf("%s: %v", path, ds)
	}
	return flowtest.Mocks(m)
}

// TestOrderCaptureSample is `conveyor run flows/order-capture.yaml --input
// samples/shopify-order.json`: the real webhook payload, decoded as the
// trigger decodes it, must keep the 18-digit order id and the customer's
// accented name exactly.
func TestOrderCaptureSample(t *testing.T) {
	ws := load(t)
	f := ws.Flows["order-capture"]
	if f == nil {
		t.Fatal("flow order-capture did not load")
	}
	body := readJSON(t, filepath.Join(workspace, "samples", "shopify-order.json"))
	mocks := flowtest.Mocks{
		"erp": dsl.Mock{{Status: 201, Body: dsl.Value{Set: true, V: map[string]any{"sales_order": "SO-1001", "status": "open"}}}},
		"wms": dsl.Mock{{Status: 201, Body: dsl.Value{Set: true, V: map[string]any{"allocation_id": "AL-5501"}}}},
	}
	rep := flowtest.Run(context.Background(), f, flowtest.Input{Body: body, Headers: map[string]string{"X-Shopify-Shop-Domain": "conveyor-goods.myshopify.com"}}, mocks)
	if rep.Outcome != flows.Completed {
		t.Fatalf("outcome %s, want completed: %s", rep.Outcome, rep.Error)
	}
	if len(rep.Calls) != 2 || rep.Calls[0].Connection != "erp" || rep.Calls[1].Connection != "wms" {
		t.Fatalf("calls: want erp then wms, got %+v", rep.Calls)
	}
	erp, ok := rep.Calls[0].Body.(map[string]any)
	if !ok {
		t.Fatalf("ERP call body is %T, want an object", rep.Calls[0].Body)
	}
	if got := erp["order_ref"]; got != "SHP-820982911946154777" {
		t.Errorf("order_ref = %#v, want \"SHP-820982911946154777\" (the big id must stay exact)", got)
	}
	customer, _ := erp["customer"].(map[string]any)
	if name, _ := customer["name"].(string); !strings.Contains(name, "Zoë") {
		t.Errorf("customer.name = %q, want it to keep \"Zoë\"", name)
	}
	if ship, _ := erp["ship_to"].(map[string]any); ship["name"] != "Zoë van den Berg" {
		t.Errorf("ship_to.name = %#v, want \"Zoë van den Berg\"", ship["name"])
	}
	if lines, _ := erp["lines"].([]any); len(lines) != 24 {
		t.Errorf("ERP lines: got %d, want the sample's 24", len(lines))
	}
	if len(rep.Published) != 1 || rep.Published[0].Topic != "order.accepted" {
		t.Errorf("published: want order.accepted, got %+v", rep.Published)
	}
}

// TestSamples dry-runs each flow on its sample payload with the mocks the
// README uses, as `conveyor run FLOW --input SAMPLE --mocks MOCKS` does.
func TestSamples(t *testing.T) {
	ws := load(t)
	cases := []struct {
		flow, sample string
		calls        int
	}{
		{"order-capture", "shopify-order.json", 2},
		{"inventory-update", "wms-stock-changed.json", 4}, // bol throttled once
		{"shipment-confirmation", "wms-shipment.json", 2},
	}
	for _, c := range cases {
		t.Run(c.flow, func(t *testing.T) {
			f := ws.Flows[c.flow]
			if f == nil {
				t.Fatalf("flow %s did not load", c.flow)
			}
			body := readJSON(t, filepath.Join(workspace, "samples", c.sample))
			mocks := readMocks(t, filepath.Join(workspace, "samples", "mocks", c.flow+".yaml"))
			rep := flowtest.Run(context.Background(), f, flowtest.Input{Body: body}, mocks)
			if rep.Outcome != flows.Completed {
				t.Fatalf("outcome %s, want completed: %s", rep.Outcome, rep.Error)
			}
			if len(rep.Calls) != c.calls {
				t.Errorf("calls: got %d, want %d", len(rep.Calls), c.calls)
			}
		})
	}
	// The GET API reads its order id from the path, which conveyor run
	// cannot set; a dry run with params answers from the ERP sample.
	t.Run("order-status-api", func(t *testing.T) {
		f := ws.Flows["order-status-api"]
		if f == nil {
			t.Fatal("flow order-status-api did not load")
		}
		erp := readJSON(t, filepath.Join(workspace, "samples", "erp-sales-order.json"))
		mocks := readMocks(t, filepath.Join(workspace, "samples", "mocks", "order-status-api.yaml"))
		if d := flowtest.Subset(erp, mocks["erp"][0].Body.V, "mocks.erp.body"); len(d) > 0 {
			t.Errorf("samples/mocks/order-status-api.yaml drifted from samples/erp-sales-order.json: %v", d)
		}
		rep := flowtest.Run(context.Background(), f, flowtest.Input{Params: map[string]string{"id": "so-1001"}}, mocks)
		if rep.Outcome != flows.Completed || rep.Response == nil {
			t.Fatalf("outcome %s, want completed with a response: %s", rep.Outcome, rep.Error)
		}
		if d := flowtest.Subset(map[string]any{"order_id": "SO-1001", "status": "shipped", "total": "1,276.55 EUR"}, rep.Response.Body, "response"); len(d) > 0 {
			t.Errorf("response: %v", d)
		}
	})
	// Every sample must at least be valid JSON, every mocks file readable.
	files, _ := filepath.Glob(filepath.Join(workspace, "samples", "*.json"))
	if len(files) < 4 {
		t.Errorf("samples: %d JSON files, want at least one per flow", len(files))
	}
	for _, p := range files {
		readJSON(t, p)
	}
	mocks, _ := filepath.Glob(filepath.Join(workspace, "samples", "mocks", "*.yaml"))
	for _, p := range mocks {
		readMocks(t, p)
	}
}
