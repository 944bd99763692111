package dsl_test

import (
	"testing"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
)

// FuzzParseFlow: no input makes ParseFlow panic, and a flow that decoded
// without diagnostics compiles (or fails to) without panicking. The seeds
// in testdata/fuzz/FuzzParseFlow are the example flows and the broken
// files. Run: go test -run XXX -fuzz FuzzParseFlow -fuzztime 75s ./dsl/
func FuzzParseFlow(f *testing.F) {
	f.Add([]byte("trigger: {event: {topic: a}}\nsteps:\n  - log: '\"x\"'\n"))
	env := testFlowEnv(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		fl, ds := dsl.ParseFlow("flows/fuzz.yaml", src)
		if fl == nil {
			t.Fatal("ParseFlow returned no flow")
		}
		for _, d := range ds {
			if d.File != "flows/fuzz.yaml" || d.Line < 1 || d.Col < 1 || d.Message == "" {
				t.Errorf("malformed diagnostic %+v", d)
			}
		}
		if len(ds) > 0 {
			return
		}
		cf, ds := flows.Compile(fl, env)
		if (cf == nil) == (len(ds) == 0) {
			t.Errorf("Compile returned flow %v with %d diagnostics", cf != nil, len(ds))
		}
		for _, d := range ds {
			if d.Line < 1 || d.Col < 1 || d.Message == "" {
				t.Errorf("malformed diagnostic %+v", d)
			}
		}
	})
}
