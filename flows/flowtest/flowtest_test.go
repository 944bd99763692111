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
