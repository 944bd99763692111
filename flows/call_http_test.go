package flows_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/conveyor-run/conveyor/flows"
)

// A value a path template inserts after the path's ? is a query value:
// + & = in it are escaped, so the target reads the value the payload had
// and the payload cannot add parameters. They went as they were: an
// e-mail address ann+orders@example.com reached the API as
// "ann orders@example.com", and a value with & started a new parameter.
func TestPathTemplateEscapesQueryValues(t *testing.T) {
	f := compile(t, `
trigger: {http: {path: /q}}
steps:
  - call: {connection: erp, method: GET, path: '/customers/{{ body.id }}?email={{ body.email }}&sku={{ body.sku }}'}
`)
	caller := &fakeCaller{}
	body := map[string]any{"id": "a+b c", "email": "ann+orders@example.com", "sku": "X-1&role=admin=1"}
	res := f.Run(context.Background(), &flows.Message{ID: "m", Body: body}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	u, err := url.Parse(caller.calls[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Path != "/customers/a+b c" || q.Get("email") != "ann+orders@example.com" || q.Get("sku") != "X-1&role=admin=1" || q.Has("role") || len(q) != 2 {
		t.Errorf("path %q: path %q, query %v; want /customers/a+b c with email and sku as sent", caller.calls[0].Path, u.Path, q)
	}
}

// A 303 See Other answering a POST is the target's answer to it: the
// request was handled and the result is elsewhere (RFC 9110 15.4.4). It
// failed the step for good as "a redirect that is not followed", so the
// message was dead-lettered after the target had taken it, and a replay
// sent the order again.
func TestSeeOtherAfterPostCompletesTheStep(t *testing.T) {
	f := compile(t, "trigger: {http: {path: /in, mode: sync}}\nsteps:\n  - call: {connection: erp, path: /v1/orders, as: erp}\n  - respond: {status: 200, body: 'vars.erp.headers.Location'}\n")
	caller := &fakeCaller{script: map[string][]any{
		"erp": {&flows.Response{Status: 303, Headers: map[string]string{"Location": "/v1/orders/SO-7"}}},
	}}
	res := f.Run(context.Background(), &flows.Message{ID: "m1", Body: map[string]any{}}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}})
	if res.Outcome != flows.Completed || res.Response == nil || res.Response.Body != "/v1/orders/SO-7" {
		t.Fatalf("outcome %s, error %v, response %+v; want completed with the Location in vars.erp", res.Outcome, res.Err, res.Response)
	}
	// A GET answered 303 that the connector did not follow (another host)
	// still fails: the resource was not read.
	g := compile(t, "trigger: {http: {path: /in}}\nsteps:\n  - call: {connection: erp, method: GET, path: /v1/orders/1}\n")
	res = g.Run(context.Background(), &flows.Message{ID: "m2", Body: map[string]any{}}, nil, 0, flows.Deps{Caller: caller, Memo: &flows.MemMemo{}})
	if res.Outcome != flows.Failed {
		t.Errorf("GET answered 303: outcome %s; want failed", res.Outcome)
	}
}
