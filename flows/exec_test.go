package flows_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	httpconn "github.com/conveyor-run/conveyor/connectors/http"
	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

func compile(t *testing.T, src string) *flows.Flow {
	t.Helper()
	df, ds := dsl.ParseFlow("flows/t.yaml", []byte(src))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	f, ds := flows.Compile(df, flows.Env{Compiler: mappings.NewCompiler(nil), Connections: []string{"erp", "wms"}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	return f
}

// fakeCaller answers from a script per connection and records requests.
type fakeCaller struct {
	mu      sync.Mutex
	script  map[string][]any // *flows.Response or error
	calls   []flows.Request
	counter map[string]int
}

func (c *fakeCaller) Call(_ context.Context, req flows.Request) (*flows.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, req)
	if c.counter == nil {
		c.counter = map[string]int{}
	}
	list := c.script[req.Connection]
	n := c.counter[req.Connection]
	c.counter[req.Connection]++
	if len(list) == 0 {
		return &flows.Response{Status: 200}, nil
	}
	switch x := list[min(n, len(list)-1)].(type) {
	case error:
		return nil, x
	case *flows.Response:
		return x, nil
	}
	panic("bad script")
}

type pubs struct{ topics []string }

func (p *pubs) Publish(_ context.Context, topic string, _ any, _ string) error {
	p.topics = append(p.topics, topic)
	return nil
}

const twoCalls = `
trigger: {http: {path: /t}}
steps:
  - validate:
      - {rule: body.id != nil, message: id is required}
      - {rule: 'body.qty > 0', message: qty must be positive}
  - map: {ref: '"T-" + string(body.id)', qty: body.qty}
  - call: {connection: erp, path: '/orders/{{ body.ref }}', as: erp}
  - call: {connection: wms, path: /allocations, body: '{so: vars.erp.body.so}'}
  - publish: {topic: order.done}
`

// A retry resumes at the failed step from the checkpoint: the call that
// succeeded is not made again, the failed one is, with the same key.
func TestRetryResumesAtFailedStep(t *testing.T) {
	f := compile(t, twoCalls)
	caller := &fakeCaller{script: map[string][]any{
		"erp": {&flows.Response{Status: 201, Body: map[string]any{"so": "SO-1"}}},
		"wms": {&flows.Response{Status: 503, Headers: map[string]string{"Retry-After": "7"}}, &flows.Response{Status: 201}},
	}}
	p := &pubs{}
	var cp *flows.State
	deps := flows.Deps{Caller: caller, Publisher: p, Memo: &flows.MemMemo{}, Checkpoint: func(s flows.State) error { cp = &s; return nil }}
	msg := &flows.Message{ID: "m1", Body: map[string]any{"id": 820982911946154777, "qty": 2}}

	res := f.Run(context.Background(), msg, nil, 0, deps)
	var se *flows.StepError
	if res.Outcome != flows.Failed || !errors.As(res.Err, &se) || se.Class != flows.Transient || se.Step != "4" {
		t.Fatalf("first attempt: %s %v", res.Outcome, res.Err)
	}
	if se.RetryAfter != 7*time.Second {
		t.Errorf("retry after: got %v, want 7s", se.RetryAfter)
	}
	if cp == nil || cp.Next != 3 {
		t.Fatalf("checkpoint: %+v, want next=3 (the wms call)", cp)
	}
	// Resume as a worker would after the backoff, from the stored state.
	res = f.Run(context.Background(), msg, cp, 0, deps)
	if res.Outcome != flows.Completed {
		t.Fatalf("second attempt: %s %v", res.Outcome, res.Err)
	}
	var got []string
	for _, c := range caller.calls {
		got = append(got, c.Connection+" "+c.Path+" "+c.IdempotencyKey)
	}
	want := []string{
		"erp /orders/T-820982911946154777 :m1:3",
		"wms /allocations :m1:4",
		"wms /allocations :m1:4",
	}
	for i := range want {
		want[i] = strings.Replace(want[i], " :", " t:", 1)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(p.topics, []string{"order.done"}) {
		t.Errorf("published %v", p.topics)
	}
}

// Even without a checkpoint between them (a crash right after the call),
// the memo keeps a succeeded call from being made twice.
func TestMemoPreventsRepeatedCall(t *testing.T) {
	f := compile(t, twoCalls)
	caller := &fakeCaller{script: map[string][]any{
		"erp": {&flows.Response{Status: 201, Body: map[string]any{"so": "SO-2"}}},
		"wms": {errors.New("connection refused"), &flows.Response{Status: 200}},
	}}
	memo := &flows.MemMemo{}
	deps := flows.Deps{Caller: caller, Publisher: &pubs{}, Memo: memo}
	msg := &flows.Message{ID: "m2", Body: map[string]any{"id": 1, "qty": 1}}
	if res := f.Run(context.Background(), msg, nil, 0, deps); res.Outcome != flows.Failed {
		t.Fatalf("want failure, got %s", res.Outcome)
	}
	if res := f.Run(context.Background(), msg, nil, 0, deps); res.Outcome != flows.Completed {
		t.Fatalf("want completed, got %s %v", res.Outcome, res.Err)
	}
	erp := 0
	for _, c := range caller.calls {
		if c.Connection == "erp" {
			erp++
		}
	}
	if erp != 1 {
		t.Errorf("erp called %d times, want 1", erp)
	}
}

func TestValidationCollectsEveryRule(t *testing.T) {
	f := compile(t, twoCalls)
	if f.AcceptSteps != 1 {
		t.Errorf("accept steps %d, want 1", f.AcceptSteps)
	}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{"qty": 0}}, nil, 0, flows.Deps{})
	var se *flows.StepError
	if res.Outcome != flows.Rejected || !errors.As(res.Err, &se) || se.Class != flows.Validation {
		t.Fatalf("got %s %v", res.Outcome, res.Err)
	}
	if want := []string{"id is required", "qty must be positive"}; !reflect.DeepEqual(se.Errors, want) {
		t.Errorf("errors %q, want %q", se.Errors, want)
	}
}

func TestStatusClasses(t *testing.T) {
	f := compile(t, twoCalls)
	for _, tc := range []struct {
		status int
		class  flows.Class
	}{{400, flows.Permanent}, {404, flows.Permanent}, {422, flows.Permanent}, {408, flows.Transient}, {429, flows.Transient}, {500, flows.Transient}, {503, flows.Transient}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			caller := &fakeCaller{script: map[string][]any{"erp": {&flows.Response{Status: tc.status, Body: "nope"}}}}
			res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{"id": 1, "qty": 1}}, nil, 0, flows.Deps{Caller: caller})
			var se *flows.StepError
			if !errors.As(res.Err, &se) || se.Class != tc.class {
				t.Fatalf("got %v, want class %s", res.Err, tc.class)
			}
			if !strings.Contains(se.Error(), fmt.Sprintf("status %d: nope", tc.status)) {
				t.Errorf("error %q does not name the status and body", se.Error())
			}
		})
	}
}

func TestSplitSetFilterRespond(t *testing.T) {
	f := compile(t, `
trigger: {http: {path: /s, mode: sync}}
steps:
  - set: {vars.count: len(body.items), body.seen: 'true'}
  - split:
      items: body.items
      as: results
      steps:
        - filter: item.keep
        - call: {connection: erp, method: PUT, path: '/items/{{ item.sku }}', body: '{sku: item.sku, n: meta.index}', as: r}
        - map: {sku: item.sku, status: vars.r.status}
  - respond: {status: 207, body: '{results: vars.results, count: vars.count, seen: body.seen}', headers: {X-Count: string(vars.count)}}
`)
	caller := &fakeCaller{script: map[string][]any{"erp": {&flows.Response{Status: 204}}}}
	body := map[string]any{"items": []any{
		map[string]any{"sku": "A/1", "keep": true},
		map[string]any{"sku": "B", "keep": false},
		map[string]any{"sku": "C", "keep": true},
	}}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: body}, nil, 0, flows.Deps{Caller: caller})
	if res.Outcome != flows.Completed {
		t.Fatalf("%s %v", res.Outcome, res.Err)
	}
	if res.Response == nil || res.Response.Status != 207 || res.Response.Headers["X-Count"] != "3" {
		t.Fatalf("response %+v", res.Response)
	}
	want := map[string]any{
		"results": []any{map[string]any{"sku": "A/1", "status": 204}, map[string]any{"sku": "C", "status": 204}},
		"count":   3, "seen": true,
	}
	if !reflect.DeepEqual(res.Response.Body, want) {
		t.Errorf("body %#v\nwant %#v", res.Response.Body, want)
	}
	var paths, keys []string
	for _, c := range caller.calls {
		paths = append(paths, c.Path)
		keys = append(keys, c.IdempotencyKey)
	}
	if !reflect.DeepEqual(paths, []string{"/items/A%2F1", "/items/C"}) {
		t.Errorf("paths %q", paths)
	}
	if keys[0] == keys[1] {
		t.Errorf("split items share an idempotency key: %q", keys)
	}
}

func TestFilterStopsTheMessage(t *testing.T) {
	f := compile(t, `
trigger: {event: {topic: x}}
steps:
  - filter: body.status == "paid"
  - call: {connection: erp, path: /x}
`)
	caller := &fakeCaller{}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{"status": "open"}}, nil, 0, flows.Deps{Caller: caller})
	if res.Outcome != flows.Filtered || len(caller.calls) != 0 {
		t.Fatalf("%s, %d calls", res.Outcome, len(caller.calls))
	}
}

func TestRetryDelay(t *testing.T) {
	p := flows.RetryPolicy{Attempts: 8, Backoff: "exponential", Initial: time.Second, Max: 10 * time.Second}
	var got []time.Duration
	for next := 2; next <= 7; next++ {
		got = append(got, p.Delay(next))
	}
	want := []time.Duration{1e9, 2e9, 4e9, 8e9, 10e9, 10e9}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
}

// A call carries the message's raw bytes (RawJSON, beside the decoded
// Body) while no step has changed the body, and none once one has; the
// result says whether the body is still the message's.
func TestCallSendsRawBodyUntilChanged(t *testing.T) {
	raw := []byte(`{"id": 7, "total": 10.10}`)
	body := map[string]any{"id": 7, "total": "10.10"}
	cases := []struct {
		name, steps string
		wantRaw     bool
	}{
		{"validate then call", `
  - validate: [{rule: body.id != nil, message: id}]
  - call: {connection: erp, path: /orders}`, true},
		{"set then call", `
  - set: {body.seen: 'true'}
  - call: {connection: erp, path: /orders}`, false},
		{"map then call", `
  - map: {id: body.id}
  - call: {connection: erp, path: /orders}`, false},
		{"call with a body", `
  - call: {connection: erp, path: /orders, body: '{id: body.id}'}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := compile(t, "trigger: {http: {path: /t}}\nsteps:"+c.steps+"\n")
			caller := &fakeCaller{}
			res := f.Run(context.Background(), &flows.Message{ID: "m", Body: body, Raw: raw}, nil, 0, flows.Deps{Caller: caller})
			if res.Outcome != flows.Completed || len(caller.calls) != 1 {
				t.Fatalf("run: %s %v, %d calls", res.Outcome, res.Err, len(caller.calls))
			}
			req := caller.calls[0]
			if isRaw := req.RawJSON != nil; isRaw != c.wantRaw || (isRaw && string(req.RawJSON) != string(raw)) {
				t.Errorf("call RawJSON = %q; want raw %v", req.RawJSON, c.wantRaw)
			}
			if req.Body == nil { // connectors that look at the body's type still get the value
				t.Errorf("call Body is nil")
			}
			if c.wantRaw != res.State.BodyIsMessage && c.name != "call with a body" {
				t.Errorf("BodyIsMessage = %v", res.State.BodyIsMessage)
			}
		})
	}
}

// A flow reads the body unless its only steps are calls that send it as
// received and no expression anywhere names it.
func TestReadsBody(t *testing.T) {
	cases := []struct {
		name, src string
		want      bool
	}{
		{"relay", "steps:\n  - call: {connection: erp, path: /orders}", false},
		{"relay with headers from meta", "steps:\n  - call: {connection: erp, path: /orders, headers: {X-Id: 'meta.id'}}", false},
		{"path from the body", "steps:\n  - call: {connection: erp, path: '/orders/{{ body.id }}'}", true},
		{"call with its own body", "steps:\n  - call: {connection: erp, path: /orders, body: '{id: 1}'}", false},
		{"call with a body from the body", "steps:\n  - call: {connection: erp, path: /orders, body: '{id: body.id}'}", true},
		{"the whole env", "steps:\n  - call: {connection: erp, path: /orders, headers: {X-Id: 'string($env.body.id)'}}", true},
		{"validate first", "steps:\n  - validate: [{rule: 'true', message: x}]\n  - call: {connection: erp, path: /orders}", true},
		{"log", "steps:\n  - log: {message: '\"got it\"'}", true},
		{"dedup on the body", "dedup: {key: 'body.id'}\nsteps:\n  - call: {connection: erp, path: /orders}", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := compile(t, "trigger: {http: {path: /t}}\n"+c.src+"\n")
			if f.ReadsBody() != c.want {
				t.Errorf("ReadsBody = %v, want %v", f.ReadsBody(), c.want)
			}
		})
	}
}

// A deferred body (not decoded, the flow never reads it) goes out as the
// raw bytes, with no decoded Body.
func TestCallSendsDeferredBody(t *testing.T) {
	f := compile(t, "trigger: {http: {path: /t}}\nsteps:\n  - call: {connection: erp, path: /orders}\n")
	raw := []byte(`{"id": 7, "total": 10.10}`)
	caller := &fakeCaller{}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Raw: raw, BodyDeferred: true}, nil, 0, flows.Deps{Caller: caller})
	if res.Outcome != flows.Completed || len(caller.calls) != 1 {
		t.Fatalf("run: %s %v, %d calls", res.Outcome, res.Err, len(caller.calls))
	}
	if req := caller.calls[0]; string(req.RawJSON) != string(raw) || req.Body != nil {
		t.Errorf("call RawJSON %q, Body %v; want the raw bytes alone", req.RawJSON, req.Body)
	}
	if !res.State.BodyIsMessage {
		t.Error("the checkpoint would store the (nil) body instead of the message's")
	}
}

// A redirect the connector did not follow (a POST answered 308: the API
// moved) fails the step for good: the target never got the request. It
// used to count as a success, and the message completed with nothing sent.
func TestUnfollowedRedirectFailsTheStep(t *testing.T) {
	f := compile(t, "trigger: {http: {path: /in}}\nsteps:\n  - call: {connection: erp, path: /v1/orders}\n")
	caller := &fakeCaller{script: map[string][]any{
		"erp": {&flows.Response{Status: 308, Headers: map[string]string{"Location": "https://erp.example/v2/orders?token=s3cret"}}},
	}}
	res := f.Run(context.Background(), &flows.Message{ID: "m1", Body: map[string]any{}}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}})
	var se *flows.StepError
	if res.Outcome != flows.Failed || !errors.As(res.Err, &se) || se.Class != flows.Permanent {
		t.Fatalf("outcome %s, error %v; want a permanent failure", res.Outcome, res.Err)
	}
	if msg := se.Error(); !strings.Contains(msg, "308") || !strings.Contains(msg, "/v2/orders") || strings.Contains(msg, "s3cret") {
		t.Errorf("error %q; want the status and the new address, without its query", msg)
	}
	caller = &fakeCaller{script: map[string][]any{"erp": {&flows.Response{Status: 304}}}}
	if res := f.Run(context.Background(), &flows.Message{ID: "m2", Body: map[string]any{}}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}}); res.Outcome != flows.Completed {
		t.Errorf("304 Not Modified: %s %v; want completed", res.Outcome, res.Err)
	}
}

// A set inside a split writes the item's body, not the outer one, and
// each item collected by `as` is its own. Every item shared the outer
// object: all collected items showed the last item's value, and the
// outer body kept it after the split.
func TestSetInsideASplitChangesOnlyItsItem(t *testing.T) {
	f := compile(t, `trigger: {http: {path: /in, mode: sync}}
steps:
  - split:
      items: body.lines
      as: out
      steps:
        - set: {body.sku: item.sku}
  - respond: {status: 200, body: '{body: body, out: vars.out}'}
`)
	body := map[string]any{"order": "o1", "lines": []any{map[string]any{"sku": "A"}, map[string]any{"sku": "B"}}}
	res := f.Run(context.Background(), &flows.Message{ID: "m1", Body: body}, nil, 0, flows.Deps{Caller: &fakeCaller{}, Memo: &flows.MemMemo{}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	out := res.Response.Body.(map[string]any)
	items := out["out"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["sku"] != "A" || items[1].(map[string]any)["sku"] != "B" {
		t.Errorf("collected %v; want one item per line, sku A then B", items)
	}
	if _, set := out["body"].(map[string]any)["sku"]; set {
		t.Errorf("the outer body after the split: %v; want it unchanged", out["body"])
	}
	if _, set := body["sku"]; set {
		t.Errorf("the message's body was written: %v", body)
	}
}

// Fields beside use: change a copy of what the mapping answered. A
// mapping that answers an object of the message (map: body) used to have
// the fields written into that object: the body changed in place, and in
// a split every item's result was the last item's.
func TestUseFieldsChangeACopy(t *testing.T) {
	mf, ds := dsl.ParseMapping("mappings/passthrough.yaml", []byte("map: body\n"))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	df, ds := dsl.ParseFlow("flows/t.yaml", []byte(`
trigger: {http: {path: /t, mode: sync}}
steps:
  - split:
      items: body.lines
      as: tagged
      steps:
        - map: {use: passthrough, sku: item.sku}
  - respond: {body: '{"first": vars.tagged[0].sku, "second": vars.tagged[1].sku}'}
`))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	f, ds := flows.Compile(df, flows.Env{Compiler: mappings.NewCompiler(nil), Mappings: map[string]*dsl.MappingFile{"passthrough": mf}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	body, _ := jsonv.Decode([]byte(`{"lines":[{"sku":"A"},{"sku":"B"}]}`))
	res := f.Run(context.Background(), &flows.Message{ID: "m1", Body: body}, nil, 0, flows.Deps{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := res.Response.Body.(map[string]any); got["first"] != "A" || got["second"] != "B" {
		t.Errorf("tagged skus %v, %v; want A, B", got["first"], got["second"])
	}
	if _, changed := body.(map[string]any)["sku"]; changed {
		t.Errorf("the message body was changed in place: %v", body)
	}
}

// A query map adds to a query the literal path already has, joined with &.
func TestCallQueryJoinsLiteralQuery(t *testing.T) {
	f := compile(t, `
trigger: {http: {path: /q}}
steps:
  - call: {connection: erp, method: GET, path: '/items?expand=lines', query: {page: '2'}}
`)
	caller := &fakeCaller{}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{}}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	u, err := url.Parse(caller.calls[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); u.Path != "/items" || q.Get("expand") != "lines" || q.Get("page") != "2" {
		t.Errorf("path %q; want /items with expand=lines and page=2", caller.calls[0].Path)
	}
}

// A request the connector refuses to build (a dot segment from the
// payload, a line break in a header value) never reaches the server and
// fails the step permanently: sending it again cannot help.
func TestRefusedRequestFailsPermanently(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	client, err := httpconn.NewClient(connectors.Config{Name: "erp", Values: map[string]any{"base_url": srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	f := compile(t, `
trigger: {http: {path: /r}}
steps:
  - call: {connection: erp, method: GET, path: '/items/{{ body.sku }}', headers: {X-Ref: body.ref}}
`)
	for _, body := range []map[string]any{{"sku": ".."}, {"sku": "a", "ref": "r\nX-Evil: 1"}} {
		res := f.Run(context.Background(), &flows.Message{ID: "m", Body: body}, nil, 0, flows.Deps{Caller: client, Memo: &flows.MemMemo{}})
		var se *flows.StepError
		if !errors.As(res.Err, &se) || se.Class != flows.Permanent {
			t.Errorf("body %v: got %v, want a permanent failure", body, res.Err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server got %d requests, want none", n)
	}
}

// A run-time expression error points at the character, counting
// characters as editors do: umlauts and an escaped quote before it in a
// double-quoted scalar do not move it.
func TestEvalErrorColumnAfterUmlauts(t *testing.T) {
	f := compile(t, "trigger: {http: {path: /t}}\nsteps:\n  - log: \"\\\"Größe \\\" + dec_add(body.total, \\\"x\\\")\"\n")
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: map[string]any{"total": "1.5"}}, nil, 0, flows.Deps{})
	var ee *mappings.EvalError
	// the scalar opens at column 10; dec_add is the 24th character of the line (its 26th byte)
	if res.Outcome != flows.Failed || !errors.As(res.Err, &ee) || ee.At != (dsl.Pos{Line: 3, Col: 24}) {
		t.Fatalf("got %s %v; want the error at 3:24, dec_add", res.Outcome, res.Err)
	}
}
