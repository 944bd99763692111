package dsl_test

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
)

const designExample = "testdata/design/order-capture.yaml"

// TestDesignExample decodes the example flow of DESIGN.md ("The flow
// language"), its comma trap fixed by quoting, and checks the structure.
func TestDesignExample(t *testing.T) {
	src, err := os.ReadFile(designExample)
	if err != nil {
		t.Fatal(err)
	}
	f, ds := dsl.ParseFlow(designExample, src)
	if len(ds) > 0 {
		t.Fatalf("diagnostics:\n%v", ds)
	}
	eq := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	eq("ID", f.ID, "order-capture")
	eq("Flow", f.Flow, "order-capture")
	eq("Description", f.Description, "Channel orders -> canonical order -> ERP sales order + WMS allocation")
	eq("File", f.File, designExample)

	tr := f.Trigger
	eq("trigger kind", tr.Kind(), "http")
	eq("trigger.At", tr.At, dsl.Pos{Line: 6, Col: 3})
	h := tr.HTTP
	eq("http", [3]string{h.Path, h.Method, h.Mode}, [3]string{"/hooks/shopify/orders", "POST", "async"})
	if h.Auth == nil || h.Auth.HMAC == nil {
		t.Fatalf("auth = %+v", h.Auth)
	}
	hm := h.Auth.HMAC
	eq("hmac", [3]string{hm.Header, hm.Secret.Raw, hm.Encoding}, [3]string{"X-Shopify-Hmac-Sha256", "${env:SHOPIFY_SECRET}", "base64"})
	eq("hmac.secret.At", hm.Secret.At, dsl.Pos{Line: 10, Col: 58})

	eq("dedup.key", f.Dedup.Key.Src, `"shopify:" + string(body.id)`)
	eq("dedup.key style", f.Dedup.Key.Style, dsl.SingleQuoted)
	eq("dedup.key.At", f.Dedup.Key.At, dsl.Pos{Line: 11, Col: 15}) // after the quote
	eq("dedup.ttl", f.Dedup.TTL.D, 72*time.Hour)

	eq("rate_limit.key", f.RateLimit.Key.Src, `header("X-Shopify-Shop-Domain")`)
	eq("rate_limit", [2]any{f.RateLimit.Limit, f.RateLimit.Per.D}, [2]any{50, time.Second})
	eq("retry", *f.Retry, dsl.Retry{Attempts: 8, Backoff: "exponential",
		Initial: dsl.Duration{D: time.Second, At: dsl.Pos{Line: 13, Col: 53}, Set: true},
		Max:     dsl.Duration{D: 2 * time.Minute, At: dsl.Pos{Line: 13, Col: 62}, Set: true},
		At:      dsl.Pos{Line: 13, Col: 8}})

	var kinds []string
	for _, s := range f.Steps {
		kinds = append(kinds, s.Kind())
	}
	eq("step kinds", kinds, []string{"validate", "map", "call", "choice"})
	if t.Failed() {
		t.FailNow()
	}

	rules := f.Steps[0].Validate
	eq("rules", len(rules), 2)
	eq("rule 1", [2]string{rules[0].Rule.Src, rules[0].Message}, [2]string{"body.id != nil", "order id is required"})
	eq("rule 1 at", rules[0].Rule.At, dsl.Pos{Line: 16, Col: 16})
	eq("rule 2", [2]string{rules[1].Rule.Src, rules[1].Message}, [2]string{"all(body.line_items, .quantity > 0)", "every line needs a positive quantity"})

	m := f.Steps[1].Map.Node
	var keys []string
	for _, fl := range m.Fields {
		keys = append(keys, fl.Key)
	}
	eq("map fields", keys, []string{"order_id", "customer", "lines"})
	eq("map order_id", m.Fields[0].Value.Expr.Src, `"SHP-" + string(body.id)`)
	eq("map customer.email", m.Fields[1].Value.Fields[0].Key+"="+m.Fields[1].Value.Fields[0].Value.Expr.Src, "email=lower(body.email)")
	eq("map lines", strings.HasPrefix(m.Fields[2].Value.Expr.Src, `map(body.line_items, {sku: lookup("sku_to_item"`), true)
	eq("map use", m.Use, "")

	c := f.Steps[2].Call
	eq("call", [4]string{c.Connection, c.Method, c.Path.Raw, c.As}, [4]string{"erp", "POST", "/sales-orders", "erp"})
	eq("call path parts", c.Path.Parts, []dsl.TemplatePart{{Lit: "/sales-orders"}})
	eq("call body", c.Body.Src, "body")
	eq("call rate_limit", [3]any{c.RateLimit.Key.Src, c.RateLimit.Limit, c.RateLimit.Per.D}, [3]any{`"erp"`, 10, time.Second})
	eq("call retry", c.Retry, (*dsl.Retry)(nil))

	br := f.Steps[3].Choice
	eq("branches", len(br), 2)
	eq("branch 1 when", br[0].When.Src, `vars.erp.body.status == "held"`)
	eq("branch 1 steps", br[0].Steps[0].Publish.Topic, "order.held")
	eq("branch 2 when", br[1].When, (*dsl.Expr)(nil))
	eq("branch 2 otherwise", br[1].Otherwise[0].Publish.Topic, "order.accepted")
	eq("branch 2 at", br[1].At, dsl.Pos{Line: 32, Col: 9})

	// It compiles against a workspace with the erp connection and the
	// sku_to_item lookup table.
	cf, ds := flows.Compile(f, testFlowEnv(t))
	if len(ds) > 0 {
		t.Fatalf("compile:\n%v", ds)
	}
	eq("accept steps", cf.AcceptSteps, 1)
	eq("auth", [2]any{cf.Trigger.Auth.Kind, string(cf.Trigger.Auth.Secrets[0])}, [2]any{"hmac", "s3cret"})
}

// TestDesignExampleCommaTrap: the example as DESIGN.md prints it, with
// an unquoted all(x, .q > 0) inside { }, is split at the comma.
func TestDesignExampleCommaTrap(t *testing.T) {
	src, err := os.ReadFile(designExample)
	if err != nil {
		t.Fatal(err)
	}
	quoted := `'all(body.line_items, .quantity > 0)'`
	if !strings.Contains(string(src), quoted) {
		t.Fatal("the example no longer quotes the rule")
	}
	orig := strings.Replace(string(src), quoted, "all(body.line_items, .quantity > 0)", 1)
	_, ds := dsl.ParseFlow(designExample, []byte(orig))
	want := designExample + `:17:37: step 1 (validate): rule 2: unknown field ".quantity > 0)" (inside { } a comma ends a value: quote values that contain commas)`
	if ds.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", ds, want)
	}
}

const exampleConfig = "../examples/distribution/conveyor.yaml"

func TestParseConfigExample(t *testing.T) {
	src, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, ds := dsl.ParseConfig(exampleConfig, src)
	if len(ds) > 0 {
		t.Fatalf("diagnostics:\n%v", ds)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.AdminListen != "127.0.0.1:8081" || cfg.File != exampleConfig {
		t.Errorf("listen = %q, admin_listen = %q, file = %q", cfg.Listen, cfg.AdminListen, cfg.File)
	}
	if cfg.Store.Backend != "embedded" || cfg.Store.Path != "data" || cfg.Store.URL.Raw != "" {
		t.Errorf("store = %+v", cfg.Store)
	}
	var names []string
	for name := range cfg.Connections {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, want := range []string{"erp", "wms"} {
		if _, ok := cfg.Connections[want]; !ok {
			t.Errorf("connections %v lack %q", names, want)
		}
	}
	for name, c := range cfg.Connections {
		if c.HTTP != nil && c.HTTP.BaseURL.Raw == "" {
			t.Errorf("connection %s: %+v", name, c)
		}
		if c.HTTP == nil && c.Postgres == nil && c.File == nil && c.RedisStream == nil && c.NATS == nil {
			t.Errorf("connection %s has no kind", name)
		}
	}
	unset := func(string) (string, bool) { return "", false }
	erp := cfg.Connections["erp"].HTTP
	if erp.BaseURL.Raw != "${env:ERP_URL:-http://127.0.0.1:9101}" {
		t.Errorf("erp base_url = %q", erp.BaseURL.Raw)
	}
	if u, err := erp.BaseURL.Resolve(unset); err != nil || u != "http://127.0.0.1:9101" {
		t.Errorf("erp base_url resolves to %q, %v", u, err)
	}
	set := func(n string) (string, bool) {
		return map[string]string{"ERP_URL": "https://erp.example", "ERP_TOKEN": "t"}[n], n != "WMS_URL"
	}
	if u, _ := erp.BaseURL.Resolve(set); u != "https://erp.example" {
		t.Errorf("erp base_url with ERP_URL set = %q", u)
	}
	if a, err := erp.Headers["Authorization"].Resolve(unset); err != nil || a != "Bearer dev" {
		t.Errorf("erp Authorization = %q, %v", a, err)
	}
	if erp.Timeout.D != 10*time.Second || !erp.Timeout.Set {
		t.Errorf("erp timeout = %+v", erp.Timeout)
	}
	if erp.At.Line == 0 || cfg.Connections["erp"].At.Line == 0 {
		t.Error("connection positions not set")
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"store: {backend: redis}\n", "c.yaml:1:8: store: backend redis needs a url (url: ${env:REDIS_URL})"},
		{"store: {backend: mongo, path: x}\n", `c.yaml:1:18: store.backend: "mongo" is not one of embedded, redis`},
		{"connections:\n  erp: {htp: {base_url: x}}\n", `c.yaml:2:9: connections.erp: unknown connection kind "htp" (did you mean "http"?)`},
		{"connections:\n  erp: {http: {base_url: x, timeout: 10}}\n", `c.yaml:2:38: connections.erp.http.timeout: duration "10" has no unit (use units ms, s, m, h or d, e.g. 30s)`},
		{"connections:\n  erp: {http: {}}\n", `c.yaml:2:15: connections.erp.http: missing required field "base_url" (Base URL, e.g. ${env:ERP_URL:-http://127.0.0.1:9101})`},
		{"lisen: 127.0.0.1:1\n", `c.yaml:1:1: unknown field "lisen" (did you mean "listen"?)`},
		{"listen: nonsense\nadmin_listen: 127.0.0.1:99999\n", `c.yaml:1:1: listen: "nonsense" is not a host:port address (such as 127.0.0.1:8080, or 0.0.0.0:8080 for every interface)` + "\n" +
			`c.yaml:1:1: admin_listen: "127.0.0.1:99999" is not a host:port address (such as 127.0.0.1:8080, or 0.0.0.0:8080 for every interface)`},
		{"listen: ':8080'\nadmin_listen: '[::1]:0'\n", ""},
		{"api:\n  tokens:\n    - {name: ci, role: editor}\n", "c.yaml:3:7: api.tokens[1] (ci): set exactly one of token and sha256"},
		{"api:\n  tokens:\n    - {name: ci, role: boss, token: x}\n", `c.yaml:3:24: api.tokens[1].role: "boss" is not one of viewer, operator, editor, admin`},
		{"store: {retention: 10m}\n", "c.yaml:1:20: store.retention: 10m0s is shorter than an hour (the journal is how an operator finds a message: such as 7d or 30d)"},
		{"store: {retention: 30d}\n", ""},
	}
	for _, tt := range tests {
		_, ds := dsl.ParseConfig("c.yaml", []byte(tt.src))
		if got := ds.Error(); got != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

// TestByteOrderMark: editors on Windows may start a file with a UTF-8 byte
// order mark; it is not part of the first key, nor a column.
func TestByteOrderMark(t *testing.T) {
	src := "\ufefftrigger: {event: {topic: a}}\nstepz: []\n"
	f, ds := dsl.ParseFlow("bom.yaml", []byte(src))
	want := `bom.yaml:1:1: missing required field "steps" (The steps every message runs through, in order)` + "\n" +
		`bom.yaml:2:1: unknown field "stepz" (did you mean "steps"?)`
	if ds.Error() != want || f.Trigger == nil || f.Trigger.Event.Topic != "a" || f.Trigger.At != (dsl.Pos{Line: 1, Col: 10}) {
		t.Errorf("got %v, trigger %+v; want\n%s", ds, f.Trigger, want)
	}
}

// A file nested deeper than any flow is refused before the YAML parser
// sees it: the parser's memory grows with the square of the nesting, and
// a 30 KB file of "[" took 2 GB.
func TestDeepNestingIsRefusedBeforeParsing(t *testing.T) {
	for _, open := range []string{"[", "{a: "} {
		src := "trigger: " + strings.Repeat(open, 30000)
		_, ds := dsl.ParseFlow("deep.yaml", []byte(src))
		if len(ds) != 1 || !strings.Contains(ds[0].String(), "deep.yaml:1:") || !strings.Contains(ds[0].Message, "nested deeper than 200 levels") {
			t.Errorf("%q x 30000: %v", open, ds)
		}
	}
	// Brackets in quotes, comments and plain text do not count.
	src := "description: 'it''s " + strings.Repeat("[", 300) + "'\n# " + strings.Repeat("{", 300) +
		"\ntrigger: {http: {path: /in}}\nsteps: [{log: {message: \"" + strings.Repeat("[", 300) + "\"}}]\n"
	if _, ds := dsl.ParseFlow("ok.yaml", []byte(src)); len(ds) != 0 {
		t.Errorf("a flow with brackets in quotes and comments: %v", ds)
	}
}

// A file connection's CSV may escape formulas; a trigger's CSV, which is
// read, has nothing to escape and refuses the setting.
func TestParseConfigFileCSVEscapeFormulas(t *testing.T) {
	cfg, ds := dsl.ParseConfig("c.yaml", []byte("connections: {out: {file: {dir: out, format: csv, csv: {escape_formulas: true}}}}\n"))
	if len(ds) > 0 {
		t.Fatalf("%v", ds)
	}
	if c := cfg.Connections["out"].File.CSV; c == nil || !c.EscapeFormulas {
		t.Errorf("csv settings %+v, want escape_formulas", c)
	}
	_, ds = dsl.ParseFlow("f.yaml", []byte("trigger: {file: {dir: in, format: csv, csv: {escape_formulas: true}}}\nsteps: [{log: {message: x}}]\n"))
	if !strings.Contains(ds.Error(), `unknown field "escape_formulas"`) {
		t.Errorf("a trigger's csv: %v", ds)
	}
}

// A listen port may be a service name, as net.Listen takes it. "https"
// is in Go's own table of services, so no /etc/services is needed.
func TestListenServiceName(t *testing.T) {
	if _, ds := dsl.ParseConfig("c.yaml", []byte("listen: '127.0.0.1:https'\n")); len(ds) > 0 {
		t.Errorf("%v", ds)
	}
}

// Aliases that refer to lists of aliases multiply: six levels of ten make
// a million values from a file of a few hundred bytes. The decoder stops
// expanding them at a budget and says where, instead of taking seconds and
// hundreds of megabytes (measured here by what it allocates, not by time).
func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("trigger: {http: {path: /in}}\nsteps:\n  - map:\n      a0: &a0 body.x\n")
	for n := 1; n <= 6; n++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", n-1), 10), ", ")
		fmt.Fprintf(&b, "      a%d: &a%d [%s]\n", n, n, refs)
	}
	src := []byte(b.String())
	var ds dsl.Diagnostics
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, ds = dsl.ParseFlow("bomb.yaml", src)
	runtime.ReadMemStats(&after)
	if mb := (after.TotalAlloc - before.TotalAlloc) >> 20; mb >= 50 {
		t.Errorf("%d bytes allocated %d MB", len(src), mb)
	}
	found := false
	for _, d := range ds {
		if strings.Contains(d.Message, "aliases expand to too many values") && d.Line > 4 {
			found = true
		}
	}
	if !found {
		t.Errorf("no diagnostic for the alias expansion: %v", ds)
	}
}
