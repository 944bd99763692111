package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
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

// Paths as an analyst types them from the workspace root: a relative flow
// file reports that file's findings alone; flows/ (with its slash) lints
// the workspace; conveyor.yaml names the workspace; a test file runs its
// own tests; a folder in no workspace is a usage error, not a pass.
func TestPathsFromTheWorkspaceRoot(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"conveyor.yaml":   "connections: {}\n",
		"flows/good.yaml": "trigger: {event: {topic: t}}\nsteps: [{log: '\"hi\"'}]\n",
		"flows/bad.yaml":  "trigger: {event: {topic: u}}\nsteps: [{log: 'bdy.x'}]\n",
		"tests/good.yaml": "flow: good\ntests: [{name: one, input: {body: {}}}, {name: two, input: {body: {}}}]\n",
		"tests/bad.yaml":  "flow: bad\ntests: [{name: three, input: {body: {}}}]\n",
		"flows/f.yaml":    "trigger: {event: {topic: f}}\nsteps: [{log: '\"f\"'}]\ntests: [{name: inline, input: {body: {}}}]\n",
		"tests/f.yaml":    "flow: f\ntests: [{name: typo, input: {body: {}}, expectt: {}}]\n",
	})
	t.Chdir(dir)
	if code, out, errs := cli(t, "lint", "flows/good.yaml"); code != 0 {
		t.Errorf("lint flows/good.yaml: exit %d; want 0, the other file's findings are not its own\n%s%s", code, out, errs)
	}
	for _, p := range []string{"flows/", "flows", ".", "conveyor.yaml"} {
		if code, out, _ := cli(t, "lint", p); code != 1 || !strings.Contains(out, `flows/bad.yaml:2:16: unknown name "bdy"`) {
			t.Errorf("lint %s: exit %d; want 1 with bad.yaml's finding\n%s", p, code, out)
		}
	}
	if code, out, _ := cli(t, "test", "tests/good.yaml"); code != 0 || !strings.Contains(out, "2 passed, 0 failed") {
		t.Errorf("test tests/good.yaml: exit %d\n%s", code, out)
	}
	if code, out, _ := cli(t, "test", "tests/bad.yaml"); code != 1 || !strings.Contains(out, `unknown name "bdy"`) {
		t.Errorf("test tests/bad.yaml: exit %d; want the tested flow's finding\n%s", code, out)
	}
	// a broken test file of the flow is the flow's finding (its tests would be skipped)
	if code, out, _ := cli(t, "test", "flows/f.yaml"); code != 1 || !strings.Contains(out, `tests/f.yaml:2:`) {
		t.Errorf("test flows/f.yaml with a broken tests/f.yaml: exit %d; want its finding\n%s", code, out)
	}
	empty := t.TempDir()
	if code, _, errs := cli(t, "lint", empty); code != 2 || !strings.Contains(errs, "is not a workspace") {
		t.Errorf("lint of a folder in no workspace: exit %d; want 2\n%s", code, errs)
	}
}

// serve refuses, as usage errors, what would otherwise serve nothing or
// log at a level nobody asked for.
func TestServeRefusesBadSettings(t *testing.T) {
	ws := t.TempDir()
	if err := os.Mkdir(filepath.Join(ws, "flows"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--workspace", filepath.Join(t.TempDir(), "nowhere")}, "is not a workspace"},
		{[]string{"serve", "."}, "pass the workspace as --workspace ."},
		{[]string{"serve", "--workspace", ws, "--log-level", "bogus", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, `--log-level "bogus"`},
	} {
		done := make(chan struct{})
		var code int
		var errs string
		go func() { code, _, errs = cli(t, tc.args...); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: still serving after 5s; want exit 2", tc.args)
		}
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}

// dlq replay --all replays every dead letter, more than the 1000 one
// listing shows, even when those replays fail again (and so come back as
// the newest dead letters).
func TestDLQReplayAllReplaysEveryDeadLetter(t *testing.T) {
	var erpUp atomic.Bool
	var delivered atomic.Int64
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !erpUp.Load() {
			w.WriteHeader(422) // permanent: a dead letter at once
			return
		}
		delivered.Add(1)
		w.WriteHeader(201)
	}))
	defer erp.Close()
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{
		"conveyor.yaml": fmt.Sprintf("connections:\n  erp: {http: {base_url: %q}}\napi:\n  tokens:\n    - {name: ops, role: operator, token: secret}\n", erp.URL),
		"flows/in.yaml": "trigger: {http: {path: /in}}\nconcurrency: 16\nsteps:\n  - call: {connection: erp, path: /orders}\n",
	})
	e, err := newEngine(serveFlags{workspace: ws, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: t.TempDir(), logLevel: "error"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	const n = 1100
	for i := range n {
		resp, err := http.Post("http://"+e.TriggerAddr()+"/in", "application/json", strings.NewReader(fmt.Sprintf(`{"n": %d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	dead := func() int {
		ms, err := e.Messages(context.Background(), store.Filter{Status: store.Dead, Limit: 2 * n})
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	for deadline := time.Now().Add(20 * time.Second); dead() < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dead letters", dead(), n)
		}
	}
	server := []string{"--server", e.AdminAddr(), "--token", "secret"}
	// dlq list pages past its 1000: the second page holds the rest.
	code, out, errs := cli(t, append([]string{"dlq", "list", "--limit", "1000", "--json"}, server...)...)
	_, cursor, found := strings.Cut(strings.TrimSpace(errs), "the next page: --cursor ")
	if code != 0 || strings.Count(out, `"id"`) != 1000 || !found {
		t.Fatalf("dlq list, first page: exit %d, %d ids\n%s", code, strings.Count(out, `"id"`), errs)
	}
	code, out, errs = cli(t, append([]string{"dlq", "list", "--limit", "1000", "--json", "--cursor", strings.TrimSuffix(cursor, ")")}, server...)...)
	if code != 0 || strings.Count(out, `"id"`) != n-1000 || errs != "" {
		t.Fatalf("dlq list, second page: exit %d, %d ids, want %d\n%s", code, strings.Count(out, `"id"`), n-1000, errs)
	}
	// The ERP still refuses: every replay fails again.
	code, out, errs = cli(t, append([]string{"dlq", "replay", "--all"}, server...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d of %d", n, n)) {
		t.Fatalf("replay --all (failing again): exit %d\n%s%s", code, out, errs)
	}
	for deadline := time.Now().Add(20 * time.Second); dead() < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dead letters again", dead(), n)
		}
	}
	erpUp.Store(true)
	code, out, errs = cli(t, append([]string{"dlq", "replay", "--all"}, server...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d of %d", n, n)) {
		t.Fatalf("replay --all: exit %d\n%s%s", code, out, errs)
	}
	for deadline := time.Now().Add(20 * time.Second); delivered.Load() < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered after the replay", delivered.Load(), n)
		}
	}
	if d := dead(); d != 0 {
		t.Errorf("%d dead letters left", d)
	}
	if code, _, errs := cli(t, append([]string{"dlq", "replay", "--all", "--flow", "nosuch"}, server...)...); code != 1 || !strings.Contains(errs, "flow nosuch does not exist") {
		t.Errorf("replay --all of an unknown flow: exit %d %q; want 1 and that the flow does not exist", code, errs)
	}
	if code, out, _ := cli(t, append([]string{"dlq", "replay", "--all", "--flow", "in"}, server...)...); code != 0 || !strings.Contains(out, "replayed 0 of 0") {
		t.Errorf("replay --all of a flow with no dead letters: exit %d %q", code, out)
	}
}

// A lookup table's findings point at their line, as every other one does.
func TestLintLookupFindingsHaveALine(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"conveyor.yaml": "connections: {}\n", "lookups/skus.csv": "sku,erp\nA,1\nB,2,3\n"})
	code, out, _ := cli(t, "lint", "--json", dir)
	var got struct{ Diagnostics []map[string]any }
	if code != 1 || json.Unmarshal([]byte(out), &got) != nil || len(got.Diagnostics) != 1 {
		t.Fatalf("lint: exit %d\n%s", code, out)
	}
	d := got.Diagnostics[0]
	if d["file"] != filepath.Join(dir, "lookups", "skus.csv") || d["line"] != 3.0 || d["message"] != "lookup table: 3 fields, but the header has 2" {
		t.Errorf("diagnostic %v", d)
	}
}

// A test file too broken to say which flow it tests (a YAML syntax
// error) is a finding of every flow file named, not skipped in silence.
func TestUnreadableTestFileIsEveryFlowsFinding(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"flows/f.yaml": "trigger: {event: {topic: f}}\nsteps: [{log: '\"f\"'}]\ntests: [{name: inline, input: {body: {}}}]\n",
		"tests/f.yaml": "flow: f\ntests: [{name: broken, input: {body: {}}\n",
	})
	if code, out, _ := cli(t, "test", filepath.Join(dir, "flows", "f.yaml")); code != 1 || !strings.Contains(out, "tests/f.yaml") {
		t.Errorf("test flows/f.yaml with an unreadable tests/f.yaml: exit %d; want 1 and its finding\n%s", code, out)
	}
	// so is one naming a flow that is not there, and one that cannot be read
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "tests", "f.yaml"), []byte("flow: ff\ntests: [{name: typo, input: {body: {}}}]\n"), 0o644))
	if code, out, _ := cli(t, "test", filepath.Join(dir, "flows", "f.yaml")); code != 1 || !strings.Contains(out, `no flow "ff"`) {
		t.Errorf("test flows/f.yaml with tests/f.yaml for flow ff: exit %d; want 1 and its finding\n%s", code, out)
	}
	must(os.Remove(filepath.Join(dir, "tests", "f.yaml")))
	must(os.Symlink(filepath.Join(dir, "nowhere.yaml"), filepath.Join(dir, "tests", "f.yaml")))
	if code, out, _ := cli(t, "test", filepath.Join(dir, "flows", "f.yaml")); code != 1 || !strings.Contains(out, "tests/f.yaml") {
		t.Errorf("test flows/f.yaml with a dangling tests/f.yaml: exit %d; want 1 and its finding\n%s", code, out)
	}
	// a test file named narrows to itself and its flow, not to the other
	// test files that cannot say which flow they test
	must(os.Remove(filepath.Join(dir, "tests", "f.yaml")))
	writeFiles(t, dir, map[string]string{"tests/g.yaml": "flow: g\ntests: [{name: ok, input: {body: {}}}]\n",
		"flows/g.yaml": "trigger: {event: {topic: g}}\nsteps: [{log: '\"g\"'}]\n", "tests/other.yaml": "flow: ghost\ntests: [{name: typo, input: {body: {}}}]\n"})
	if code, out, _ := cli(t, "test", filepath.Join(dir, "tests", "g.yaml")); code != 0 {
		t.Errorf("test tests/g.yaml beside a tests/other.yaml for no flow: exit %d; want 0\n%s", code, out)
	}
	// named twice, a workspace-wide finding is printed once
	if code, out, _ := cli(t, "lint", filepath.Join(dir, "flows", "f.yaml"), filepath.Join(dir, "flows", "g.yaml")); code != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("lint of two flow files: exit %d; want the test file's finding once\n%s", code, out)
	}
}

// writeFiles writes files (a path under dir -> its content).
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A file the workspace never reads (a flow beside conveyor.yaml instead of
// in flows/, a folder misspelt, a backup copy) is not linted: naming it is
// a usage error, not "ok".
func TestLintRefusesFilesTheWorkspaceDoesNotRead(t *testing.T) {
	dir := t.TempDir()
	bad := "trigger: {event: {topic: t}}\nsteps: [{log: 'bdy.x'}]\n"
	writeFiles(t, dir, map[string]string{
		"conveyor.yaml":        "connections: {}\n",
		"flows/good.yaml":      "trigger: {event: {topic: g}}\nsteps: [{log: '\"hi\"'}]\n",
		"orders.yaml":          bad,
		"flow/orders.yaml":     bad,
		"flows/orders.yaml~":   bad,
		"lookups/skus.csv":     "sku,erp\nA,1\n",
		"mappings/address.yml": "map: {name: body.name}\n",
	})
	t.Chdir(dir)
	for _, p := range []string{"orders.yaml", "flow/orders.yaml", "flows/orders.yaml~"} {
		if code, out, errs := cli(t, "lint", p); code != 2 || !strings.Contains(errs, "not a file the workspace reads") {
			t.Errorf("lint %s: exit %d; want 2, the workspace never reads it\n%s%s", p, code, out, errs)
		}
	}
	for _, p := range []string{"flows/good.yaml", "conveyor.yaml", "lookups/skus.csv", "mappings/address.yml"} {
		if code, out, errs := cli(t, "lint", p); code != 0 {
			t.Errorf("lint %s: exit %d; want 0\n%s%s", p, code, out, errs)
		}
	}
}

// A word that names no subcommand of flows or dlq is a usage error, not
// the help and exit 0: "conveyor dlq replya ID" must not pass for done.
func TestUnknownSubcommandIsUsage(t *testing.T) {
	for _, args := range [][]string{{"dlq", "replya", "01ab"}, {"dlq", "lst"}, {"flows", "lsit"}} {
		if code, out, errs := cli(t, append(args, "--token", "x")...); code != 2 || !strings.Contains(errs, "unknown command") {
			t.Errorf("%v: exit %d; want 2\n%s%s", args, code, out, errs)
		}
	}
	for _, args := range [][]string{{"dlq"}, {"flows"}} {
		if code, out, errs := cli(t, args...); code != 0 || !strings.Contains(out, "Available Commands") {
			t.Errorf("%v: exit %d; want its help and 0\n%s%s", args, code, out, errs)
		}
	}
}

// flows list --json prints the API's JSON, as its help says: every field,
// not the few the table shows.
func TestFlowsListJSONIsTheAPIs(t *testing.T) {
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{
		"conveyor.yaml": "api:\n  tokens:\n    - {name: ops, role: viewer, token: secret}\n",
		"flows/in.yaml": "trigger: {http: {path: /in}}\nsteps: [{log: '\"hi\"'}]\n",
	})
	e, err := newEngine(serveFlags{workspace: ws, listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", dataDir: t.TempDir(), logLevel: "error"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(context.Background())
	resp, err := http.Post("http://"+e.TriggerAddr()+"/in", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, out, errs := cli(t, "flows", "list", "--json", "--server", e.AdminAddr(), "--token", "secret")
	var got struct {
		Flows []map[string]any `json:"flows"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Flows) != 1 {
		t.Fatalf("flows list --json: exit %d\n%s%s", code, out, errs)
	}
	f := got.Flows[0]
	stats, _ := f["stats"].(map[string]any)
	if f["file"] == nil || stats["received"] != 1.0 || stats["completed"] == nil {
		t.Errorf("flows list --json left out the API's fields: %v", f)
	}
}

// A --limit out of 1-1000 is a usage error, as a bad --from is, whether
// or not a server is there to refuse it.
func TestDLQListLimitIsUsage(t *testing.T) {
	for _, limit := range []string{"0", "1001"} {
		if code, out, errs := cli(t, "dlq", "list", "--limit", limit, "--server", "127.0.0.1:1", "--token", "x"); code != 2 || !strings.Contains(errs, "--limit") {
			t.Errorf("dlq list --limit %s: exit %d; want 2\n%s%s", limit, code, out, errs)
		}
	}
}

// flows/orders.yaml and flows/orders.yml both name flow "orders": lint
// reports the second file, with the first that holds the id, and checks
// the first as usual; linting the second file alone reports it too.
func TestLintReportsTwoFilesOfOneFlowID(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"conveyor.yaml":     "connections: {}\n",
		"flows/orders.yaml": "trigger: {event: {topic: t}}\nsteps: [{log: '\"hi\"'}]\n",
		"flows/orders.yml":  "trigger: {event: {topic: u}}\nsteps: [{log: 'bdy.x'}]\n",
	})
	t.Chdir(dir)
	want := `flows/orders.yml:1:1: flow id "orders" already belongs to orders.yaml; this file is not loaded ` +
		`(the file name without .yaml or .yml is the flow id: delete one of the two files, or rename it)` + "\n"
	for _, p := range []string{".", "flows/orders.yml"} {
		if code, out, errs := cli(t, "lint", p); code != 1 || strings.TrimPrefix(out, "./") != want {
			t.Errorf("lint %s: exit %d; want 1 and\n%s\ngot\n%s%s", p, code, want, out, errs)
		}
	}
	if code, out, errs := cli(t, "lint", "flows/orders.yaml"); code != 0 {
		t.Errorf("lint flows/orders.yaml: exit %d; want 0, the file that holds the id is fine\n%s%s", code, out, errs)
	}
}
