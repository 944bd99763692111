package runtime_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

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
			opts := runtime.Options{}
			if backend == "redis" {
				url := storetest.RedisURL(t)
				s := redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{Consumer: "t"})
				opts.Store, opts.Limiter = s, runtime.NewRedisLimiter(s)
			}
			e := start(t, dir, opts)
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
