package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// Replica a is cut off from Redis (a partition, a stall) while it runs a
// message; b takes the message over after the lease timeout and runs it.
// a cannot renew its lease for half the lease timeout, so it stops its run
// (its call is cancelled); and whatever a saves once it reaches Redis
// again is refused, as the lease is b's now: a stale save that landed
// would acknowledge b's pending entry and queue the message again, to run
// beside b's run.
func TestReplicaStaleSaveLeavesTheNewOwnerAlone(t *testing.T) {
	url, proxy := storetest.RedisProxy(t)
	prefix := storetest.RedisPrefix(t, url)
	var calls, ok, overlap atomic.Int64
	var bRunning, aCancelled atomic.Bool
	releaseA := make(chan struct{})
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := calls.Add(1); n {
		case 1: // a's run: cancelled by a, or answers 503 once b runs it
			io.Copy(io.Discard, r.Body) // else the server does not see the client go
			select {
			case <-r.Context().Done():
				aCancelled.Store(true)
			case <-releaseA:
				w.WriteHeader(503)
			}
		case 2: // b's run, the live owner's: a slow but healthy target
			bRunning.Store(true)
			defer bRunning.Store(false)
			select {
			case <-r.Context().Done():
			case <-time.After(4 * time.Second):
				ok.Add(1)
				w.WriteHeader(201)
			}
		default:
			if bRunning.Load() {
				overlap.Add(1) // another run while the owner's still runs
			}
			ok.Add(1)
			w.WriteHeader(201)
		}
	}))
	defer target.Close()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(fmt.Sprintf("connections:\n  erp: {http: {base_url: %q, timeout: 10s}}\n", target.URL)), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "flows"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "flows", "in.yaml"), []byte("trigger: {http: {path: /in}}\nretry: {attempts: 5, initial: 10ms, max: 10ms}\nsteps:\n  - call: {connection: erp, path: /orders}\n"), 0o644))

	const lease = 600 * time.Millisecond
	aURL := "redis://" + proxy.Addr + "/0"
	a, _ := replica(t, dir, aURL, prefix, "a", lease)
	if s, out := post(t, "http://"+a.TriggerAddr()+"/in", `{"n": 1}`); s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 5*time.Second, "a's call", func() bool { return calls.Load() == 1 })
	proxy.Down() // a is cut off from Redis
	replica(t, dir, url, prefix, "b", lease)
	eventually(t, 5*time.Second, "b's takeover", func() bool { return calls.Load() == 2 })
	close(releaseA) // if a's run is still on: it ends with a 503, a retry saved until stored
	time.Sleep(300 * time.Millisecond)
	proxy.Up()
	time.Sleep(5 * time.Second) // a's save lands; b's run ends
	ms, _ := a.Messages(context.Background(), store.Filter{})
	for _, m := range ms {
		t.Logf("message %s: %s, %d attempts; target calls %d, of which succeeded %d", m.ID, m.Status, len(m.Attempts), calls.Load(), ok.Load())
	}
	if !aCancelled.Load() {
		t.Errorf("a ran on without a lease: its call was not cancelled")
	}
	if overlap.Load() != 0 || ok.Load() != 1 {
		t.Errorf("the message ran again while its owner b ran it (overlap %d) and succeeded %d times at the target: a's stale save requeued a message leased to b", overlap.Load(), ok.Load())
	}
}
