package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// feed is a fake API serving items "updated since": GET /items?updated_since=T
// answers {"items": [...]} with every item whose updated_at is after T, in
// updated_at order. It records the updated_since of every request.
type feed struct {
	mu    sync.Mutex
	items []map[string]any
	since []string
	srv   *httptest.Server
}

func newFeed(t *testing.T) *feed {
	f := &feed{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("updated_since"))
		if err != nil {
			http.Error(w, `{"error": "updated_since must be RFC 3339"}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.since = append(f.since, r.URL.Query().Get("updated_since"))
		out := []map[string]any{}
		for _, it := range f.items {
			if at, _ := time.Parse(time.RFC3339Nano, it["updated_at"].(string)); at.After(since) {
				out = append(out, it)
			}
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"items": out})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// add appends items n.. with updated_at one second apart after 2026-01-01.
func (f *feed) add(ids ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		at := time.Date(2026, 1, 1, 0, 0, id, 0, time.UTC).Format(time.RFC3339)
		f.items = append(f.items, map[string]any{"id": id, "updated_at": at})
	}
}

func (f *feed) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.since...)
}

// pulled counts the items the sink received by item id, one per distinct
// idempotency key (a retried delivery of the same run is not a new pull).
func pulled(tg *target) map[int]int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	out := map[int]int{}
	for _, body := range tg.orders {
		id, _ := body["id"].(float64)
		out[int(id)]++
	}
	return out
}

// A polling flow keeps its watermark in the store: items added between
// runs, while the engine is down and during a run a restart interrupts are
// each pulled exactly once, and the first poll after a restart continues
// from the last stored watermark.
func TestWatermarkSurvivesRestart(t *testing.T) {
	testenv.SkipShort(t, "waits for several schedule firings")
	src, sink := newFeed(t), newTarget(t)
	var slow atomic.Bool
	sink.status = func(map[string]any) int {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"sink": sink}, map[string]string{"poll": pollFlow})
	addConnections(t, dir, fmt.Sprintf("source: {http: {base_url: %q, timeout: 2s}}", src.srv.URL))

	waitFor := func(n int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d items pulled", n), func() bool { return len(pulled(sink)) == n })
	}
	// polls waits until the feed saw n more polls, so that any repeat would
	// have happened.
	polls := func(n int) {
		t.Helper()
		seen := len(src.requests())
		eventually(t, 10*time.Second, fmt.Sprintf("%d more polls", n), func() bool { return len(src.requests()) >= seen+n })
	}

	src.add(1, 2, 3)
	e := start(t, dir, runtime.Options{})
	waitFor(3)
	src.add(4, 5)
	waitFor(5)
	polls(2)
	must(t, e.Shutdown(context.Background()))
	before := len(src.requests())

	src.add(6, 7) // while the engine is down
	e = start(t, dir, runtime.Options{})
	waitFor(7)
	if first := src.requests()[before]; first != "2026-01-01T00:00:05Z" {
		t.Errorf("first poll after the restart asked updated_since=%s, want the stored watermark 2026-01-01T00:00:05Z", first)
	}
	src.add(8)
	waitFor(8)
	polls(2)

	// A restart in the middle of a run: the run stays queued with its
	// checkpoint (vars.watermark and the pulled page) and resumes after the
	// restart with the same idempotency keys; the watermark moves only once
	// it completed.
	slow.Store(true)
	must(t, e.Shutdown(context.Background()))
	e = start(t, dir, runtime.Options{ShutdownTimeout: 100 * time.Millisecond})
	src.add(9, 10, 11, 12)
	eventually(t, 10*time.Second, "a run half done", func() bool { return len(pulled(sink)) >= 10 })
	must(t, e.Shutdown(context.Background()))
	if n := len(pulled(sink)); n == 12 {
		t.Log("the run finished before the shutdown interrupted it")
	}
	slow.Store(false)
	e = start(t, dir, runtime.Options{})
	waitFor(12)
	polls(2)
	must(t, e.Shutdown(context.Background()))

	counts := pulled(sink)
	ids := make([]int, 0, len(counts))
	for id, n := range counts {
		ids = append(ids, id)
		if n != 1 {
			t.Errorf("item %d pulled %d times", id, n)
		}
	}
	sort.Ints(ids)
	if fmt.Sprint(ids) != "[1 2 3 4 5 6 7 8 9 10 11 12]" {
		t.Errorf("pulled %v, want items 1 to 12", ids)
	}
	reqs := src.requests()
	if last := reqs[len(reqs)-1]; last != "2026-01-01T00:00:12Z" {
		t.Errorf("last poll asked updated_since=%s, want 2026-01-01T00:00:12Z", last)
	}
	if reqs[0] != "2026-01-01T00:00:00Z" {
		t.Errorf("first poll asked updated_since=%s, want the initial 2026-01-01T00:00:00Z", reqs[0])
	}
}

// failItemOnce makes tg answer status to the first item with this id.
func failItemOnce(tg *target, id float64, status int) {
	var failed atomic.Bool
	tg.status = func(b map[string]any) int {
		if v, _ := b["id"].(float64); v == id && failed.CompareAndSwap(false, true) {
			return status
		}
		return 201
	}
}

// pollFlow pulls the feed's items updated since its watermark every
// second and posts each to the sink. The feed answers in updated_at
// order, all in UTC: the last is the latest.
const pollFlow = `
trigger: {schedule: {cron: "@every 1s"}}
concurrency: 1
watermark:
  initial: '"2026-01-01T00:00:00Z"'
  next: 'last(sort(map(vars.pulled.body.items, .updated_at))) ?? vars.watermark'
steps:
  - call: {connection: source, method: GET, path: /items, query: {updated_since: vars.watermark}, as: pulled}
  - split:
      items: vars.pulled.body.items
      steps:
        - call: {connection: sink, path: /items, body: item}
`

// Replaying a dead-lettered watermark run finishes that run's old window
// (its memoized pull); it must not put the stored watermark back to where
// that window ended once later runs have moved it on.
func TestWatermarkReplayDoesNotMoveBack(t *testing.T) {
	src, sink := newFeed(t), newTarget(t)
	failItemOnce(sink, 3, 400)
	dir := workspace(t, map[string]*target{"sink": sink}, map[string]string{"poll": pollFlow})
	addConnections(t, dir, fmt.Sprintf("source: {http: {base_url: %q, timeout: 2s}}", src.srv.URL))
	asked := func(since string) func() bool {
		return func() bool {
			for _, s := range src.requests() {
				if s == since {
					return true
				}
			}
			return false
		}
	}
	src.add(1, 2, 3)
	e := start(t, dir, runtime.Options{})
	var dead []*store.Message
	eventually(t, 10*time.Second, "the first run dead-lettered", func() bool {
		dead, _ = e.Messages(context.Background(), store.Filter{Flow: "poll", Status: store.Dead})
		return len(dead) == 1
	})
	eventually(t, 10*time.Second, "a run past item 3", asked("2026-01-01T00:00:03Z"))
	src.add(4, 5)
	eventually(t, 10*time.Second, "a run past item 5", asked("2026-01-01T00:00:05Z"))
	if _, err := e.Replay(context.Background(), dead[0].ID, runtime.ReplayOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the replay completed", func() bool {
		m, err := e.Message(context.Background(), dead[0].ID)
		return err == nil && m.Status == store.Completed
	})
	seen := len(src.requests())
	eventually(t, 10*time.Second, "two more polls", func() bool { return len(src.requests()) >= seen+2 })
	for _, s := range src.requests()[seen:] {
		if s != "2026-01-01T00:00:05Z" {
			t.Errorf("a poll after the replay asked updated_since=%s, want 2026-01-01T00:00:05Z (the watermark went back)", s)
		}
	}
}

// A watermark holding & < or > (a cursor such as page=2&n=1) advances
// after a retried run. The run's pin of its starting watermark was
// written with json.Marshal, which escapes &, so it never matched the
// stored bytes: the watermark stayed, and the window was pulled and
// delivered again.
func TestWatermarkWithAmpersandAdvancesAfterARetry(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.URL.Query().Get("cursor")
		mu.Lock()
		asked = append(asked, c)
		mu.Unlock()
		out := map[string]any{"items": []any{}, "next": c}
		switch c {
		case "start":
			out = map[string]any{"items": []any{map[string]any{"id": 1}}, "next": "page=2&n=1"}
		case "page=2&n=1":
			out = map[string]any{"items": []any{map[string]any{"id": 2}}, "next": "page=3&n=2"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(src.Close)
	sink := newTarget(t)
	failItemOnce(sink, 2, 503)
	dir := workspace(t, map[string]*target{"sink": sink}, map[string]string{"poll": `
trigger: {schedule: {cron: "@every 1s"}}
concurrency: 1
watermark:
  initial: '"start"'
  next: vars.pulled.body.next
steps:
  - call: {connection: source, method: GET, path: /items, query: {cursor: vars.watermark}, as: pulled}
  - split:
      items: vars.pulled.body.items
      steps:
        - call: {connection: sink, path: /items, body: item, retry: {attempts: 5, initial: 10ms, max: 10ms}}
`})
	addConnections(t, dir, fmt.Sprintf("source: {http: {base_url: %q, timeout: 2s}}", src.URL))
	e := start(t, dir, runtime.Options{})
	eventually(t, 10*time.Second, "item 2 delivered after its retry", func() bool { return len(pulled(sink)) == 2 })
	eventually(t, 10*time.Second, "a poll past page 2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(asked, "page=3&n=2")
	})
	must(t, e.Shutdown(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, c := range asked {
		if c == "page=2&n=1" {
			n++
		}
	}
	if n != 1 || pulled(sink)[2] != 1 {
		t.Errorf("cursor page=2&n=1 asked %d times (%q), item 2 delivered %d times; want once each", n, asked, pulled(sink)[2])
	}
}
