package editorapi

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
)

const yamlCT = "application/yaml"

// TestEveryRoute walks every route as an analyst and an operator would.
func TestEveryRoute(t *testing.T) {
	f := newFixture(t)
	const A = Admin

	if r := f.req(0, "GET", "/openapi.yaml", nil); r.status != 200 || !strings.HasPrefix(string(r.body), "openapi: 3") {
		t.Fatalf("openapi: %s", r)
	}

	// Flows: list, get with ETag.
	r := f.req(Viewer, "GET", "/flows", nil)
	list := r.obj(t)["flows"].([]any)
	if r.status != 200 || len(list) != 2 {
		t.Fatalf("list: %s", r)
	}
	echo := list[0].(map[string]any)
	if echo["id"] != "echo" || echo["file"] != "flows/echo.yaml" || echo["trigger"] != "http POST /echo (sync)" || echo["revision"] != 1.0 ||
		echo["status"] != "active" || echo["description"] != "answers its version" || echo["stats"] == nil || echo["diagnostics"] == nil {
		t.Errorf("list entry: %v", echo)
	}
	r = f.req(Viewer, "GET", "/flows/echo", nil)
	got := r.obj(t)
	etag := r.header.Get("ETag")
	if r.status != 200 || got["source"] != echoFlow(1) || etag != `"`+got["etag"].(string)+`"` || len(etag) != 66 {
		t.Fatalf("get: %s (ETag %s)", r, etag)
	}
	if r := f.req(Viewer, "GET", "/flows/nope", nil); r.status != 404 || errCode(t, r) != "not_found" {
		t.Errorf("unknown flow: %s", r)
	}

	// Validate and test without saving.
	r = f.req(Editor, "POST", "/validate?id=echo", "steps: [{map: {x: bdy.id}}]\n", "Content-Type", yamlCT)
	if o := r.obj(t); r.status != 200 || o["valid"] != false || !strings.Contains(string(r.body), `"file":"flows/echo.yaml"`) {
		t.Errorf("validate broken: %s", r)
	}
	r = f.req(Editor, "POST", "/validate", "flow: fresh\n"+strings.Replace(echoFlow(5), "/echo", "/fresh", 1), "Content-Type", yamlCT)
	if o := r.obj(t); r.status != 200 || o["valid"] != true || len(o["diagnostics"].([]any)) != 0 {
		t.Errorf("validate valid: %s", r)
	}
	r = f.req(Editor, "POST", "/flows/orders/test", map[string]any{
		"input": map[string]any{"body": map[string]any{"id": 820982911946154777}},
		"mocks": map[string]any{"erp": map[string]any{"status": 201, "body": map[string]any{"sales_order": "SO-9"}}},
	})
	if o := r.obj(t); r.status != 200 || o["outcome"] != "completed" || len(o["calls"].([]any)) != 2 || !strings.Contains(string(r.body), `"SO-9"`) ||
		!strings.Contains(string(r.body), "820982911946154777") {
		t.Errorf("test saved flow: %s", r)
	}
	r = f.req(Editor, "POST", "/flows/echo/test", map[string]any{"input": map[string]any{"body": nil}, "source": echoFlow(7)})
	if o := r.obj(t); r.status != 200 || o["response"].(map[string]any)["body"].(map[string]any)["v"] != 7.0 {
		t.Errorf("test unsaved source: %s", r)
	}
	r = f.req(Editor, "POST", "/flows/echo/test", map[string]any{"source": "steps: [{map: {x: bdy}}]\n"})
	if r.status != 422 || errCode(t, r) != "invalid_flow" || r.obj(t)["diagnostics"] == nil {
		t.Errorf("test broken source: %s", r)
	}
	if f.erp.calls.Load()+f.wms.calls.Load() != 0 {
		t.Error("a dry run reached a target")
	}

	// Update, create, delete.
	r = f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", yamlCT, "If-Match", etag)
	if r.status != 200 || r.obj(t)["revision"] != 2.0 || r.header.Get("ETag") == etag || f.echoV() != 2.0 {
		t.Fatalf("put: %s", r)
	}
	r = f.req(Editor, "POST", "/flows", map[string]any{"id": "extra", "source": strings.Replace(echoFlow(3), "/echo", "/extra", 1)})
	if r.status != 201 || r.header.Get("Location") != Prefix+"/flows/extra" || r.header.Get("ETag") == "" || r.obj(t)["status"] != "active" {
		t.Fatalf("create: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "extra", "source": echoFlow(3)}); r.status != 409 {
		t.Errorf("create twice: %s", r)
	}
	if r := f.req(Editor, "DELETE", "/flows/extra", nil); r.status != 204 {
		t.Fatalf("delete: %s", r)
	}
	if r := f.req(Viewer, "GET", "/flows/extra", nil); r.status != 404 {
		t.Errorf("deleted flow: %s", r)
	}

	// Enable and disable.
	if r := f.req(Operator, "POST", "/flows/echo/disable", nil); r.status != 200 || r.obj(t)["status"] != "disabled" {
		t.Fatalf("disable: %s", r)
	}
	if s, _ := f.trigger("/echo", `{}`); s != 503 {
		t.Errorf("disabled flow answers %d", s)
	}
	if r := f.req(Operator, "POST", "/flows/echo/enable", nil); r.status != 200 || r.obj(t)["status"] != "active" {
		t.Fatalf("enable: %s", r)
	}

	// Revisions, diff, rollback.
	r = f.req(Viewer, "GET", "/flows/echo/revisions", nil)
	revs := r.obj(t)["revisions"].([]any)
	if r.status != 200 || len(revs) != 2 || revs[1].(map[string]any)["author"] != "eddie-editor" || strings.Contains(string(r.body), "source") {
		t.Errorf("revisions: %s", r)
	}
	if r := f.req(Viewer, "GET", "/flows/echo/revisions/1", nil); r.status != 200 || r.obj(t)["source"] != echoFlow(1) {
		t.Errorf("revision 1: %s", r)
	}
	if r := f.req(Viewer, "GET", "/flows/echo/revisions/x", nil); r.status != 400 {
		t.Errorf("revision x: %s", r)
	}
	r = f.req(Viewer, "GET", "/flows/echo/diff", nil)
	if o := r.obj(t); r.status != 200 || o["from"] != 1.0 || o["to"] != 2.0 || !strings.Contains(o["diff"].(string), "+steps: [{respond: {body: '{v: 2}'}}]") {
		t.Errorf("diff: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows/echo/rollback", map[string]any{"revision": 1}); r.status != 200 || r.obj(t)["revision"] != 3.0 || f.echoV() != 1.0 {
		t.Errorf("rollback: %s", r)
	}

	// Messages: "where is order 1042?"
	dead := f.deadOrder(1042)
	for _, q := range []string{"?key=1042", "?key=orders:1042", "?flow=orders&status=dead", "?since=1h&flow=orders", "?since=2020-01-01T00:00:00Z&status=dead"} {
		r := f.req(Viewer, "GET", "/messages"+q, nil)
		ms := r.obj(t)["messages"].([]any)
		if r.status != 200 || len(ms) != 1 || ms[0].(map[string]any)["id"] != dead || ms[0].(map[string]any)["dedup_key"] != "orders:1042" {
			t.Errorf("messages%s: %s", q, r)
		}
	}
	for _, q := range []string{"?status=lost", "?since=yesterday", "?limit=0"} {
		if r := f.req(Viewer, "GET", "/messages"+q, nil); r.status != 400 {
			t.Errorf("messages%s: %s", q, r)
		}
	}
	r = f.req(Viewer, "GET", "/messages/"+dead, nil)
	m := r.obj(t)
	if r.status != 200 || m["status"] != "dead" || m["failed_step"] != "2" || m["revision"] != 1.0 || len(m["attempts"].([]any)) != 1 || m["trace"] == nil {
		t.Errorf("message: %s", r)
	}
	if h := m["headers"].(map[string]any); h["X-Shop-Hmac-Sha256"] != "[redacted]" {
		t.Errorf("credentials shown: %v", h)
	}
	if memo := m["memo"].(map[string]any); memo["orders:"+dead+":1"] != 201.0 {
		t.Errorf("memo: %v", memo)
	}
	if r := f.req(Viewer, "GET", "/messages/nope", nil); r.status != 404 {
		t.Errorf("unknown message: %s", r)
	}

	// Dead letters: list, get, replay, discard, bulk replay.
	r = f.req(Viewer, "GET", "/dead-letters?flow=orders", nil)
	if ms := r.obj(t)["messages"].([]any); r.status != 200 || len(ms) != 1 {
		t.Errorf("dead letters: %s", r)
	}
	if r := f.req(Viewer, "GET", "/dead-letters/"+dead, nil); r.status != 200 || r.obj(t)["error"] == nil {
		t.Errorf("dead letter: %s", r)
	}
	f.erp.status.Store(0)
	if r := f.req(Operator, "POST", "/dead-letters/"+dead+"/replay", map[string]any{"from": "start", "revision": "current"}); r.status != 200 || r.obj(t)["status"] != "queued" {
		t.Fatalf("replay: %s", r)
	}
	f.waitStatus(dead, store.Completed)
	if r := f.req(Viewer, "GET", "/dead-letters/"+dead, nil); r.status != 404 {
		t.Errorf("a replayed message is still a dead letter: %s", r)
	}
	d2, d3 := f.deadOrder(2), f.deadOrder(3)
	if r := f.req(Operator, "DELETE", "/dead-letters/"+d2, map[string]any{"reason": "test order"}); r.status != 200 || r.obj(t)["status"] != "discarded" {
		t.Errorf("discard: %s", r)
	}
	if r := f.req(Operator, "DELETE", "/dead-letters/"+d3, map[string]any{}); r.status != 400 {
		t.Errorf("discard without a reason: %s", r)
	}
	if r := f.req(Operator, "POST", "/dead-letters/replay", map[string]any{"filter": map[string]any{"all": true}, "from": "bogus"}); r.status != 400 {
		t.Errorf("replay with an unknown from: %s", r)
	}
	if r := f.req(Operator, "POST", "/dead-letters/replay", map[string]any{"from": "start"}); r.status != 400 {
		t.Errorf("bulk replay without a filter: %s", r)
	}
	f.erp.status.Store(0)
	r = f.req(Operator, "POST", "/dead-letters/replay", map[string]any{"filter": map[string]any{"flow": "orders"}, "revision": "pinned"})
	if o := r.obj(t); r.status != 200 || o["replayed"] != 1.0 || len(o["errors"].([]any)) != 0 {
		t.Errorf("bulk replay: %s", r)
	}
	f.waitStatus(d3, store.Completed)

	// Editor support and audit.
	if r := f.req(Viewer, "GET", "/schema", nil); r.status != 200 || r.obj(t)["$schema"] == nil {
		t.Errorf("schema: %s", r)
	}
	if r := f.req(Viewer, "GET", "/schema?kind=config", nil); r.status != 200 || !strings.Contains(string(r.body), "admin_listen") {
		t.Errorf("config schema: %s", r)
	}
	if r := f.req(Viewer, "GET", "/schema?kind=bogus", nil); r.status != 400 {
		t.Errorf("unknown kind: %s", r)
	}
	r = f.req(Viewer, "GET", "/functions", nil)
	if !strings.Contains(string(r.body), `"name":"lookup"`) || !strings.Contains(string(r.body), `"example":`) {
		t.Errorf("functions: %.300s", r.body)
	}
	r = f.req(A, "GET", "/audit?limit=100", nil)
	var actions []string
	for _, a := range r.obj(t)["entries"].([]any) {
		a := a.(map[string]any)
		actions = append(actions, fmt.Sprintf("%s %s %s", a["actor"], a["action"], a["target"]))
	}
	for _, want := range []string{"eddie-editor flow.update echo", "eddie-editor flow.create extra", "eddie-editor flow.delete extra",
		"olga-operator flow.disable echo", "olga-operator flow.enable echo", "eddie-editor flow.rollback echo",
		"olga-operator message.replay " + dead, "olga-operator message.discard " + d2, "olga-operator message.replay " + d3} {
		if !strings.Contains(strings.Join(actions, "\n"), want) {
			t.Errorf("audit lacks %q:\n%s", want, strings.Join(actions, "\n"))
		}
	}
	if strings.Contains(string(f.req(A, "GET", "/flows", nil).body), "base_url") {
		t.Error("connection configuration exposed")
	}
}

func TestIfMatchAndContentType(t *testing.T) {
	f := newFixture(t)
	etag := f.req(Viewer, "GET", "/flows/echo", nil).header.Get("ETag")
	if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", yamlCT); r.status != 428 || errCode(t, r) != "precondition_required" {
		t.Errorf("no If-Match: %s", r)
	}
	if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", "application/json", "If-Match", etag); r.status != 415 {
		t.Errorf("JSON body: %s", r)
	}
	if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", yamlCT, "If-Match", "W/"+etag); r.status != 200 {
		t.Fatalf("weak If-Match: %s", r)
	}
	// Someone else's edit went in: the old ETag is stale.
	if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(3), "Content-Type", yamlCT, "If-Match", etag); r.status != 412 || errCode(t, r) != "precondition_failed" {
		t.Errorf("stale If-Match: %s", r)
	}
	// An If-Match that names no tag is refused, not taken as no condition
	// (it used to overwrite the edit above).
	for _, bad := range []string{`""`, `W/""`, `,`, `, "x"`, `abc`, etag + `, ` + etag} {
		if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(3), "Content-Type", yamlCT, "If-Match", bad); r.status != 400 {
			t.Errorf("If-Match %s: %s", bad, r)
		}
		if r := f.req(Editor, "DELETE", "/flows/echo", nil, "If-Match", bad); r.status != 400 {
			t.Errorf("delete with If-Match %s: %s", bad, r)
		}
	}
	if r := f.req(Editor, "DELETE", "/flows/echo", nil, "If-Match", etag); r.status != 412 {
		t.Errorf("stale delete: %s", r)
	}
	if r := f.req(Editor, "PUT", "/flows/echo", echoFlow(4), "Content-Type", "application/x-yaml; charset=utf-8", "If-Match", "*"); r.status != 200 || f.echoV() != 4.0 {
		t.Errorf("If-Match *: %s", r)
	}
	if r := f.req(Editor, "PUT", "/flows/nope", echoFlow(4), "Content-Type", yamlCT, "If-Match", "*"); r.status != 404 {
		t.Errorf("unknown flow: %s", r)
	}
}

func TestInvalidUpdateLeavesLiveRevision(t *testing.T) {
	f := newFixture(t)
	etag := f.req(Viewer, "GET", "/flows/echo", nil).header.Get("ETag")
	broken := "trigger: {http: {path: /echo, mode: sync}}\nsteps:\n  - respond: {body: '{v: bdy.v}'}\n  - bogus: 1\n"
	r := f.req(Editor, "PUT", "/flows/echo", broken, "Content-Type", yamlCT, "If-Match", etag)
	if r.status != 422 || errCode(t, r) != "invalid_flow" {
		t.Fatalf("invalid update: %s", r)
	}
	ds := r.obj(t)["diagnostics"].([]any)
	if len(ds) < 1 {
		t.Fatalf("diagnostics: %s", r)
	}
	for _, d := range ds {
		d := d.(map[string]any)
		if d["file"] != "flows/echo.yaml" || d["line"].(float64) < 1 || d["col"].(float64) < 1 || d["message"] == "" {
			t.Errorf("diagnostic: %v", d)
		}
	}
	if src, _ := os.ReadFile(filepath.Join(f.dir, "flows", "echo.yaml")); string(src) != echoFlow(1) {
		t.Errorf("the file changed: %q", src)
	}
	got := f.req(Viewer, "GET", "/flows/echo", nil)
	if o := got.obj(t); o["revision"] != 1.0 || o["status"] != "active" || got.header.Get("ETag") != etag || f.echoV() != 1.0 {
		t.Errorf("after the invalid update: %s", got)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "clash", "source": echoFlow(9)}); r.status != 422 || !strings.Contains(string(r.body), "already claimed") {
		t.Errorf("a flow claiming a live route: %s", r)
	}
	// /{p}/b overlaps /echo/{x} (both match /echo/b, neither more
	// specific): net/http would refuse to serve one of them.
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "pin", "source": "trigger: {http: {path: \"/echo/{x}\", mode: sync}}\nsteps: [{respond: {}}]\n"}); r.status != 201 {
		t.Fatalf("a flow on /echo/{x}: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "overlap", "source": "trigger: {http: {path: \"/{p}/b\", mode: sync}}\nsteps: [{respond: {}}]\n"}); r.status != 422 || !strings.Contains(string(r.body), `overlaps POST /echo/{} of flow \"pin\"`) {
		t.Errorf("a flow on a route overlapping a live one: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "../etc/x", "source": echoFlow(9)}); r.status != 400 {
		t.Errorf("a flow id with a path: %s", r)
	}
	// An id too long for a file name is the client's mistake: it was a
	// 500 "internal error" from the file system (file name too long).
	long := strings.Repeat("a", 300)
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": long, "source": strings.Replace(echoFlow(9), "/echo", "/long", 1)}); r.status != 400 || !strings.Contains(string(r.body), "characters") {
		t.Errorf("a flow id of 300 characters: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": long[:100], "source": strings.Replace(echoFlow(9), "/echo", "/long", 1)}); r.status != 201 {
		t.Errorf("a flow id of 100 characters: %s", r)
	}
}

func TestRollbackRoundTrip(t *testing.T) {
	f := newFixture(t)
	first := f.req(Viewer, "GET", "/flows/echo", nil).header.Get("ETag")
	r := f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", yamlCT, "If-Match", first)
	if r.status != 200 || f.echoV() != 2.0 {
		t.Fatalf("put: %s", r)
	}
	r = f.req(Editor, "POST", "/flows/echo/rollback", map[string]any{"revision": 1})
	if o := r.obj(t); r.status != 200 || o["revision"] != 3.0 || o["source"] != echoFlow(1) || r.header.Get("ETag") != first || f.echoV() != 1.0 {
		t.Fatalf("rollback: %s", r)
	}
	r = f.req(Viewer, "GET", "/flows/echo/revisions", nil)
	var authors []string
	for _, rv := range r.obj(t)["revisions"].([]any) {
		authors = append(authors, rv.(map[string]any)["author"].(string))
	}
	if strings.Join(authors, ",") != "file,eddie-editor,eddie-editor" {
		t.Errorf("authors: %v", authors)
	}
	if d := f.req(Viewer, "GET", "/flows/echo/diff?from=1&to=3", nil).obj(t)["diff"]; d != "" {
		t.Errorf("revision 3 differs from 1:\n%s", d)
	}
	audit := string(f.req(Admin, "GET", "/audit", nil).body)
	if !strings.Contains(audit, `"action":"flow.rollback","target":"echo","detail":"rollback to 1: revision 3"`) {
		t.Errorf("audit: %s", audit)
	}
	if r := f.req(Editor, "POST", "/flows/echo/rollback", map[string]any{"revision": 7}); r.status != 404 {
		t.Errorf("rollback to a missing revision: %s", r)
	}
	if r := f.req(Editor, "POST", "/flows/echo/rollback", map[string]any{"rev": 1}); r.status != 400 || errCode(t, r) != "invalid_json" {
		t.Errorf("unknown field: %s", r)
	}
}

// TestReplayNeverDeliversTwice replays one dead letter from two operators
// at once: one replay wins, the other gets 409, and the ERP books the
// order once; the WMS allocation, which succeeded before, is not repeated.
func TestReplayNeverDeliversTwice(t *testing.T) {
	f := newFixture(t)
	id := f.deadOrder(1042)
	f.erp.status.Store(0) // the ERP is back
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = f.req(Operator, "POST", "/dead-letters/"+id+"/replay", nil).status
		}()
	}
	wg.Wait()
	if codes[0]+codes[1] != 200+409 {
		t.Fatalf("two concurrent replays answered %v, want one 200 and one 409", codes)
	}
	f.waitStatus(id, store.Completed)
	if r := f.req(Operator, "POST", "/dead-letters/"+id+"/replay", nil); r.status != 409 || errCode(t, r) != "conflict" {
		t.Errorf("replay of a completed message: %s", r)
	}
	if orders, repeats := f.erp.deliveries(); orders != 1 || repeats != 0 {
		t.Errorf("ERP: %d orders, %d repeated deliveries", orders, repeats)
	}
	if n := f.wms.calls.Load(); n != 1 {
		t.Errorf("WMS called %d times, want 1", n)
	}
	if r := f.req(Operator, "POST", "/dead-letters/"+id+"/replay", map[string]any{"from": "middle"}); r.status != 400 {
		t.Errorf("bad from: %s", r)
	}
	if r := f.req(Operator, "POST", "/dead-letters/nope/replay", nil); r.status != 404 {
		t.Errorf("unknown message: %s", r)
	}
}

// A negative bulk replay limit is refused, not taken as "no limit": it
// would replay every dead letter of the flow.
func TestBulkReplayRefusesNegativeLimit(t *testing.T) {
	f := newFixture(t)
	d1, d2 := f.deadOrder(1), f.deadOrder(2)
	f.erp.status.Store(0)
	r := f.req(Operator, "POST", "/dead-letters/replay", map[string]any{"filter": map[string]any{"flow": "orders", "limit": -1}})
	if r.status != 400 || errCode(t, r) != "bad_request" {
		t.Errorf("limit -1: %s, want 400 bad_request", r)
	}
	for _, id := range []string{d1, d2} {
		if r := f.req(Viewer, "GET", "/dead-letters/"+id, nil); r.status != 200 {
			t.Errorf("dead letter %s was replayed: %s", id, r)
		}
	}
}

func TestErrorShapeAndLimits(t *testing.T) {
	f := newFixture(t, WithBodyLimit(2048))
	big := strings.Repeat("# padding\n", 300)
	for _, c := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/validate", big, 413, "too_large"},
		{"POST", "/flows", map[string]any{"id": "x", "source": "s", "owner": "me"}, 400, "invalid_json"},
		{"POST", "/flows", `{"id": "x", "source": "s"} {}`, 400, "invalid_json"},
		{"POST", "/flows", `not json`, 400, "invalid_json"},
		{"GET", "/nope", nil, 404, "not_found"},
		{"PATCH", "/flows", nil, 405, "method_not_allowed"},
		{"GET", "/messages/x/y", nil, 404, "not_found"},
	} {
		r := f.req(Admin, c.method, c.path, c.body)
		if r.status != c.status || errCode(t, r) != c.code {
			t.Errorf("%s %s: %s, want %d %s", c.method, c.path, r, c.status, c.code)
		}
	}
	res, err := http.Get("http://" + f.e.AdminAddr() + "/console")
	must(t, err)
	res.Body.Close()
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("outside the API: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, _ := http.Get("http://" + f.e.AdminAddr() + "/healthz"); res.StatusCode != 200 {
		t.Errorf("healthz: %d", res.StatusCode)
	}
}

// A flow written through the API takes files from inside the workspace
// only: an editor token used to be able to point a file trigger at
// ../outside (or /etc) and have a viewer read the files in the messages.
func TestAPIFlowReadsNoFilesOutsideTheWorkspace(t *testing.T) {
	f := newFixture(t)
	flow := func(extra string) string {
		return "trigger: {file: {" + extra + ", pattern: '*.json'}}\nsteps: [{log: '\"x\"'}]\n"
	}
	for bad, why := range map[string]string{
		"dir: ../outside": "is outside the workspace", "dir: /etc": "is outside the workspace",
		"dir: inbox, done_dir: ../taken": "is outside the workspace", "dir: inbox/../../x": "is outside the workspace",
		"dir: inbox, error_dir: /tmp": "is outside the workspace",
		// The runtime's own files: the store (moved aside, every queued
		// message is gone at the next start), the flows, the config.
		"dir: data": "holds the runtime's own files", "dir: data/sub": "holds the runtime's own files",
		"dir: flows": "holds the runtime's own files", "dir: inbox, error_dir: mappings": "holds the runtime's own files",
		"dir: '.'": "is the workspace itself",
	} {
		r := f.req(Editor, "POST", "/flows", map[string]any{"id": "grab", "source": flow(bad)})
		if r.status != 422 || !strings.Contains(string(r.body), why) {
			t.Errorf("%s: %s; want 422, %s", bad, r, why)
		}
		if v := f.req(Editor, "POST", "/validate", flow(bad), "Content-Type", yamlCT); !strings.Contains(string(v.body), why) {
			t.Errorf("validate %s: %s", bad, v)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "flows", "grab.yaml")); err == nil {
		t.Error("a refused flow was written")
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "inbox", "source": flow("dir: inbox/orders, done_dir: archive")}); r.status != 201 {
		t.Errorf("a flow on a directory inside the workspace: %s", r)
	}
}

// A write whose revision is not live within the write timeout (a slow
// reload) answers 202 with the new ETag: the edit is written and goes
// live. It answered 500 "internal error" although the edit was applied,
// and a client that retried with its old ETag then got 412.
func TestSlowWriteAnswersAccepted(t *testing.T) {
	f := newFixture(t, WithWriteTimeout(time.Millisecond))
	etag := f.req(Viewer, "GET", "/flows/echo", nil).header.Get("ETag")
	r := f.req(Editor, "PUT", "/flows/echo", echoFlow(2), "Content-Type", yamlCT, "If-Match", etag)
	if r.status != 202 || r.header.Get("ETag") == "" || r.header.Get("ETag") == etag {
		t.Fatalf("a write not live in time: %s (ETag %q, was %q); want 202 with the new ETag", r, r.header.Get("ETag"), etag)
	}
	eventually(t, "revision 2 live", func() bool { return f.echoV() == 2.0 })
	if got := f.req(Viewer, "GET", "/flows/echo", nil); got.header.Get("ETag") != r.header.Get("ETag") {
		t.Errorf("the ETag answered %q is not the flow's %q", r.header.Get("ETag"), got.header.Get("ETag"))
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "fresh", "source": "trigger: {http: {path: /fresh, mode: sync}}\nsteps: [{respond: {}}]\n"}); r.status != 202 && r.status != 201 {
		t.Errorf("a create not live in time: %s; want 202 (or 201 when it was quick)", r)
	}
}

// A delete whose flow has not stopped within the write timeout answers
// 202: the file is gone and the flow stops by itself. It answered 500
// "internal error", left the deletion out of the audit log, and kept an
// operator's disable for a flow created again under the id.
func TestSlowDeleteAnswersAccepted(t *testing.T) {
	f := newFixture(t, WithWriteTimeout(time.Millisecond))
	if r := f.req(Operator, "POST", "/flows/echo/disable", nil); r.status != 200 {
		t.Fatalf("disable: %s", r)
	}
	if r := f.req(Editor, "DELETE", "/flows/echo", nil); r.status != 202 || r.obj(t)["status"] != "stopping" {
		t.Errorf("a delete not done in time: %s; want 202", r)
	}
	eventually(t, "echo stopped", func() bool { return !strings.Contains(string(f.req(Viewer, "GET", "/flows", nil).body), `"id":"echo"`) })
	if audit := string(f.req(Admin, "GET", "/audit", nil).body); !strings.Contains(audit, `"actor":"eddie-editor","action":"flow.delete","target":"echo"`) {
		t.Errorf("the deletion is not in the audit log: %s", audit)
	}
	if r := f.req(Editor, "POST", "/flows", map[string]any{"id": "echo", "source": echoFlow(2)}); r.status != 201 && r.status != 202 {
		t.Fatalf("create again: %s", r)
	}
	eventually(t, "echo created again, enabled", func() bool {
		o := f.req(Viewer, "GET", "/flows/echo", nil).obj(t)
		return o["status"] == "active" && o["revision"] == 2.0
	})
}

// TestMessagePages pages through the journal with the next cursor: each
// message once, newest first, and a bad cursor is refused.
func TestMessagePages(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		if s, out := f.trigger("/orders", fmt.Sprintf(`{"id": %d}`, i), "X-Shop-Hmac-Sha256", "c2lnbmF0dXJl"); s != 202 {
			t.Fatalf("order: %d %v", s, out)
		}
	}
	all := f.req(Viewer, "GET", "/messages?flow=orders", nil).obj(t)["messages"].([]any)
	if len(all) != 5 {
		t.Fatalf("one page of everything: %d messages, want 5", len(all))
	}
	var got []any
	q := "/messages?flow=orders&limit=2"
	for range 5 {
		page := f.req(Viewer, "GET", q, nil).obj(t)
		got = append(got, page["messages"].([]any)...)
		next, ok := page["next"].(string)
		if !ok {
			break
		}
		q = "/messages?flow=orders&limit=2&cursor=" + url.QueryEscape(next)
	}
	if len(got) != len(all) {
		t.Fatalf("pages hold %d messages, want %d", len(got), len(all))
	}
	for i := range all {
		if got[i].(map[string]any)["id"] != all[i].(map[string]any)["id"] {
			t.Errorf("page item %d = %v, want %v", i, got[i], all[i])
		}
	}
	if r := f.req(Viewer, "GET", "/messages?cursor=nope", nil); r.status != 400 || !strings.Contains(string(r.body), "cursor") {
		t.Errorf("bad cursor: %s", r)
	}
}

// A flow written through the API sends no server secret to a host the
// flow names: an editor token used to be able to create a stream trigger
// on redis://:${env:ANY}@a-host-of-theirs and receive any environment
// variable of the server (the admin token among them) in Redis's AUTH.
func TestAPIFlowSendsNoSecretElsewhere(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	var mu sync.Mutex
	var got []byte
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _ := c.Read(buf)
				mu.Lock()
				got = append(got, buf[:n]...)
				mu.Unlock()
			}()
		}
	}()
	flow := func(url string) string {
		kind, _, _ := strings.Cut(url, ":")
		if kind != "nats" {
			kind = "redis_stream"
		}
		return fmt.Sprintf("trigger: {%s: {url: %q, stream: s}}\nsteps: [{log: '\"x\"'}]\n", kind, url)
	}
	for _, url := range []string{
		"redis://:${env:T_ADMIN}@" + ln.Addr().String(),
		"redis://" + ln.Addr().String() + "/0?consumer=${env:T_ADMIN}",
		"nats://me:${env:T_ADMIN}@" + ln.Addr().String(),
	} {
		r := f.req(Editor, "POST", "/flows", map[string]any{"id": "grab", "source": flow(url)})
		if r.status != 422 || !strings.Contains(string(r.body), "url: a flow written through the API") {
			t.Errorf("%s: %s; want 422", url, r)
			f.req(Editor, "DELETE", "/flows/grab", nil)
		}
		if v := f.req(Editor, "POST", "/validate", flow(url), "Content-Type", yamlCT); v.obj(t)["valid"] != false {
			t.Errorf("validate %s: %s", url, v)
		}
	}
	// The whole URL from the environment goes where the operator pointed
	// it; a literal URL carries no secret of the server.
	for _, url := range []string{"${env:STREAM_URL:-redis://127.0.0.1:1}", "redis://" + ln.Addr().String()} {
		if v := f.req(Editor, "POST", "/validate", flow(url), "Content-Type", yamlCT); v.obj(t)["valid"] != true {
			t.Errorf("validate %s: %s", url, v)
		}
	}
	time.Sleep(300 * time.Millisecond) // a consumer, had one started, connects at once
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(string(got), secrets[Admin]) {
		t.Errorf("the admin token reached a host a flow named: %q", got)
	}
}
