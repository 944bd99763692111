package runtime_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// A run's outcome is saved after its lease renewals stop. Redis goes
// away during the run for longer than the lease timeout (for every
// replica); when it comes back, no replica may take over the lease of
// the finished run that waits to record its outcome: neither the one
// that ran it nor another one. The ERP got the order twice.
func TestRedisOutageDoesNotRunAFinishedMessageAgain(t *testing.T) {
	for _, replicas := range [][]string{{"a"}, {"a", "b"}} {
		t.Run(fmt.Sprintf("%d replicas", len(replicas)), func(t *testing.T) {
			url, p := storetest.RedisProxy(t)
			prefix := storetest.RedisPrefix(t, url)
			erp := newSink(t)
			var once sync.Once
			cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				once.Do(p.Down) // Redis goes away while the first call is under way
				erp.srv.Config.Handler.ServeHTTP(w, r)
			}))
			defer cut.Close()
			dir := replicaWorkspace(t, erp, map[string]string{"orders": replicaOrderFlow})
			cfg := fmt.Sprintf("connections:\n  erp: {http: {base_url: %q, timeout: 5s}}\n", cut.URL)
			must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg), 0o644))
			var first *runtime.Engine
			for _, name := range replicas {
				s, err := store.OpenRedis(context.Background(), p.Through(url, ""),
					store.RedisOptions{Prefix: prefix, Consumer: name, LeaseTimeout: 500 * time.Millisecond, CallTimeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				e := start(t, dir, runtime.Options{Store: s, Limiter: runtime.NewRedisLimiter(s), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if first == nil {
					first = e
				}
			}
			if st, out := post(t, "http://"+first.TriggerAddr()+"/orders", `{"id": 1}`); st != 202 {
				t.Fatalf("accept: %d %v", st, out)
			}
			eventually(t, 10*time.Second, "the order at the ERP", func() bool { return erp.calls.Load() == 1 })
			time.Sleep(1500 * time.Millisecond) // the outage outlasts the lease
			p.Up()
			direct := redisStore(t, url, prefix, store.RedisOptions{Consumer: "observer"})
			eventually(t, 15*time.Second, "the outcome recorded", func() bool {
				ms, err := direct.List(context.Background(), store.Filter{Flow: "orders", Status: store.Completed})
				return err == nil && len(ms) == 1
			})
			time.Sleep(500 * time.Millisecond)
			if n := erp.calls.Load(); n != 1 {
				t.Errorf("erp called %d times, want 1: the finished run ran again after the outage", n)
			}
		})
	}
}

// A fail-closed rate limiter out of reach makes a call wait and retry;
// it is not the target failing, and must not use up the message's
// attempts (a dead letter after one blip of Redis).
func TestRedisLimiterOutageDoesNotUseUpAttempts(t *testing.T) {
	url, p := storetest.RedisProxy(t)
	prefix := storetest.RedisPrefix(t, url)
	erp := newSink(t)
	dir := replicaWorkspace(t, erp, map[string]string{"orders": `
trigger: {http: {path: /orders}}
retry: {attempts: 2, initial: 50ms, max: 50ms}
steps:
  - map: {order_ref: '"O-" + string(body.id)'}
  - call: {connection: erp, path: /sales-orders, rate_limit: {limit: 100, per: 1s}}
`})
	s := redisStore(t, url, prefix, store.RedisOptions{Consumer: "a"})
	ls, err := store.OpenRedis(context.Background(), p.Through(url, ""),
		store.RedisOptions{Prefix: prefix, Consumer: "limiter", CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Close() })
	l := runtime.NewRedisLimiter(ls)
	l.FailOpen = false
	a := start(t, dir, runtime.Options{Store: s, Limiter: l, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	p.Down()
	st, out := post(t, "http://"+a.TriggerAddr()+"/orders", `{"id": 1}`)
	if st != 202 {
		t.Fatalf("accept: %d %v", st, out)
	}
	time.Sleep(1500 * time.Millisecond)
	p.Up()
	eventually(t, 15*time.Second, "the message finished", func() bool {
		m, err := s.Get(context.Background(), out["id"].(string))
		return err == nil && !m.Status.Pending()
	})
	m, _ := s.Get(context.Background(), out["id"].(string))
	if m.Status != store.Completed || erp.calls.Load() != 1 {
		t.Errorf("status %s (%s), erp called %d times: the limiter's outage used up the message's attempts", m.Status, m.Error, erp.calls.Load())
	}
}

// Redis out of reach when a run records its first call before the
// second (the memo's flush) is not the target failing either: the
// message must not be dead-lettered for it when Redis is back.
func TestRedisOutageMidRunDoesNotUseUpAttempts(t *testing.T) {
	url, p := storetest.RedisProxy(t)
	prefix := storetest.RedisPrefix(t, url)
	erp := newSink(t)
	var once sync.Once
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { p.Down(); time.AfterFunc(time.Second, p.Up) })
		erp.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer cut.Close()
	dir := replicaWorkspace(t, erp, map[string]string{"orders": `
trigger: {http: {path: /orders}}
retry: {attempts: 1}
steps:
  - call: {connection: erp, path: /first}
  - call: {connection: erp, path: /second}
`})
	cfg := fmt.Sprintf("connections:\n  erp: {http: {base_url: %q, timeout: 5s}}\n", cut.URL)
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg), 0o644))
	s, err := store.OpenRedis(context.Background(), p.Through(url, ""),
		store.RedisOptions{Prefix: prefix, Consumer: "a", CallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	a := start(t, dir, runtime.Options{Store: s, Limiter: runtime.NewRedisLimiter(s), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	st, out := post(t, "http://"+a.TriggerAddr()+"/orders", `{"id": 1}`)
	if st != 202 {
		t.Fatalf("accept: %d %v", st, out)
	}
	direct := redisStore(t, url, prefix, store.RedisOptions{Consumer: "observer"})
	eventually(t, 20*time.Second, "the message finished", func() bool {
		m, err := direct.Get(context.Background(), out["id"].(string))
		return err == nil && !m.Status.Pending()
	})
	m, _ := direct.Get(context.Background(), out["id"].(string))
	if m.Status != store.Completed {
		t.Errorf("status %s (%s): a Redis outage used up the message's attempts", m.Status, m.Error)
	}
}
