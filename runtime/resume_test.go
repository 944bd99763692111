package runtime_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
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
