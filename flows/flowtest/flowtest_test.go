package flowtest_test

import (
	"context"
	"testing"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/mappings"
)

// A dry run of a flow retrying a failing call stops after maxAttempts,
// whatever the flow's retry.attempts: 100,000 attempts made a 27 MB
// answer from the editor API's test endpoint.
func TestDryRunAttemptsAreBounded(t *testing.T) {
	df, ds := dsl.ParseFlow("flows/t.yaml", []byte("trigger: {http: {path: /in}}\nretry: {attempts: 100000}\nsteps:\n  - call: {connection: erp, path: /x}\n"))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	f, ds := flows.Compile(df, flows.Env{Compiler: mappings.NewCompiler(nil), Connections: []string{"erp"}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	rep := flowtest.Run(context.Background(), f, flowtest.Input{Body: map[string]any{}}, flowtest.Mocks{"erp": dsl.Mock{{Status: 503}}})
	if rep.Outcome != flows.Failed || rep.Attempts != 10 {
		t.Errorf("outcome %s after %d attempts; want failed after 10", rep.Outcome, rep.Attempts)
	}
}

// A dry run counts retry attempts per step, as the runtime does: the ERP
// call's three attempts leave the WMS call its own two.
func TestDryRunRetryBudgetIsPerStep(t *testing.T) {
	df, ds := dsl.ParseFlow("flows/t.yaml", []byte(`trigger: {http: {path: /in}}
steps:
  - call: {connection: erp, path: /x, retry: {attempts: 5}}
  - call: {connection: wms, path: /y, retry: {attempts: 2}}
`))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	f, ds := flows.Compile(df, flows.Env{Compiler: mappings.NewCompiler(nil), Connections: []string{"erp", "wms"}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	rep := flowtest.Run(context.Background(), f, flowtest.Input{Body: map[string]any{}}, flowtest.Mocks{
		"erp": dsl.Mock{{Status: 503}, {Status: 503}, {Status: 201}},
		"wms": dsl.Mock{{Status: 503}, {Status: 201}},
	})
	if rep.Outcome != flows.Completed || rep.Attempts != 4 {
		t.Errorf("outcome %s after %d attempts (%s); want completed after 4", rep.Outcome, rep.Attempts, rep.Error)
	}
}

// A test's mock for a connection the flow never uses fails the test: the
// misspelt "epr" left the ERP call on the default 200, and a test meant to
// prove the flow survives an ERP outage passed without one. Mocks of
// connections used only in a branch or a split are fine.
func TestMockOfAnUnusedConnectionFails(t *testing.T) {
	df, ds := dsl.ParseFlow("flows/t.yaml", []byte(`trigger: {http: {path: /in}}
steps:
  - choice:
      - when: 'body.rush == true'
        steps: [{call: {connection: carrier, path: /express}}]
  - split:
      items: 'body.lines'
      steps: [{call: {connection: erp, path: /lines}}]
`))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	f, ds := flows.Compile(df, flows.Env{Compiler: mappings.NewCompiler(nil), Connections: []string{"erp", "carrier"}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	if got := f.Connections(); len(got) != 2 || got[0] != "carrier" || got[1] != "erp" {
		t.Errorf("Connections() = %v, want [carrier erp]", got)
	}
	body := dsl.Value{V: map[string]any{"lines": []any{1}}, Set: true}
	tc := dsl.TestCase{Name: "erp down", Input: dsl.TestInput{Body: body}, Mocks: map[string]dsl.Mock{"epr": {{Status: 503}}, "carrier": {{Status: 201}}}}
	res := flowtest.RunCase(context.Background(), f, tc, "flows/t.yaml")
	if len(res.Failures) != 1 || res.Failures[0] != `mocks: the flow uses no connection "epr" (did you mean "erp"?)` {
		t.Errorf("failures %q; want one naming the misspelt mock", res.Failures)
	}
	tc.Mocks = map[string]dsl.Mock{"erp": {{Status: 201}}, "carrier": {{Status: 201}}}
	if res := flowtest.RunCase(context.Background(), f, tc, "flows/t.yaml"); !res.Passed() {
		t.Errorf("mocks of used connections: %q", res.Failures)
	}
}
