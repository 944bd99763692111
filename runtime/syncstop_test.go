package runtime_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// A sync run that outlasts its trigger's timeout answers 504, as the
// timeout field documents ("longest time the flow may run before 504"),
// not the 503 "upstream unavailable" of a target that refused: the flow's
// own deadline ended it, while the target may still be working on it.
func TestSyncRunPastItsTimeoutAnswers504(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(600 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync, timeout: 200ms}}
steps:
  - call: {connection: erp, path: /q}
  - respond: {status: 200}
`})
	e := start(t, dir, runtime.Options{})
	resp, err := http.Post("http://"+e.TriggerAddr()+"/quote", "application/json", strings.NewReader(`{"ref": "r1"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("a run past its timeout: %d; want 504", resp.StatusCode)
	}
}

// gatedLeaseStore holds the first Lease of flow after arm until release:
// a dispatcher leasing just as Shutdown begins.
type gatedLeaseStore struct {
	store.Store
	flow    string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gatedLeaseStore) Lease(ctx context.Context, flow string, now time.Time, n int) ([]*store.Message, error) {
	if flow == g.flow && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Store.Lease(ctx, flow, now, n)
}

// Messages a dispatcher leased as Shutdown began, too late to run, go
// back to the queue before the store closes. On Redis they stayed in the
// stopped replica's pending list: another replica (or this one restarted
// under its new consumer name) could take them only after the lease
// timeout, and each such shutdown counted a delivery towards the
// dead-lettering of a message "lost" max_deliveries times.
func TestShutdownReturnsMessagesLeasedTooLate(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	erp, wms := newTarget(t), newTarget(t)
	wms.status = func(map[string]any) int { time.Sleep(time.Second); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
steps: [{call: {connection: erp, path: /o}}]
`, "slow": `
trigger: {http: {path: /slow}}
steps: [{call: {connection: wms, path: /s}}]
`})
	rs, err := store.OpenRedis(context.Background(), url, store.RedisOptions{Prefix: prefix, Consumer: "stopping", LeaseTimeout: 20 * time.Second})
	must(t, err)
	g := &gatedLeaseStore{Store: rs, flow: "orders", entered: make(chan struct{}), release: make(chan struct{})}
	e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Store: g,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1})
	must(t, err)
	must(t, e.Start())
	post(t, "http://"+e.TriggerAddr()+"/slow", `{"id": 0}`)
	eventually(t, 2*time.Second, "a slow message in flight", func() bool { return wms.calls.Load() == 1 })
	g.armed.Store(true)
	status, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	<-g.entered
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(context.Background()) }()
	time.Sleep(300 * time.Millisecond) // Shutdown refuses new runs by now, and waits for the slow one
	close(g.release)
	must(t, <-done)
	if n := erp.calls.Load(); n != 0 {
		t.Fatalf("the target got %d calls during shutdown", n)
	}

	next := redisStore(t, url, prefix, store.RedisOptions{Consumer: "next", LeaseTimeout: 20 * time.Second})
	msgs, err := next.Lease(context.Background(), "orders", time.Now(), 10)
	must(t, err)
	if len(msgs) != 1 || msgs[0].ID != out["id"] {
		t.Fatalf("the next replica leased %d messages; want the one the stopped replica leased too late, at once", len(msgs))
	}
}

// A schedule stopped by Shutdown stays stopped when a reload comes during
// the drain (a flow saved, the API's PUT): it fired runs into the queue
// of an engine that had stopped accepting work.
func TestScheduleStaysStoppedDuringShutdown(t *testing.T) {
	testenv.SkipShort(t, "waits for schedule firings")
	wms := newTarget(t)
	wms.status = func(map[string]any) int { time.Sleep(2500 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"wms": wms}, map[string]string{"tick": `
trigger: {schedule: {cron: "@every 1s"}}
steps: [{log: {message: '"tick"'}}]
`, "slow": `
trigger: {http: {path: /slow}}
steps: [{call: {connection: wms, path: /s}}]
`})
	e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1, ShutdownTimeout: 10 * time.Second})
	must(t, err)
	must(t, e.Start())
	post(t, "http://"+e.TriggerAddr()+"/slow", `{"id": 1}`)
	eventually(t, 2*time.Second, "the slow message in flight", func() bool { return wms.calls.Load() == 1 })
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	// A flow saved during the drain, written a while ago as far as the
	// reload's settle check is concerned.
	other := filepath.Join(dir, "flows", "other.yaml")
	must(t, os.WriteFile(other, []byte("trigger: {http: {path: /other}}\nsteps: [{log: {message: '\"x\"'}}]\n"), 0o644))
	old := time.Now().Add(-time.Minute)
	must(t, os.Chtimes(other, old, old))
	reloaded := time.Now()
	e.Reload()
	must(t, <-done)

	s, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	defer s.Close()
	msgs, err := s.List(context.Background(), store.Filter{Flow: "tick"})
	must(t, err)
	for _, m := range msgs {
		if m.ReceivedAt.After(reloaded) {
			t.Errorf("scheduled run %s stored %s after a reload during the drain", m.ID, m.ReceivedAt.Sub(reloaded))
		}
	}
}

// slowFinishStore journals a sync run's outcome slowly, as a busy store
// does (a group commit waiting on fsync, a loaded Redis).
type slowFinishStore struct {
	store.Store
	delay time.Duration
}

func (s *slowFinishStore) Finish(ctx context.Context, m *store.Message, ttl time.Duration) error {
	time.Sleep(s.delay)
	return s.Store.Finish(ctx, m, ttl)
}

// A sync run that failed within its timeout answers that failure, not
// 504, however long its journal write takes after the run: the target's
// refusal is not a timeout (and a sender told "timeout" sends the same
// bad request again).
func TestSyncRunFailedInTimeIsNoTimeout(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(100 * time.Millisecond); return 400 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync, timeout: 300ms}}
steps:
  - call: {connection: erp, path: /q}
  - respond: {status: 200}
`})
	bs, err := store.OpenBolt(t.TempDir())
	must(t, err)
	e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Store:  &slowFinishStore{Store: bs, delay: 400 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1})
	must(t, err)
	must(t, e.Start())
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	resp, err := http.Post("http://"+e.TriggerAddr()+"/quote", "application/json", strings.NewReader(`{"ref": "r1"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a run the target refused within its timeout: %d; want 502", resp.StatusCode)
	}
}
