package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/conveyor-run/conveyor/connectors/all"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
	"github.com/redis/go-redis/v9"
)

// target is a fake downstream system: it records bodies by idempotency
// key (a repeated key is a replay, not a new order) and can be scripted.
type target struct {
	mu      sync.Mutex
	orders  map[string]map[string]any // idempotency key -> first body
	replays int
	calls   atomic.Int64
	status  func(body map[string]any) int // nil: 201
	srv     *httptest.Server
}

func newTarget(t *testing.T) *target {
	tg := &target{orders: map[string]map[string]any{}}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.calls.Add(1)
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		status := 201
		if tg.status != nil {
			status = tg.status(body)
		}
		w.Header().Set("Content-Type", "application/json")
		if status >= 300 {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error": "status %d"}`, status)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		tg.mu.Lock()
		if _, seen := tg.orders[key]; seen {
			tg.replays++
		} else {
			tg.orders[key] = body
		}
		n := len(tg.orders)
		tg.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"sales_order": "SO-%d", "status": "open", "allocation_id": "AL-%d"}`, n, n)
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.orders)
}

// workspace writes a workspace with the given flows and one connection per
// target, and returns its directory.
func workspace(t *testing.T, targets map[string]*target, flows map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("connections:\n")
	for name, tg := range targets {
		fmt.Fprintf(&cfg, "  %s: {http: {base_url: %q, timeout: 2s}}\n", name, tg.srv.URL)
	}
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg.String()), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "flows"), 0o755))
	for name, src := range flows {
		must(t, os.WriteFile(filepath.Join(dir, "flows", name+".yaml"), []byte(src), 0o644))
	}
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, dir string, opts runtime.Options) *runtime.Engine {
	t.Helper()
	opts.Workspace = dir
	opts.Listen, opts.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	if opts.DataDir == "" {
		opts.DataDir = filepath.Join(dir, "data")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RescanInterval == 0 {
		opts.RescanInterval = 100 * time.Millisecond
	}
	e, err := runtime.New(opts)
	must(t, err)
	must(t, e.Start())
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func post(t *testing.T, url string, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	must(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const orderFlow = `
trigger: {http: {path: /orders}}
dedup: {key: 'string(body.id)', ttl: 1h}
retry: {attempts: 30, initial: 100ms, max: 400ms}
steps:
  - validate:
      - {rule: body.id != nil, message: id is required}
  - map: {order_ref: '"O-" + string(body.id)', email: body.email}
  - call: {connection: erp, path: /sales-orders, as: erp}
  - call: {connection: wms, path: /allocations, body: '{so: vars.erp.body.sales_order}'}
`

func TestOrderReachesERPAndWMS(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	status, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 820982911946154777, "email": "a@b.nl"}`)
	if status != http.StatusAccepted || out["id"] == "" {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 5*time.Second, "the WMS allocation", func() bool { return wms.count() == 1 })
	for _, o := range erp.orders {
		if o["order_ref"] != "O-820982911946154777" {
			t.Errorf("erp got %v", o)
		}
	}
	m, err := e.Store().Get(context.Background(), out["id"].(string))
	must(t, err)
	eventually(t, 2*time.Second, "completed status", func() bool {
		m, _ = e.Store().Get(context.Background(), out["id"].(string))
		return m.Status == store.Completed
	})
}

func TestAcceptRejections(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"orders": orderFlow,
		"small":  "trigger: {http: {path: /small, max_body: 64B}}\nrate_limit: {limit: 2, per: 1m}\nsteps: [{log: '\"x\"'}]\n",
	})
	e := start(t, dir, runtime.Options{})
	base := "http://" + e.TriggerAddr()
	if s, out := post(t, base+"/orders", `{"email": "x"}`); s != 422 || !strings.Contains(fmt.Sprint(out), "id is required") {
		t.Errorf("validation: %d %v", s, out)
	}
	if s, out := post(t, base+"/orders", `{"id": 1,`); s != 400 || !strings.Contains(fmt.Sprint(out), "line 1, column") {
		t.Errorf("bad json: %d %v", s, out)
	}
	if s, _ := post(t, base+"/nope", `{}`); s != 404 {
		t.Errorf("unknown path: %d", s)
	}
	if s, _ := post(t, base+"/small", `{"pad": "`+strings.Repeat("x", 100)+`"}`); s != 413 {
		t.Errorf("too large: %d", s)
	}
	post(t, base+"/small", `{}`)
	post(t, base+"/small", `{}`)
	resp, err := http.Post(base+"/small", "application/json", strings.NewReader(`{}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("rate limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	time.Sleep(300 * time.Millisecond)
	if erp.calls.Load() != 0 {
		t.Errorf("rejected messages reached the ERP: %d calls", erp.calls.Load())
	}
}

// A dedup key that is empty text is refused like a null one: otherwise
// every such request would share one key and the second order would be
// answered as a duplicate of the first.
func TestEmptyDedupKeyIsRefused(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"async": "trigger: {http: {path: /async}}\ndedup: {key: body.ref}\nsteps: [{call: {connection: erp, path: /orders}}]\n",
		"sync":  "trigger: {http: {path: /sync, mode: sync}}\ndedup: {key: body.ref}\nsteps: [{respond: {body: body}}]\n",
	})
	e := start(t, dir, runtime.Options{})
	for _, path := range []string{"/async", "/sync"} {
		for _, body := range []string{`{"ref": "", "items": [1]}`, `{"ref": "", "items": [2]}`} {
			if s, out := post(t, "http://"+e.TriggerAddr()+path, body); s != 422 || !strings.Contains(fmt.Sprint(out), "it is empty") {
				t.Errorf("%s %s: %d %v, want 422 naming the empty key", path, body, s, out)
			}
		}
	}
}

func TestDuplicateWebhookMakesOneOrder(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/orders"
	s1, first := post(t, url, `{"id": 42}`)
	s2, second := post(t, url, `{"id": 42}`)
	if s1 != 202 || s2 != 200 || second["duplicate"] != true || second["id"] != first["id"] {
		t.Fatalf("first %d %v, second %d %v", s1, first, s2, second)
	}
	eventually(t, 5*time.Second, "the allocation", func() bool { return wms.count() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := erp.calls.Load(); n != 1 {
		t.Errorf("erp called %d times, want 1", n)
	}
}

func TestERPDownThenRecovers(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	var down atomic.Bool
	down.Store(true)
	erp.status = func(map[string]any) int {
		if down.Load() {
			return 503
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	for i := 1; i <= 5; i++ {
		if s, out := post(t, "http://"+e.TriggerAddr()+"/orders", fmt.Sprintf(`{"id": %d}`, i)); s != 202 {
			t.Fatalf("accept: %d %v", s, out)
		}
	}
	time.Sleep(5 * time.Second) // the ERP is down for 5 s
	down.Store(false)
	eventually(t, 5*time.Second, "all orders delivered after recovery", func() bool { return wms.count() == 5 })
	if erp.count() != 5 || erp.replays != 0 {
		t.Errorf("erp orders %d, replays %d; want 5 and 0", erp.count(), erp.replays)
	}
}

func TestERPRejectsGoesToDeadLetters(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 7, "email": "x@y.z"}`)
	id := out["id"].(string)
	var m *store.Message
	eventually(t, 5*time.Second, "the dead letter", func() bool {
		m, _ = e.Store().Get(context.Background(), id)
		return m != nil && m.Status == store.Dead
	})
	if m.FailedStep != "3" || len(m.Attempts) != 1 || !strings.Contains(m.Attempts[0].Error, "status 422") || m.Revision != 1 {
		t.Errorf("dead letter: step %q attempts %+v revision %d", m.FailedStep, m.Attempts, m.Revision)
	}
	if !bytes.Contains(m.Body, []byte(`"email": "x@y.z"`)) && !bytes.Contains(m.Body, []byte(`"email":"x@y.z"`)) {
		t.Errorf("payload not kept: %s", m.Body)
	}
	if erp.calls.Load() != 1 {
		t.Errorf("a permanent failure was retried: %d calls", erp.calls.Load())
	}
}

func TestSyncFlowAndCachedDuplicate(t *testing.T) {
	erp := newTarget(t)
	var fail atomic.Bool
	erp.status = func(map[string]any) int {
		if fail.Load() {
			return 500
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync}}
dedup: {key: body.ref}
steps:
  - validate: [{rule: 'body.qty > 0', message: qty must be positive}]
  - call: {connection: erp, path: /sales-orders, as: erp}
  - respond: {status: 201, body: '{so: vars.erp.body.sales_order, qty: body.qty}'}
`})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/quote"
	fail.Store(true)
	if s, _ := post(t, url, `{"ref": "r1", "qty": 2}`); s != 503 {
		t.Fatalf("failing target: status %d, want 503", s)
	}
	fail.Store(false)
	// The failed run released its key: the sender's retry runs again.
	s, out := post(t, url, `{"ref": "r1", "qty": 2}`)
	if s != 201 || out["qty"] != float64(2) || out["so"] == nil {
		t.Fatalf("retry: %d %v", s, out)
	}
	// Now the key is confirmed: a duplicate gets the cached response.
	s2, out2 := post(t, url, `{"ref": "r1", "qty": 2}`)
	if s2 != 201 || out2["so"] != out["so"] {
		t.Fatalf("duplicate: %d %v, want the cached %v", s2, out2, out)
	}
	if n := erp.calls.Load(); n != 2 {
		t.Errorf("erp called %d times, want 2 (failed run + retry)", n)
	}
	if s, _ := post(t, url, `{"ref": "r2", "qty": 0}`); s != 422 {
		t.Errorf("validation: %d", s)
	}
}

// A sync call whose request the connection refuses to send (a payload
// that makes a dot segment of the path) is the sender's fault: a 422, not
// a 5xx that invites a retry, and nothing reaches the target.
func TestSyncRefusedRequestIsUnprocessable(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"item": `
trigger: {http: {path: /item, mode: sync}}
steps:
  - call: {connection: erp, method: GET, path: '/items/{{ body.sku }}', as: item}
  - respond: {body: vars.item.body}
`})
	e := start(t, dir, runtime.Options{})
	s, out := post(t, "http://"+e.TriggerAddr()+"/item", `{"sku": ".."}`)
	if s != 422 {
		t.Errorf("status %d %v, want 422", s, out)
	}
	if n := erp.calls.Load(); n != 0 {
		t.Errorf("the target got %d calls, want none", n)
	}
}

func TestEventFanOut(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"in":     "trigger: {http: {path: /in}}\nsteps: [{publish: {topic: order.accepted}}]\n",
		"to-erp": "trigger: {event: {topic: order.accepted}}\nsteps: [{call: {connection: erp, path: /x}}]\n",
		"to-wms": "trigger: {event: {topic: order.accepted}}\nsteps: [{call: {connection: wms, path: /y}}]\n",
	})
	e := start(t, dir, runtime.Options{})
	post(t, "http://"+e.TriggerAddr()+"/in", `{"id": 1}`)
	eventually(t, 5*time.Second, "both subscribers", func() bool { return erp.count() == 1 && wms.count() == 1 })
}

// A subscriber whose file has had errors since the start still gets its
// copy of every publication, run once the file is fixed: Publish skipped
// flows without a live revision, and their events were lost for good.
func TestEventForABrokenSubscriberWaitsForTheFix(t *testing.T) {
	erp := newTarget(t)
	broken := "trigger: {event: {topic: order.accepted}}\nsteps: [{call: {connection: erp, path: '/x/{{ bdy.id }}'}}]\n"
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"in":     "trigger: {http: {path: /in}}\nsteps: [{publish: {topic: order.accepted}}]\n",
		"to-erp": broken,
	})
	e := start(t, dir, runtime.Options{})
	if _, ok := e.Flow("to-erp"); !ok {
		t.Fatal("the broken flow is not listed")
	}
	if s, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"id": 7}`); s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 5*time.Second, "the copy stored for the broken flow", func() bool {
		ms, err := e.Messages(context.Background(), store.Filter{Flow: "to-erp"})
		return err == nil && len(ms) == 1
	})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "to-erp.yaml"), []byte(strings.Replace(broken, "bdy", "body", 1)), 0o644))
	e.Reload()
	eventually(t, 15*time.Second, "the event delivered once the flow loads", func() bool { return erp.count() == 1 })
}

// An event-triggered flow with dedup stores one copy per business key:
// the second publication of order 1 is a duplicate for it (and counted
// as one), while a subscriber without dedup gets both. A subscriber whose
// key cannot be computed for a publication (or is null or empty) gets
// that copy as a dead
// letter saying why, as a stream trigger does, and the others are not
// held up.
func TestEventFlowDedup(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"in":      "trigger: {http: {path: /in}}\nsteps: [{publish: {topic: order.accepted}}]\n",
		"to-erp":  "trigger: {event: {topic: order.accepted}}\ndedup: {key: 'string(body.id)', ttl: 1h}\nsteps: [{call: {connection: erp, path: /x}}]\n",
		"to-wms":  "trigger: {event: {topic: order.accepted}}\nsteps: [{call: {connection: wms, path: /y}}]\n",
		"to-keyd": "trigger: {event: {topic: order.accepted}}\ndedup: {key: body.ref}\nsteps: [{log: {message: '\"never\"'}}]\n",
	})
	e := start(t, dir, runtime.Options{})
	for _, id := range []string{"to-erp", "to-wms", "to-keyd"} {
		if fi, _ := e.Flow(id); len(fi.Diagnostics) > 0 {
			t.Fatalf("flow %s refused: %v", id, fi.Diagnostics)
		}
	}
	post(t, "http://"+e.TriggerAddr()+"/in", `{"id": 1}`)
	post(t, "http://"+e.TriggerAddr()+"/in", `{"id": 1, "ref": ""}`) // an empty key is no key, as null is
	eventually(t, 5*time.Second, "the first delivery", func() bool { return erp.count() >= 1 })
	eventually(t, 5*time.Second, "both events at the subscriber without dedup", func() bool { return wms.count() == 2 })
	time.Sleep(500 * time.Millisecond)
	if n := erp.count(); n != 1 {
		t.Errorf("the ERP got %d orders for one business key; want 1", n)
	}
	if st := e.Stats(context.Background(), "to-erp"); st.Received != 2 || st.Accepted != 1 || st.Duplicates != 1 {
		t.Errorf("to-erp: received %d, accepted %d, duplicates %d; want 2, 1 and 1", st.Received, st.Accepted, st.Duplicates)
	}
	dead, err := e.Messages(context.Background(), store.Filter{Flow: "to-keyd", Status: store.Dead})
	must(t, err)
	if len(dead) != 2 || !strings.Contains(dead[0].Error, "the dedup key cannot be computed") {
		t.Errorf("to-keyd: %d dead letters (%v); want 2, saying the dedup key cannot be computed", len(dead), dead)
	}
}

// The ERP call succeeds, the WMS call after it fails twice: the retries
// resume at the WMS step and the ERP sees exactly one request (the memo
// of the ERP call is durable before the WMS call starts). Then a restart
// in the middle of a retry changes nothing either.
func TestRetryNeverRepeatsASucceededCall(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	var wmsFailures atomic.Int64
	wmsFailures.Store(2)
	wms.status = func(map[string]any) int {
		if wmsFailures.Add(-1) >= 0 {
			return 503
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	if s, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`); s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 10*time.Second, "the order reaches the WMS", func() bool { return wms.count() == 1 })
	if n := erp.calls.Load(); n != 1 {
		t.Errorf("the ERP got %d requests; want 1 (retries must resume after it)", n)
	}
	if n := wms.calls.Load(); n != 3 {
		t.Errorf("the WMS got %d requests; want 3 (2 failures + 1)", n)
	}

	// While the WMS call is under way, the ERP call's outcome is already
	// stored: a crash now (kill -9) would resume at the WMS step.
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the target's Close, which waits for its handlers
	wms.status = func(map[string]any) int { <-release; return 201 }
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 3}`)
	id, _ := out["id"].(string)
	// (within 1.5 s: the connection's 2 s timeout would fail the call and
	// store the memo with the retry)
	eventually(t, 1500*time.Millisecond, "the ERP call of order 3 stored while the WMS call waits", func() bool {
		m, err := e.Message(context.Background(), id)
		return err == nil && len(m.Memo) == 1 && m.Status == store.Running
	})
	free()
	eventually(t, 10*time.Second, "order 3 reaches the WMS", func() bool { return wms.count() == 2 })
	wms.status = func(map[string]any) int {
		if wmsFailures.Add(-1) >= 0 {
			return 503
		}
		return 201
	}

	// Restart while the WMS is down: the next run resumes at the WMS step.
	wmsFailures.Store(1 << 30)
	if s, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 2}`); s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 10*time.Second, "a failed WMS call for order 2", func() bool { return wms.calls.Load() >= 5 })
	must(t, e.Shutdown(context.Background()))
	wmsFailures.Store(0)
	e = start(t, dir, runtime.Options{})
	eventually(t, 10*time.Second, "order 2 reaches the WMS after the restart", func() bool { return wms.count() == 3 })
	if n := erp.calls.Load(); n != 3 {
		t.Errorf("the ERP got %d requests for 3 orders; want 3", n)
	}
}

// failFirst makes tg answer 503 to its first n calls.
func failFirst(tg *target, n int64) {
	var left atomic.Int64
	left.Store(n)
	tg.status = func(map[string]any) int {
		if left.Add(-1) >= 0 {
			return 503
		}
		return 201
	}
}

// outcome posts body to the async trigger at path and returns its
// message once it has finished, completed or dead, within the time given.
func outcome(t *testing.T, e *runtime.Engine, path, body string, within time.Duration) *store.Message {
	t.Helper()
	status, out := post(t, "http://"+e.TriggerAddr()+path, body)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	var m *store.Message
	eventually(t, within, "the message to finish", func() bool {
		m, _ = e.Store().Get(context.Background(), out["id"].(string))
		return m != nil && (m.Status == store.Completed || m.Status == store.Dead)
	})
	return m
}

// Retry attempts are counted per step: the retries the ERP call used do
// not eat the WMS call's own budget ("attempts: 3" is three WMS calls in
// all, whatever happened before), and the WMS call's first retry waits
// its policy's initial delay, not one grown by the ERP's retries.
func TestRetryBudgetIsPerStep(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	failFirst(erp, 3)
	failFirst(wms, 1)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
steps:
  - call: {connection: erp, path: /sales-orders, retry: {attempts: 5, initial: 10ms, max: 10ms}}
  - call: {connection: wms, path: /allocations, retry: {attempts: 3, initial: 10ms, max: 10ms}}
`})
	e := start(t, dir, runtime.Options{})
	m := outcome(t, e, "/orders", `{"id": 1}`, 10*time.Second)
	if m.Status != store.Completed || wms.calls.Load() != 2 {
		t.Errorf("status %s after %d WMS call(s) (message attempt %d, error %q); want completed after 2 WMS calls", m.Status, wms.calls.Load(), m.Attempt, m.Error)
	}
	if m.Attempt != 5 {
		t.Errorf("message attempt %d; want 5 (meta.attempt counts every run)", m.Attempt)
	}
}

// A step's first retry waits its policy's initial delay (full jitter:
// at most that), however many retries earlier steps of the message used.
// The ERP's 6 retries would have grown an exponential WMS backoff to 64
// times its initial delay.
func TestRetryFirstDelayIsTheStepsInitial(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	failFirst(erp, 6)
	failFirst(wms, 1)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
steps:
  - call: {connection: erp, path: /sales-orders, retry: {attempts: 8, initial: 1ms, max: 1ms}}
  - call: {connection: wms, path: /allocations, retry: {attempts: 10, backoff: exponential, initial: 20ms, max: 1h}}
`})
	logs := &lockedBuffer{}
	e := start(t, dir, runtime.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if s, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`); s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 10*time.Second, "the order reaches the WMS", func() bool { return wms.count() == 1 })
	var retries []map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "step failed; will retry" && rec["step"] == "2" {
			retries = append(retries, rec)
		}
	}
	if len(retries) != 1 {
		t.Fatalf("%d retries logged for the WMS step; want 1", len(retries))
	}
	r := retries[0]
	wait, err := time.ParseDuration(fmt.Sprint(r["retry_in"]))
	if err != nil || wait > 20*time.Millisecond || r["step_attempt"] != float64(1) || r["attempt"] != float64(7) {
		t.Errorf("the WMS step's first retry: %v; want step_attempt 1 (attempt 7) and retry_in at most its initial 20ms", r)
	}
}

// A connection that cannot be built (a secret's environment variable not
// set, a bad setting) stops the start with its place in conveyor.yaml.
func TestConnectionErrorsNameTheirPlace(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{"connections:\n  erp:\n    http: {base_url: \"${env:CONVEYOR_TEST_NO_SUCH_VAR}\"}\n",
			"conveyor.yaml:3:5: connections.erp: environment variable CONVEYOR_TEST_NO_SUCH_VAR is not set"},
		{"connections:\n  out:\n    file: {dir: relative/but/fine, format: csv, csv: {delimiter: ';;'}}\n",
			"conveyor.yaml:3:5: connection out: csv.delimiter"},
	} {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(tc.cfg), 0o644))
		must(t, os.Mkdir(filepath.Join(dir, "flows"), 0o755))
		e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil {
			err = e.Start()
			_ = e.Shutdown(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.cfg, err, tc.want)
		}
	}
}

// A Redis URL from ${env:REDIS_URL} that does not parse (here a typo in
// the port) must not put its password in the error conveyor serve prints.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte("store: {backend: redis, url: \"${env:REDIS_URL}\"}\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "flows"), 0o755))
	getenv := func(k string) (string, bool) {
		if k == "REDIS_URL" {
			return "redis://app:s3cr3t-pw@127.0.0.1:63 79/0", true
		}
		return "", false
	}
	_, err := runtime.New(runtime.Options{Workspace: dir, Getenv: getenv})
	if err == nil {
		t.Fatal("a malformed Redis URL was accepted")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Errorf("the error shows the Redis password: %v", err)
	}
}

// escape_formulas in a file connection's csv settings reaches the outbox:
// a text a spreadsheet would run as a formula is written after a '.
func TestFileConnectionEscapesFormulas(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"export": `trigger: {http: {path: /export}}
steps:
  - call: {connection: sheet, path: 'rows.csv'}
`})
	outbox := filepath.Join(dir, "outbox")
	addConnections(t, dir, "sheet: {file: {dir: "+outbox+", format: csv, csv: {escape_formulas: true}}}")
	e := start(t, dir, runtime.Options{})
	if status, out := post(t, "http://"+e.TriggerAddr()+"/export", `[{"a": "=1+1"}]`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	path := filepath.Join(outbox, "rows.csv")
	eventually(t, 5*time.Second, "the outbox file", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	b, err := os.ReadFile(path)
	must(t, err)
	if string(b) != "a\n'=1+1\n" {
		t.Errorf("the outbox holds %q, want %q", b, "a\n'=1+1\n")
	}
}

// store.retention of conveyor.yaml is how long finished messages stay:
// on Redis the journal TTL of a completed message, and a reload that
// changes it is refused as a static setting.
func TestRetentionFromConfig(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"ship": "trigger: {http: {path: /ship}}\nsteps: [{call: {connection: erp, path: /o}}]\n"})
	cfg := filepath.Join(dir, "conveyor.yaml")
	old, err := os.ReadFile(cfg)
	must(t, err)
	withStore := append(old, fmt.Sprintf("store: {backend: redis, url: %q, retention: 30d}\n", url+"?prefix="+prefix)...)
	must(t, os.WriteFile(cfg, withStore, 0o644))
	e := start(t, dir, runtime.Options{})
	status, out := post(t, "http://"+e.TriggerAddr()+"/ship", `{"n": 1}`)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	id := out["id"].(string)
	eventually(t, 5*time.Second, "the message completed", func() bool {
		m, err := e.Message(context.Background(), id)
		return err == nil && m.Status == store.Completed
	})
	opt, err := redis.ParseURL(url)
	must(t, err)
	c := redis.NewClient(opt)
	defer c.Close()
	ttl, err := c.PTTL(context.Background(), prefix+"m:"+id).Result()
	must(t, err)
	if ttl < 29*24*time.Hour || ttl > 30*24*time.Hour {
		t.Errorf("a completed message expires in %s; want 30 days", ttl)
	}
	must(t, os.WriteFile(cfg, bytes.Replace(withStore, []byte("retention: 30d"), []byte("retention: 2d"), 1), 0o644))
	e.Reload()
	eventually(t, 2*time.Second, "the retention change refused", func() bool {
		return strings.Contains(e.ConfigError(), `reload not supported for store.retention: "720h0m0s" -> "48h0m0s"`)
	})
}
