package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "flows"), 0o755))
	good := filepath.Join(dir, "flows", "ok.yaml")
	must(os.WriteFile(good, []byte("trigger: {event: {topic: t}}\nsteps: [{log: '\"hi\"'}]\ntests: [{name: logs, input: {body: {}}}]\n"), 0o644))

	if code, _, _ := cli(t, "lint", dir); code != 0 {
		t.Errorf("lint of a good workspace: exit %d", code)
	}
	if code, out, _ := cli(t, "test", dir); code != 0 || !strings.Contains(out, "1 passed, 0 failed") {
		t.Errorf("test: exit %d\n%s", code, out)
	}
	if code, _, _ := cli(t, "lint"); code != 2 {
		t.Errorf("lint without a path: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, "lint", "--nope", dir); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, "schema", "--kind", "nope"); code != 2 {
		t.Errorf("bad schema kind: exit %d, want 2", code)
	}

	bad := filepath.Join(dir, "flows", "bad.yaml")
	must(os.WriteFile(bad, []byte("trigger: {event: {topic: t}}\nsteps: [{log: 'bdy.x'}]\n"), 0o644))
	code, out, _ := cli(t, "lint", dir)
	if code != 1 || !strings.Contains(out, `bad.yaml:2:16: unknown name "bdy" (did you mean "body"?)`) {
		t.Errorf("lint with a finding: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, "lint", "--json", bad)
	var got struct{ Diagnostics []map[string]any }
	if code != 1 || json.Unmarshal([]byte(out), &got) != nil || len(got.Diagnostics) != 1 || got.Diagnostics[0]["line"] != float64(2) {
		t.Errorf("lint --json: exit %d\n%s", code, out)
	}
}

func TestRunPrintsTrace(t *testing.T) {
	input := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(input, []byte(`{"id": 820982911946154777, "currency": "EUR", "line_items": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := cli(t, "run", "../../examples/distribution/flows/order-capture.yaml", "--input", input)
	var rep struct {
		Outcome string
		Errors  []string
		Trace   []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != 1 || rep.Outcome != "rejected" || len(rep.Trace) != 1 || rep.Trace[0]["kind"] != "validate" {
		t.Errorf("exit %d, outcome %s, trace %v", code, rep.Outcome, rep.Trace)
	}
	if len(rep.Errors) == 0 || !strings.Contains(strings.Join(rep.Errors, ";"), "at least one line") {
		t.Errorf("errors %q", rep.Errors)
	}
}
