package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// keyedERP honours Idempotency-Key the way payment and ERP APIs do: the
// first answer to a key is stored, whatever its status, and the same key
// again gets that answer back without being handled. A key reused with
// another body is refused (422). verdict decides the first answers.
type keyedERP struct {
	mu      sync.Mutex
	verdict func(call int) int // the status of the n-th handled request (from 1)
	handled int
	answers map[string]cached
	keys    []string // every request's key, in order
	created int
	srv     *httptest.Server
}

type cached struct {
	status int
	body   string
}

func newKeyedERP(t *testing.T) *keyedERP {
	k := &keyedERP{answers: map[string]cached{}}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		k.mu.Lock()
		defer k.mu.Unlock()
		k.keys = append(k.keys, key)
		w.Header().Set("Content-Type", "application/json")
		if c, ok := k.answers[key]; ok {
			if c.body != string(b) {
				w.WriteHeader(422)
				fmt.Fprint(w, `{"error": "idempotency key reused with another body"}`)
				return
			}
			w.WriteHeader(c.status)
			fmt.Fprint(w, `{"replayed": true}`)
			return
		}
		k.handled++
		status := 201
		if k.verdict != nil {
			status = k.verdict(k.handled)
		}
		if status == 201 {
			k.created++
		}
		k.answers[key] = cached{status, string(b)}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"status": %d}`, status)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *keyedERP) set(verdict func(int) int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.verdict = verdict
}

func (k *keyedERP) seen() (keys []string, created int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...), k.created
}

// erpWorkspace writes a workspace with flow "orders" and connection erp
// at url.
func erpWorkspace(t *testing.T, url, flow string) string {
	dir := workspace(t, nil, map[string]string{"orders": flow})
	cfg := fmt.Sprintf("connections:\n  erp: {http: {base_url: %q, timeout: 2s}}\n", url)
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg), 0o644))
	return dir
}

// The ERP refused the order (422: an unknown customer, say); the operator
// fixes the ERP and replays the dead letter. The replay must reach the
// ERP's logic: with the same Idempotency-Key, an ERP that keeps the first
// answer per key gives back its stored 422 for ever. A definite refusal
// means the ERP did nothing under that key, so the replay calls with a
// new one.
func TestReplayAfterARefusalCallsWithANewKey(t *testing.T) {
	erp := newKeyedERP(t)
	erp.set(func(int) int { return 422 })
	dir := erpWorkspace(t, erp.srv.URL, `
trigger: {http: {path: /orders}}
retry: {attempts: 3, initial: 10ms, max: 10ms}
steps:
  - call: {connection: erp, path: /sales-orders}
`)
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	for round := 1; round <= 2; round++ {
		erp.set(func(int) int { return 422 })
		var id string
		if round == 1 {
			_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
			id, _ = out["id"].(string)
			waitStatus(t, e, id, store.Dead)
		} else {
			// A second refusal after a replay: the next replay takes a
			// third key.
			ms, err := e.Messages(ctx, store.Filter{Flow: "orders"})
			must(t, err)
			id = ms[0].ID
			_, err = e.Replay(ctx, id, runtime.ReplayOptions{}, "op")
			must(t, err)
			waitStatus(t, e, id, store.Dead)
		}
	}
	erp.set(nil) // fixed
	ms, err := e.Messages(ctx, store.Filter{Flow: "orders"})
	must(t, err)
	_, err = e.Replay(ctx, ms[0].ID, runtime.ReplayOptions{}, "op")
	must(t, err)
	waitStatus(t, e, ms[0].ID, store.Completed)
	keys, created := erp.seen()
	if created != 1 || len(keys) != 3 {
		t.Fatalf("created %d orders from %d requests %v; want 1 from 3", created, len(keys), keys)
	}
	base := "orders:" + ms[0].ID + ":1"
	if want := []string{base, base + "#2", base + "#3"}; strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

// When a call's outcome was ever unknown under a key (a timeout, a 5xx:
// the ERP may have created the order), the key is kept, refusals after it
// or not: a new key could create the order twice.
func TestReplayAfterAnUnknownOutcomeKeepsTheKey(t *testing.T) {
	erp := newKeyedERP(t)
	// The first request meets an outage in front of the ERP (503, nothing
	// stored); the retry gets the ERP's 422.
	erp.set(func(int) int { return 422 })
	outage := true
	var mu sync.Mutex
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		down := outage
		outage = false
		mu.Unlock()
		if down {
			w.WriteHeader(503)
			return
		}
		erp.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	dir := erpWorkspace(t, front.URL, `
trigger: {http: {path: /orders}}
retry: {attempts: 3, initial: 10ms, max: 10ms}
steps:
  - call: {connection: erp, path: /sales-orders}
`)
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	id, _ := out["id"].(string)
	waitStatus(t, e, id, store.Dead)
	erp.set(nil)
	_, err := e.Replay(ctx, id, runtime.ReplayOptions{}, "op")
	must(t, err)
	waitStatus(t, e, id, store.Dead) // the ERP's stored 422 again
	keys, _ := erp.seen()
	for _, k := range keys {
		if k != "orders:"+id+":1" {
			t.Errorf("key %q after an unknown outcome; want the first key throughout (%v)", k, keys)
		}
	}
}

func waitStatus(t *testing.T, e *runtime.Engine, id string, want store.Status) {
	t.Helper()
	var m *store.Message
	eventually(t, 5*time.Second, fmt.Sprintf("message %s %s", id, want), func() bool {
		m, _ = e.Message(context.Background(), id)
		return m != nil && m.Status == want
	})
}

// A sync flow's sender retries after a refusal (the ERP fixed meanwhile):
// the retry runs as the failed message (see store.ClaimKey) and so calls
// with a new key, instead of getting the ERP's stored refusal back.
func TestSyncRetryAfterARefusalCallsWithANewKey(t *testing.T) {
	erp := newKeyedERP(t)
	erp.set(func(int) int { return 422 })
	dir := erpWorkspace(t, erp.srv.URL, `
trigger: {http: {path: /orders, mode: sync}}
dedup: {key: 'string(body.id)', ttl: 1h}
steps:
  - call: {connection: erp, path: /sales-orders, as: erp}
  - respond: {status: 200, body: '{erp: vars.erp.status}'}
`)
	e := start(t, dir, runtime.Options{})
	if s, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 7}`); s < 400 {
		t.Fatalf("refused call answered %d %v", s, out)
	}
	erp.set(nil)
	s, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 7}`)
	if s != 200 || out["erp"] != float64(201) {
		t.Fatalf("retry answered %d %v; want 200 with the ERP's 201", s, out)
	}
	keys, created := erp.seen()
	if created != 1 || len(keys) != 2 || keys[1] != keys[0]+"#2" {
		t.Errorf("created %d from keys %v; want 1, the second key renewed", created, keys)
	}
}

// A 409 is how an idempotency layer says the key is in use: its first
// request may still run, or have run under a try this history does not
// record (one a crash cut short). The key is kept.
func TestReplayAfterAConflictKeepsTheKey(t *testing.T) {
	erp := newKeyedERP(t)
	erp.set(func(int) int { return 409 })
	dir := erpWorkspace(t, erp.srv.URL, `
trigger: {http: {path: /orders}}
retry: {attempts: 1}
steps:
  - call: {connection: erp, path: /sales-orders}
`)
	e := start(t, dir, runtime.Options{})
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	id, _ := out["id"].(string)
	waitStatus(t, e, id, store.Dead)
	_, err := e.Replay(context.Background(), id, runtime.ReplayOptions{}, "op")
	must(t, err)
	waitStatus(t, e, id, store.Dead)
	if keys, _ := erp.seen(); len(keys) != 2 || keys[1] != keys[0] {
		t.Errorf("keys %v; want the first key again after a 409", keys)
	}
}
