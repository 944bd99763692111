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
