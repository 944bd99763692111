package flows_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
)

// compileEnv is a workspace with the connections erp and wms, one lookup
// table and the mapping files given as id -> source (mappings/<id>.yaml).
func compileEnv(t *testing.T, mappingFiles map[string]string) flows.Env {
	t.Helper()
	env := flows.Env{
		Compiler: mappings.NewCompiler(mappings.NewLookups(map[string][][]string{
			"sku_to_item": {{"sku", "item_code"}, {"A", "100"}, {"B", "200"}},
		})),
		Mappings:    map[string]*dsl.MappingFile{},
		Connections: []string{"erp", "wms"},
		Getenv:      func(string) (string, bool) { return "", false },
	}
	for id, src := range mappingFiles {
		m, ds := dsl.ParseMapping("mappings/"+id+".yaml", []byte(src))
		if len(ds) > 0 {
			t.Fatalf("mapping %s: %v", id, ds)
		}
		env.Mappings[m.ID] = m
	}
	return env
}

// compileWith decodes src as flows/f.yaml and compiles it in env.
func compileWith(t *testing.T, env flows.Env, src string) (*flows.Flow, dsl.Diagnostics) {
	t.Helper()
	df, ds := dsl.ParseFlow("flows/f.yaml", []byte(src))
	if len(ds) > 0 {
		t.Fatalf("decode: %v", ds)
	}
	f, ds := flows.Compile(df, env)
	if (f == nil) == (len(ds) == 0) {
		t.Fatalf("Compile returned flow %v and %d diagnostics", f != nil, len(ds))
	}
	return f, ds
}

func mustCompile(t *testing.T, env flows.Env, src string) *flows.Flow {
	t.Helper()
	f, ds := compileWith(t, env, src)
	if len(ds) > 0 {
		t.Fatalf("compile:\n%v", ds)
	}
	return f
}

func TestAcceptSteps(t *testing.T) {
	const v = "  - validate: [{rule: body.id != nil}]\n"
	tests := []struct {
		name  string
		steps string
		want  int
	}{
		{"none", "  []\n", 0},
		{"only validate", v, 1},
		{"two leading", v + v + "  - map: {id: body.id}\n" + v, 2},
		{"after a map", "  - map: {id: body.id}\n" + v, 0},
		{"after a log", "  - log: '\"in\"'\n" + v + v, 0},
		{"validate in a choice does not count", v + "  - choice:\n      - when: 'true'\n        steps:\n" + "        " + strings.TrimSpace(v) + "\n", 1},
		{"empty validate", "  - validate: []\n  - map: {a: body}\n", 1},
	}
	env := compileEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "trigger: {http: {path: /t}}\nsteps:\n" + tt.steps
			if tt.steps == "  []\n" {
				src = "trigger: {http: {path: /t}}\nsteps: []\n"
			}
			f := mustCompile(t, env, src)
			if f.AcceptSteps != tt.want {
				t.Errorf("AcceptSteps = %d, want %d", f.AcceptSteps, tt.want)
			}
		})
	}
}

// failingCaller fails every call to the connections in fail with a 503.
type failingCaller struct{ fail map[string]bool }

func (c failingCaller) Call(_ context.Context, req flows.Request) (*flows.Response, error) {
	if c.fail[req.Connection] {
		return &flows.Response{Status: 503}, nil
	}
	return &flows.Response{Status: 200, Body: map[string]any{}}, nil
}

const policyFlow = `
trigger: {http: {path: /t}}
retry: {attempts: 8, backoff: exponential, initial: 1s, max: 2m}
steps:
  - call: {connection: erp, path: /a}
  - call: {connection: wms, path: /b, retry: {attempts: 2, backoff: fixed, initial: 500ms}}
  - choice:
      - when: body.held == true
        steps:
          - call: {connection: erp, path: /held, retry: {attempts: 3}}
      - otherwise:
          - call: {connection: erp, path: /other}
  - split:
      items: body.lines
      steps:
        - log: item.sku
        - call: {connection: wms, path: /line, retry: {attempts: 4, initial: 5m}}
`

// TestPolicyFor: a call with its own retry uses it, filled in from the
// flow's; every other step uses the flow's. The path is the one a
// StepError names.
func TestPolicyFor(t *testing.T) {
	f := mustCompile(t, compileEnv(t, nil), policyFlow)
	flowPolicy := flows.RetryPolicy{Attempts: 8, Backoff: "exponential", Initial: time.Second, Max: 2 * time.Minute}
	if f.Retry != flowPolicy {
		t.Errorf("Retry = %+v, want %+v", f.Retry, flowPolicy)
	}
	tests := []struct {
		path string
		want flows.RetryPolicy
	}{
		{"1", flowPolicy},
		{"2", flows.RetryPolicy{Attempts: 2, Backoff: "fixed", Initial: 500 * time.Millisecond, Max: 2 * time.Minute}},
		{"3", flowPolicy},
		{"3.1.1", flows.RetryPolicy{Attempts: 3, Backoff: "exponential", Initial: time.Second, Max: 2 * time.Minute}},
		{"3.2.1", flowPolicy},
		{"4", flowPolicy},
		{"4[].1[0]", flowPolicy},
		// Max below the call's own initial wait is raised to it.
		{"4[].2", flows.RetryPolicy{Attempts: 4, Backoff: "exponential", Initial: 5 * time.Minute, Max: 5 * time.Minute}},
		{"4[].2[0]", flows.RetryPolicy{Attempts: 4, Backoff: "exponential", Initial: 5 * time.Minute, Max: 5 * time.Minute}},
		{"4[].2[17]", flows.RetryPolicy{Attempts: 4, Backoff: "exponential", Initial: 5 * time.Minute, Max: 5 * time.Minute}},
		{"9", flowPolicy},
		{"", flowPolicy},
	}
	for _, tt := range tests {
		if got := f.PolicyFor(tt.path); got != tt.want {
			t.Errorf("PolicyFor(%q) = %+v, want %+v", tt.path, got, tt.want)
		}
	}

	// The paths failed runs report are the ones PolicyFor knows.
	runs := []struct {
		body map[string]any
		fail string
		step string
		want flows.RetryPolicy
	}{
		{map[string]any{}, "erp", "1", flowPolicy},
		{map[string]any{}, "wms", "2", tests[1].want},
		{map[string]any{"held": true, "lines": []any{}}, "", "", flowPolicy}, // completes
		{map[string]any{"lines": []any{map[string]any{"sku": "A"}, map[string]any{"sku": "B"}}}, "", "", flowPolicy},
	}
	for i, r := range runs {
		caller := failingCaller{fail: map[string]bool{r.fail: true}}
		res := f.Run(context.Background(), &flows.Message{ID: "m", Body: r.body}, nil, 0, flows.Deps{Caller: caller})
		if r.step == "" {
			if res.Err != nil {
				t.Errorf("run %d: %v", i, res.Err)
			}
			continue
		}
		var se *flows.StepError
		if !errors.As(res.Err, &se) || se.Step != r.step || se.Class != flows.Transient {
			t.Errorf("run %d: error %v, want a transient failure of step %s", i, res.Err, r.step)
			continue
		}
		if got := f.PolicyFor(se.Step); got != r.want {
			t.Errorf("run %d: PolicyFor(%q) = %+v, want %+v", i, se.Step, got, r.want)
		}
	}

	// Resumed inside a choice and a split, failed calls are named by their
	// nested path (and, in a split, their item), which PolicyFor resolves.
	nested := []struct {
		next int // top-level step to resume at, 0-based
		body map[string]any
		fail string
		step string
		want flows.RetryPolicy
	}{
		{2, map[string]any{"held": true}, "erp", "3.1.1", tests[3].want},
		{2, map[string]any{"held": false}, "erp", "3.2.1", flowPolicy},
		{3, map[string]any{"lines": []any{map[string]any{"sku": "A"}, map[string]any{"sku": "B"}}}, "wms", "4[].2[0]", tests[7].want},
	}
	for _, n := range nested {
		res := f.Run(context.Background(), &flows.Message{ID: "m", Body: n.body}, &flows.State{Next: n.next, Body: n.body}, 0,
			flows.Deps{Caller: failingCaller{fail: map[string]bool{n.fail: true}}})
		var se *flows.StepError
		if !errors.As(res.Err, &se) || se.Step != n.step {
			t.Errorf("resumed at %d: error %v, want a failure of step %s", n.next, res.Err, n.step)
			continue
		}
		if got := f.PolicyFor(se.Step); got != n.want {
			t.Errorf("PolicyFor(%q) = %+v, want %+v", se.Step, got, n.want)
		}
	}
}

// TestPolicyForWithoutFlowRetry: without a flow retry, calls fill their
// own in from DefaultRetry.
func TestPolicyForWithoutFlowRetry(t *testing.T) {
	f := mustCompile(t, compileEnv(t, nil), "trigger: {http: {path: /t}}\nsteps:\n  - call: {connection: erp, retry: {backoff: fixed}}\n  - call: {connection: wms}\n")
	if f.Retry != flows.DefaultRetry {
		t.Errorf("Retry = %+v, want DefaultRetry", f.Retry)
	}
	want := flows.DefaultRetry
	want.Backoff = "fixed"
	if got := f.PolicyFor("1"); got != want {
		t.Errorf("PolicyFor(1) = %+v, want %+v", got, want)
	}
	if got := f.PolicyFor("2"); got != flows.DefaultRetry {
		t.Errorf("PolicyFor(2) = %+v, want DefaultRetry", got)
	}
}

var nestedMappings = map[string]string{
	// address is used inside customer and, inside a split, for each item.
	"address":  "description: An address\nmap:\n  street: body.street\n  zip: upper(body.zip)\n",
	"customer": "map:\n  email: lower(body.email)\n  address: {use: address}\n",
	"line":     "map:\n  sku: item.sku\n  item: lookup(\"sku_to_item\", item.sku, \"?\")\n",
}

// TestUseAtNestedLevels: a mapping file is compiled where it is used, at
// any depth, and its result lands at that depth.
func TestUseAtNestedLevels(t *testing.T) {
	f := mustCompile(t, compileEnv(t, nestedMappings), `
trigger: {http: {path: /t}}
steps:
  - map:
      customer: {use: customer}
      billing:
        to: {use: address}
      lines: [{use: address}]
  - split:
      items: '[{sku: "A"}, {sku: "B"}]'
      as: lines
      steps:
        - map:
            line: {use: line}
`)
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{"email": "ANN@X.NL", "street": "Dam 1", "zip": "1012ab"}}, nil, 0, flows.Deps{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	addr := map[string]any{"street": "Dam 1", "zip": "1012AB"}
	want := map[string]any{
		"customer": map[string]any{"email": "ann@x.nl", "address": addr},
		"billing":  map[string]any{"to": addr},
		"lines":    []any{addr},
	}
	if !reflect.DeepEqual(res.State.Body, want) {
		t.Errorf("body = %#v\nwant %#v", res.State.Body, want)
	}
	lines := []any{
		map[string]any{"line": map[string]any{"sku": "A", "item": "100"}},
		map[string]any{"line": map[string]any{"sku": "B", "item": "200"}},
	}
	if !reflect.DeepEqual(res.State.Vars["lines"], lines) {
		t.Errorf("vars.lines = %#v\nwant %#v", res.State.Vars["lines"], lines)
	}
}

// TestUseDiagnosticsNameTheMappingFile: a mapping's expressions are
// compiled in the scope of each use; what fails there is reported at the
// mapping file's line and column.
func TestUseDiagnosticsNameTheMappingFile(t *testing.T) {
	files := map[string]string{
		"line":    nestedMappings["line"],
		"broken":  "map:\n  total: dec_sum(body.lines, \"net\") +\n  code: lookup(\"sku_to_itme\", body.sku, \"?\")\n",
		"wrapper": "map:\n  inner:\n    deeper: {use: broken}\n",
	}
	_, ds := compileWith(t, compileEnv(t, files), `
trigger: {http: {path: /t}}
steps:
  - split:
      items: body.lines
      steps:
        - map: {use: line}
  - map:
      first: {use: line}
      w: {use: wrapper}
      ghost: {use: lien}
`)
	want := []string{
		`flows/f.yaml:11:20: use: unknown mapping "lien" (did you mean "line"?)`,
		// line is fine inside the split; at the top level item is undefined.
		`mappings/line.yaml:2:8: item is only defined inside a split (use body here, or move the step into split.steps)`,
		`mappings/line.yaml:3:31: item is only defined inside a split (use body here, or move the step into split.steps)`,
		`mappings/broken.yaml:2:37: unexpected token EOF`,
		`mappings/broken.yaml:3:16: unknown lookup table "sku_to_itme" (did you mean "sku_to_item"?)`,
	}
	got := strings.Split(ds.Error(), "\n")
	if !sameSet(got, want) {
		t.Errorf("diagnostics:\n%s\nwant (in any order):\n%s", ds.Error(), strings.Join(want, "\n"))
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

// TestUseTwiceReportsOnce: a mapping used twice in the same scope has the
// same problem twice; the analyst needs to read it once.
func TestUseTwiceReportsOnce(t *testing.T) {
	_, ds := compileWith(t, compileEnv(t, map[string]string{"line": nestedMappings["line"]}), `
trigger: {http: {path: /t}}
steps:
  - map: {a: {use: line}, b: {use: line}}
`)
	if len(ds) != 2 {
		t.Errorf("got %d diagnostics, want 2 (one per item.sku):\n%v", len(ds), ds)
	}
}

// TestUseCycle: a mapping that uses itself, directly or through others, is
// reported at the use that closes the cycle, with the chain as the hint.
func TestUseCycle(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		use   string
		want  []string
	}{
		{
			name:  "self",
			files: map[string]string{"a": "map:\n  x: body.x\n  again: {use: a}\n"},
			use:   "a",
			want:  []string{`mappings/a.yaml:3:16: use: mapping "a" uses itself (a -> a)`},
		},
		{
			name: "through two others",
			files: map[string]string{
				"a": "map:\n  b: {use: b}\n",
				"b": "map:\n  c: {use: c}\n",
				"c": "map:\n  nested:\n    a: {use: a}\n",
			},
			use:  "a",
			want: []string{`mappings/c.yaml:3:14: use: mapping "a" uses itself (a -> b -> c -> a)`},
		},
		{
			name: "entered in the middle",
			files: map[string]string{
				"a": "map:\n  b: {use: b}\n",
				"b": "map:\n  a: {use: a}\n",
			},
			use:  "b",
			want: []string{`mappings/a.yaml:2:12: use: mapping "b" uses itself (b -> a -> b)`},
		},
		{
			name: "a diamond is no cycle",
			files: map[string]string{
				"a": "map:\n  l: {use: c}\n  r: {use: b}\n",
				"b": "map:\n  c: {use: c}\n",
				"c": "map:\n  x: body.x\n",
			},
			use: "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "trigger: {http: {path: /t}}\nsteps:\n  - map: {out: {use: " + tt.use + "}}\n"
			_, ds := compileWith(t, compileEnv(t, tt.files), src)
			var got []string
			if len(ds) > 0 {
				got = strings.Split(ds.Error(), "\n")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestCompileReportsEverything: every expression and reference of a flow
// is checked, and the findings come sorted by position.
func TestCompileReportsEverything(t *testing.T) {
	_, ds := compileWith(t, compileEnv(t, nil), `
trigger:
  http:
    path: /t
    mode: sync
    auth: {bearer: {token: "${env:T}"}}
dedup: {key: bdy.id}
rate_limit: {key: headr("x"), limit: 1, per: 1s}
steps:
  - validate: [{rule: '1 + 1'}]
  - set: {vars.x: item}
  - call: {connection: erp, path: '/x/{{ bdy.id }}', headers: {X-A: USD}, query: {q: body.q +}}
  - respond: {status: '"ok" +', body: body}
  - publish: {topic: t, body: meta.nope}
  - log: {message: lower(), level: warn}
`)
	want := []string{
		`flows/f.yaml:6:28: trigger.http.auth.bearer.token: environment variable T is not set (export it, or give a default: ${env:NAME:-value})`,
		`flows/f.yaml:7:14: unknown name "bdy" (did you mean "body"?)`,
		`flows/f.yaml:8:19: unknown name "headr" (did you mean "header"?)`,
		`flows/f.yaml:10:24: expected bool, but got int`,
		`flows/f.yaml:11:19: item is only defined inside a split (use body here, or move the step into split.steps)`,
		`flows/f.yaml:12:42: unknown name "bdy" (did you mean "body"?)`,
		`flows/f.yaml:12:69: unknown name "USD" (literal text goes in quotes: '"USD"')`,
		`flows/f.yaml:12:93: unexpected token EOF`,
		`flows/f.yaml:13:29: unexpected token EOF`,
		`flows/f.yaml:14:36: type mappings.Meta has no field nope`,
		`flows/f.yaml:15:20: not enough arguments to call lower`,
	}
	if got := strings.Split(ds.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", ds.Error(), strings.Join(want, "\n"))
	}
}

// A diagnostic inside a {{ }} template points at the name in the file:
// after characters of more than one byte, after a doubled single quote, and in a
// folded scalar. Template parts were placed by byte offsets into the
// unescaped text.
func TestTemplateDiagnosticsPointAtTheName(t *testing.T) {
	for _, path := range []string{
		`'/größe/{{ bdy.id }}'`,
		`'/it''s/{{ bdy.id }}'`,
		">\n        /orders/\n        {{ bdy.id }}",
	} {
		src := "trigger: {http: {path: /t}}\nsteps:\n  - call:\n      connection: erp\n      path: " + path + "\n"
		_, ds := compileWith(t, compileEnv(t, nil), src)
		lines := strings.Split(src, "\n")
		var want string
		for i, l := range lines {
			if c := strings.Index(l, "bdy"); c >= 0 {
				want = fmt.Sprintf("flows/f.yaml:%d:%d: ", i+1, utf8.RuneCountInString(l[:c])+1)
			}
		}
		if len(ds) != 1 || !strings.HasPrefix(ds[0].String(), want) {
			t.Errorf("path %s: %v; want it at %s", path, ds, want)
		}
	}
}

// A publish or sql step naming an http connection is refused at load: the
// http connector would send it as an HTTP method PUBLISH or SQL.
func TestPublishAndSQLRefuseHTTPConnections(t *testing.T) {
	env := compileEnv(t, nil)
	env.HTTPConnections = []string{"erp"}
	_, ds := compileWith(t, env, `
trigger: {http: {path: /t}}
steps:
  - publish: {topic: orders, connection: erp}
  - call: {connection: erp, sql: 'select 1'}
  - call: {connection: wms, sql: 'select 1'}
`)
	want := []string{
		`flows/f.yaml:4:14: step 1 (publish): connection "erp" is an http connection, which cannot publish (publish to a redis_stream or nats connection)`,
		`flows/f.yaml:5:24: step 2 (call): connection "erp" is an http connection, which cannot run sql (sql goes to a postgres connection)`,
	}
	if got := strings.Split(ds.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", ds.Error(), strings.Join(want, "\n"))
	}
}

// A stream trigger is linted against what it can consume from: a Sentinel
// URL, or a NATS name the jetstream client refuses, is refused at load
// rather than leaving a live flow that never reads its stream.
func TestStreamTriggerURLSchemes(t *testing.T) {
	for url, ok := range map[string]bool{
		"redis://127.0.0.1:6379/0":                  true,
		"rediss://cache:6380?consumer=replica-1":    true,
		"redis-sentinel://127.0.0.1:26379/mymaster": false,
		"nats://127.0.0.1:4222":                     false,
		"https://127.0.0.1:6379":                    false,
	} {
		_, ds := compileWith(t, compileEnv(t, nil), fmt.Sprintf("trigger: {redis_stream: {url: %q, stream: orders}}\nsteps: [{publish: {topic: t}}]\n", url))
		if got := len(ds) == 0; got != ok {
			t.Errorf("%s: diagnostics %v, want accepted %v", url, ds, ok)
		}
	}
	// NATS names the jetstream client refuses are refused at load too.
	for names, ok := range map[string]bool{
		"stream: ORDERS, group: billing-1": true,
		"stream: ORDERS, group: a.b":       false,
		`stream: "ORDERS/EU"`:              false,
		`stream: ORDERS, group: "a\\b"`:    false,
	} {
		_, ds := compileWith(t, compileEnv(t, nil), fmt.Sprintf("trigger: {nats: {url: nats://127.0.0.1:4222, %s}}\nsteps: [{publish: {topic: t}}]\n", names))
		if got := len(ds) == 0; got != ok {
			t.Errorf("%s: diagnostics %v, want accepted %v", names, ds, ok)
		}
	}
}

// A flow-level rate_limit refuses requests of an http trigger with 429;
// a flow fed otherwise has no requests to refuse, and would run with its
// limit silently unenforced: it is refused at load, with the way to pace
// what the flow sends.
func TestFlowRateLimitNeedsAnHTTPTrigger(t *testing.T) {
	for trigger, ok := range map[string]bool{
		"{http: {path: /t}}":              true,
		"{schedule: {cron: '* * * * *'}}": false,
		"{event: {topic: orders}}":        false,
		"{redis_stream: {url: 'redis://127.0.0.1:6379', stream: orders}}": false,
	} {
		_, ds := compileWith(t, compileEnv(t, nil), "trigger: "+trigger+"\nrate_limit: {limit: 5, per: 1s}\nsteps: [{publish: {topic: t}}]\n")
		if got := len(ds) == 0; got != ok {
			t.Errorf("%s: diagnostics %v, want accepted %v", trigger, ds, ok)
		}
		if !ok && len(ds) > 0 && !strings.Contains(ds.Error(), "f.yaml:2:") {
			t.Errorf("%s: %v, want it at the rate_limit (line 2)", trigger, ds)
		}
	}
}
