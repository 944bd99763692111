package runtime_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// Shutdown stops accepting with 503, finishes in-flight work, leaves the
// rest queued; the next start delivers it.
func TestShutdownLeavesQueuedAndRestartResumes(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(100 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
concurrency: 1
steps: [{call: {connection: erp, path: /x}}]
`})
	data := filepath.Join(dir, "data")
	e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: data,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1})
	must(t, err)
	must(t, e.Start())
	url := "http://" + e.TriggerAddr() + "/orders"
	var ids []string
	for i := 0; i < 10; i++ {
		_, out := post(t, url, fmt.Sprintf(`{"id": %d}`, i))
		ids = append(ids, out["id"].(string))
	}
	time.Sleep(150 * time.Millisecond)
	done := make(chan error)
	go func() { done <- e.Shutdown(context.Background()) }()
	eventually(t, time.Second, "503 while draining", func() bool {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
		if err != nil {
			return true // listener already closed: also not accepting
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	must(t, <-done)
	delivered := erp.count()
	if delivered == 0 || delivered == 10 {
		t.Fatalf("%d delivered before shutdown; want some but not all", delivered)
	}

	e2 := start(t, dir, runtime.Options{DataDir: data})
	eventually(t, 5*time.Second, "the queued rest after restart", func() bool { return erp.count() == 10 })
	for _, id := range ids {
		m, err := e2.Store().Get(context.Background(), id)
		must(t, err)
		eventually(t, time.Second, "completed "+id, func() bool {
			m, _ = e2.Store().Get(context.Background(), id)
			return m.Status == store.Completed
		})
	}
	if erp.replays != 0 {
		t.Errorf("%d calls repeated", erp.replays)
	}
}
