package runtime_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// backendOptions runs an engine on the embedded store ("bolt") or on the
// test Redis with its limiter ("redis").
func backendOptions(t *testing.T, backend string) runtime.Options {
	if backend != "redis" {
		return runtime.Options{}
	}
	url := storetest.RedisURL(t)
	s := redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{Consumer: "t"})
	return runtime.Options{Store: s, Limiter: runtime.NewRedisLimiter(s)}
}

// A sync run that ends with its trigger's timeout releases its dedup key
// although the run's context is over by then: the sender's retry runs
// again. The Redis store gave up such a release at once (its context had
// expired), so every retry got 409 for the whole dedup TTL.
func TestTimedOutSyncRunReleasesItsKey(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			erp := newTarget(t)
			var slow atomic.Bool
			slow.Store(true)
			erp.status = func(map[string]any) int {
				if slow.Load() {
					time.Sleep(600 * time.Millisecond)
				}
				return 201
			}
			dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync, timeout: 200ms}}
dedup: {key: body.ref}
rate_limit: {limit: 1000, per: 1s}
steps:
  - call: {connection: erp, path: /q}
  - respond: {status: 200, body: '{ref: body.ref}'}
`})
			e := start(t, dir, backendOptions(t, backend))
			url := "http://" + e.TriggerAddr() + "/quote"
			if s, out := post(t, url, `{"ref": "r1"}`); s < 500 {
				t.Fatalf("a run past its timeout: %d %v; want a 5xx", s, out)
			}
			slow.Store(false)
			if s, out := post(t, url, `{"ref": "r1"}`); s != 200 || out["ref"] != "r1" {
				t.Fatalf("the sender's retry: %d %v; want it run (200)", s, out)
			}
		})
	}
}

// A duplicate of a request its flow filtered out gets the cached answer,
// as a duplicate of a completed one does; it was answered "409 in
// progress" until the key expired.
func TestFilteredSyncDuplicateGetsTheCachedAnswer(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"check": `
trigger: {http: {path: /check, mode: sync}}
dedup: {key: body.ref}
steps:
  - filter: body.keep == true
  - respond: {status: 201, body: '{ref: body.ref}'}
`})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/check"
	first, _ := post(t, url, `{"ref": "r1", "keep": false}`)
	if first >= 300 {
		t.Fatalf("a filtered request: %d", first)
	}
	time.Sleep(100 * time.Millisecond) // the journal write lands
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"ref": "r1", "keep": false}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != first || resp.Header.Get("X-Conveyor-Duplicate") != "true" {
		t.Errorf("its duplicate: %d (duplicate header %q); want the cached %d", resp.StatusCode, resp.Header.Get("X-Conveyor-Duplicate"), first)
	}
}

// The credential a trigger checks (an API key, a bearer token) is not
// kept with the message: anyone who may read messages could read it, and
// with it send as the partner.
func TestTriggerCredentialIsNotStored(t *testing.T) {
	t.Setenv("PARTNER_KEY", "s3cret-key")
	dir := workspace(t, nil, map[string]string{"in": `trigger: {http: {path: /in, auth: {api_key: {header: X-Partner-Key, key: "${env:PARTNER_KEY}"}}}}
steps: [{log: {message: '"got " + string(body.n)'}}]
`})
	e := start(t, dir, runtime.Options{})
	req, _ := http.NewRequest("POST", "http://"+e.TriggerAddr()+"/in", strings.NewReader(`{"n": 1}`))
	req.Header.Set("X-Partner-Key", "s3cret-key")
	req.Header.Set("X-Shop", "s1")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("accept: %d", resp.StatusCode)
	}
	msgs, err := e.Messages(context.Background(), store.Filter{Flow: "in"})
	must(t, err)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if v, ok := msgs[0].Headers["X-Partner-Key"]; ok || msgs[0].Headers["X-Shop"] != "s1" {
		t.Errorf("stored headers %v: the API key is kept (%q), or other headers are lost", msgs[0].Headers, v)
	}
}

// The sender's retry of a sync request that failed after a call had
// succeeded resumes that run: the same message id, and the call answered
// from its memo instead of made again. Each retry used to be a new
// message, whose calls carried new Idempotency-Keys: one request that
// failed at the WMS left two sales orders in the ERP.
func TestSyncRetryResumesTheFailedRun(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			erp, wms := newTarget(t), newTarget(t)
			var wmsDown atomic.Bool
			wmsDown.Store(true)
			wms.status = func(map[string]any) int {
				if wmsDown.Load() {
					return 503
				}
				return 201
			}
			dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync}}
dedup: {key: body.ref}
rate_limit: {limit: 1000, per: 1s}
steps:
  - call: {connection: erp, path: /sales-orders, as: erp}
  - call: {connection: wms, path: /allocations}
  - respond: {status: 201, body: '{so: vars.erp.body.sales_order, attempt: meta.attempt}'}
`})
			e := start(t, dir, backendOptions(t, backend))
			url := "http://" + e.TriggerAddr() + "/quote"
			resp, err := http.Post(url, "application/json", strings.NewReader(`{"ref": "r1"}`))
			must(t, err)
			resp.Body.Close()
			first := resp.Header.Get("X-Conveyor-Message-Id")
			if resp.StatusCode < 500 || first == "" {
				t.Fatalf("the WMS down: %d (message %q); want a 5xx naming the message", resp.StatusCode, first)
			}
			wmsDown.Store(false)
			resp, err = http.Post(url, "application/json", strings.NewReader(`{"ref": "r1"}`))
			must(t, err)
			var out map[string]any
			must(t, json.NewDecoder(resp.Body).Decode(&out))
			resp.Body.Close()
			if resp.StatusCode != 201 || out["so"] != "SO-1" || out["attempt"] != 2.0 || resp.Header.Get("X-Conveyor-Message-Id") != first {
				t.Fatalf("the sender's retry: %d %v as message %q; want 201, SO-1, attempt 2, as %s", resp.StatusCode, out, resp.Header.Get("X-Conveyor-Message-Id"), first)
			}
			if n := erp.calls.Load(); n != 1 {
				t.Errorf("the ERP got %d calls for one request; want 1 (the retry answered it from the memo)", n)
			}
			eventually(t, 2*time.Second, "the run journaled as completed", func() bool {
				m, err := e.Store().Get(context.Background(), first)
				return err == nil && m.Status == store.Completed && m.Attempt == 2 && len(m.Attempts) == 1 && m.Attempts[0].Step != ""
			})
			if s, out := post(t, url, `{"ref": "r1"}`); s != 201 || out["so"] != "SO-1" {
				t.Errorf("a duplicate after the retry: %d %v; want the cached answer", s, out)
			}
		})
	}
}

// quoteFlow makes an ERP order, then a WMS allocation, and answers the
// order's number.
const quoteFlow = `
trigger: {http: {path: /quote, mode: sync}}
dedup: {key: body.ref}
steps:
  - call: {connection: erp, path: /sales-orders, as: erp}
  - call: {connection: wms, path: /allocations}
  - respond: {status: 201, body: '{so: vars.erp.body.sales_order}'}
`

// A retry that resumes a failed run after its flow was saved carries the
// memo to the steps of the revision it runs (as a replay does): a call
// put before the ERP's runs, and the ERP order made by the failed run is
// not made again. The memo used to be applied by position, so the new
// first call was answered with the ERP's response and the ERP called again.
func TestSyncRetryResumesAcrossARevision(t *testing.T) {
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			erp, wms, credit := newTarget(t), newTarget(t), newTarget(t)
			failFirst(wms, 1)
			dir := workspace(t, map[string]*target{"erp": erp, "wms": wms, "credit": credit}, map[string]string{"quote": quoteFlow})
			e := start(t, dir, backendOptions(t, backend))
			u := "http://" + e.TriggerAddr() + "/quote"
			if code, _ := post(t, u, `{"ref": "r1"}`); code != 503 {
				t.Fatalf("the WMS down: %d; want 503", code)
			}
			must(t, os.WriteFile(filepath.Join(dir, "flows", "quote.yaml"), []byte(`
trigger: {http: {path: /quote, mode: sync}}
dedup: {key: body.ref}
steps:
  - call: {connection: credit, path: /checks, as: credit}
  - call: {connection: erp, path: /sales-orders, as: erp}
  - call: {connection: wms, path: /allocations}
  - respond: {status: 201, body: '{so: vars.erp.body.sales_order, credit: vars.credit.status}'}
`), 0o644))
			eventually(t, 5*time.Second, "revision 2 live", func() bool { fi, _ := e.Flow("quote"); return fi.Revision == 2 })
			if code, out := post(t, u, `{"ref": "r1"}`); code != 201 || out["so"] != "SO-1" {
				t.Errorf("the retry on revision 2: %d %v; want 201 with SO-1", code, out)
			}
			if n, c := erp.calls.Load(), credit.calls.Load(); n != 1 || c != 1 {
				t.Errorf("ERP called %d times, credit check %d; want 1 and 1", n, c)
			}
		})
	}
}

// On Redis, a resumed retry whose claim answer is lost still resumes: the
// claim go-redis sends again finds the key taken by the same claimant. It
// was answered as a duplicate (409), and when Redis went away right
// after the claim, the key stayed taken until the claim lapsed, after
// which the retry ran as a new message and repeated the ERP order.
func TestSyncRetryResumesAfterALostClaimAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		outage bool
	}{{"answer lost", false}, {"answer lost, then Redis", true}} {
		t.Run(tc.name, func(t *testing.T) {
			erp, wms := newTarget(t), newTarget(t)
			failFirst(wms, 1)
			dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"quote": quoteFlow})
			url, p := storetest.RedisProxy(t)
			s := redisStore(t, p.Through(url, ""), storetest.RedisPrefix(t, url), store.RedisOptions{Consumer: "t"})
			e := start(t, dir, runtime.Options{Store: s, Limiter: runtime.NewRedisLimiter(s)})
			u := "http://" + e.TriggerAddr() + "/quote"
			if code, _ := post(t, u, `{"ref": "r1"}`); code != 503 {
				t.Fatalf("the WMS down: %d; want 503", code)
			}
			var after func()
			if tc.outage {
				after = p.Down
			}
			p.LoseAnswer("dd:quote:r1", after)
			if tc.outage {
				if code, _ := post(t, u, `{"ref": "r1"}`); code != 503 {
					t.Fatalf("the retry while Redis is away: %d; want 503", code)
				}
				p.Up()
				time.Sleep(200 * time.Millisecond) // the release of the claim lands
			}
			if code, out := post(t, u, `{"ref": "r1"}`); code != 201 || out["so"] != "SO-1" {
				t.Errorf("the retry: %d %v; want 201 with SO-1, the failed run resumed", code, out)
			}
			if n := erp.calls.Load(); n != 1 {
				t.Errorf("the ERP got %d calls; want 1", n)
			}
		})
	}
}
