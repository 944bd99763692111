package runtime_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
)

// A message retries on the revision it was accepted under, also after a
// restart, when that revision is no longer live: it is compiled again
// from the stored source.
func TestRetryRunsOnItsRevisionAfterRestart(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	down := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			w.WriteHeader(503)
			return
		}
		paths = append(paths, r.URL.Path)
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	dir := workspace(t, nil, nil)
	addConnections(t, dir, "erp: {http: {base_url: "+srv.URL+"}}")
	version := func(path string) {
		src := "trigger: {http: {path: /in}}\nretry: {attempts: 50, initial: 100ms, max: 200ms}\nsteps:\n  - call: {connection: erp, path: " + path + "}\n"
		must(t, os.WriteFile(filepath.Join(dir, "flows", "in.yaml"), []byte(src), 0o644))
	}
	version("/v1")
	opts := runtime.Options{DataDir: filepath.Join(dir, "data"), RescanInterval: -1}
	e := start(t, dir, opts)
	if status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	time.Sleep(300 * time.Millisecond) // a failed attempt or two
	must(t, e.Shutdown(context.Background()))

	version("/v2")
	e = start(t, dir, opts)
	if status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 2}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	eventually(t, 5*time.Second, "both messages delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(paths) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(paths)
	if !slices.Equal(paths, []string{"/v1", "/v2"}) {
		t.Errorf("delivered to %v; want the first message on its revision (/v1), the second on the new one", paths)
	}
}
