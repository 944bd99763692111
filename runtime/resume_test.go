package runtime_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// recorder is a target that answers 503 to its first request and 204
// after, and records the bodies it got.
type recorder struct {
	mu     sync.Mutex
	bodies []string
	srv    *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	rc := &recorder{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.bodies = append(rc.bodies, string(b))
		if len(rc.bodies) == 1 {
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(204)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *recorder) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}

// A relay flow's retry sends the body as received, as its first attempt
// did. The failed attempt's state stored a null body for the undecoded
// message body, and the retry sent nothing.
func TestRelayRetrySendsTheBody(t *testing.T) {
	erp := newRecorder(t)
	dir := workspace(t, nil, map[string]string{"relay": "trigger: {http: {path: /relay}}\nretry: {attempts: 3, initial: 10ms, max: 10ms}\nsteps:\n  - call: {connection: erp, path: /orders}\n"})
	addConnections(t, dir, "erp: {http: {base_url: "+erp.srv.URL+"}}")
	e := start(t, dir, runtime.Options{})
	raw := `{"id": 7, "total": 10.10}`
	if status, out := post(t, "http://"+e.TriggerAddr()+"/relay", raw); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 5*time.Second, "the retry", func() bool { return len(erp.got()) == 2 })
	if got := erp.got(); got[0] != raw || got[1] != raw {
		t.Errorf("the ERP got %q; want the body as received, twice", got)
	}
}

// A retry of a call inside a choice branch resumes before the choice,
// with the body as it was there: the branch is chosen again and the call
// made. The failed attempt's state held the body as the branch's map had
// left it, no branch matched it on the retry, and the message completed
// without the call.
func TestRetryInsideAChoiceMakesTheCall(t *testing.T) {
	erp := newRecorder(t)
	dir := workspace(t, nil, map[string]string{"route": `trigger: {http: {path: /route}}
retry: {attempts: 3, initial: 10ms, max: 10ms}
steps:
  - choice:
      - when: body.type == "order"
        steps:
          - map: {order_id: body.id}
          - call: {connection: erp, path: /orders}
`})
	addConnections(t, dir, "erp: {http: {base_url: "+erp.srv.URL+"}}")
	e := start(t, dir, runtime.Options{})
	if status, out := post(t, "http://"+e.TriggerAddr()+"/route", `{"type": "order", "id": 7}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 5*time.Second, "the retry", func() bool { return len(erp.got()) == 2 })
	if got := erp.got(); got[1] != `{"order_id":7}` {
		t.Errorf("the ERP got %q; want the mapped order again on the retry", got)
	}
}

// A retry resumes with the vars the earlier steps left, even when one of
// them holds a number JSON cannot write (a ratio divided by zero is
// +Inf): that one is stored as null, as JSON.stringify writes it. The
// checkpoint stored all the vars as null, and the retry sent the WMS
// the ERP's sales order as null.
func TestRetryKeepsTheVarsBesideAnInfinity(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	failFirst(wms, 1)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
retry: {attempts: 3, initial: 10ms, max: 10ms}
steps:
  - call: {connection: erp, path: /sales-orders, as: erp}
  - set: {vars.margin: 'body.profit / body.total'}
  - call: {connection: wms, path: /allocations, body: '{so: vars.erp.body.sales_order, free: vars.margin == nil}'}
`})
	e := start(t, dir, runtime.Options{})
	m := outcome(t, e, "/orders", `{"id": 1, "profit": 5, "total": 0}`, 5*time.Second)
	if m.Status != store.Completed {
		t.Fatalf("message %s: %s; want completed", m.Status, m.Error)
	}
	wms.mu.Lock()
	defer wms.mu.Unlock()
	for _, body := range wms.orders {
		if body["so"] != "SO-1" || body["free"] != true {
			t.Errorf("the WMS got %v on the retry; want so SO-1 (vars.erp kept) and free true (vars.margin null)", body)
		}
	}
}

// A retry resumes with the dates the earlier steps computed still dates:
// a comparison that worked on the first try works on the retry. The
// checkpoint stored them as text, and the retry failed for good at
// "string < time.Time" where a run without the failure went through.
func TestRetryKeepsDatesDates(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	failFirst(erp, 1)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
retry: {attempts: 3, initial: 10ms, max: 10ms}
steps:
  - set: {vars.ship_by: 'add_days(body.ordered_at, 2)'}
  - map: {lines: '[{due: add_days(body.ordered_at, 5)}]'}
  - call: {connection: erp, path: /sales-orders}
  - call:
      connection: wms
      path: /allocations
      body: '{rush: vars.ship_by < parse_date("2030-01-01", "yyyy-MM-dd"), due: format_date(body.lines[0].due, "yyyy-MM-dd"), late: body.lines[0].due > vars.ship_by}'
`})
	e := start(t, dir, runtime.Options{})
	m := outcome(t, e, "/orders", `{"id": 1, "ordered_at": "2026-03-01T09:30:00+01:00"}`, 5*time.Second)
	if m.Status != store.Completed {
		t.Fatalf("message %s: %s; want completed", m.Status, m.Error)
	}
	wms.mu.Lock()
	defer wms.mu.Unlock()
	for _, body := range wms.orders {
		if body["rush"] != true || body["due"] != "2026-03-06" || body["late"] != true {
			t.Errorf("the WMS got %v; want rush, due 2026-03-06 and late", body)
		}
	}
}
