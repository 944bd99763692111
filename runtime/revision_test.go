package runtime_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// revisionTarget is an ERP that is down until up, and records the paths
// of what it took; version writes the flow in.yaml, posting to path.
type revisionTarget struct {
	mu      sync.Mutex
	isDown  bool
	paths   []string
	version func(path string)
}

func (r *revisionTarget) up() {
	r.mu.Lock()
	r.isDown = false
	r.mu.Unlock()
}

// delivered returns the paths the target took, sorted.
func (r *revisionTarget) delivered() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.paths))
}

// newRevisionFixture returns a workspace whose flow "in" (see version)
// calls the returned target, down for now.
func newRevisionFixture(t *testing.T) (string, *revisionTarget) {
	erp := &revisionTarget{isDown: true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		erp.mu.Lock()
		defer erp.mu.Unlock()
		if erp.isDown {
			w.WriteHeader(503)
			return
		}
		erp.paths = append(erp.paths, r.URL.Path)
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	dir := workspace(t, nil, nil)
	addConnections(t, dir, "erp: {http: {base_url: "+srv.URL+"}}")
	erp.version = func(path string) {
		src := "trigger: {http: {path: /in}}\nretry: {attempts: 50, initial: 100ms, max: 200ms}\nsteps:\n  - call: {connection: erp, path: " + path + "}\n"
		must(t, os.WriteFile(filepath.Join(dir, "flows", "in.yaml"), []byte(src), 0o644))
	}
	return dir, erp
}

// A message retries on the revision it was accepted under, also after a
// restart, when that revision is no longer live: it is compiled again
// from the stored source.
func TestRetryRunsOnItsRevisionAfterRestart(t *testing.T) {
	dir, erp := newRevisionFixture(t)
	erp.version("/v1")
	opts := runtime.Options{DataDir: filepath.Join(dir, "data"), RescanInterval: -1}
	e := start(t, dir, opts)
	if status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	time.Sleep(300 * time.Millisecond) // a failed attempt or two
	must(t, e.Shutdown(context.Background()))

	erp.version("/v2")
	e = start(t, dir, opts)
	if status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 2}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	erp.up()
	eventually(t, 5*time.Second, "both messages delivered", func() bool { return len(erp.delivered()) == 2 })
	if paths := erp.delivered(); !slices.Equal(paths, []string{"/v1", "/v2"}) {
		t.Errorf("delivered to %v; want the first message on its revision (/v1), the second on the new one", paths)
	}
}

// revisionlessStore cannot read or store revisions while down is set.
type revisionlessStore struct {
	store.Store
	down atomic.Bool
}

func (s *revisionlessStore) Revision(ctx context.Context, flow string, n int) (*store.Revision, error) {
	if s.down.Load() {
		return nil, errors.New("store unavailable")
	}
	return s.Store.Revision(ctx, flow, n)
}

func (s *revisionlessStore) AddRevision(ctx context.Context, r store.Revision) error {
	if s.down.Load() {
		return errors.New("store unavailable")
	}
	return s.Store.AddRevision(ctx, r)
}

// A version that went live while the store could not record it serves
// as revision 0, and gets its revision once the store answers, without
// an edit of the file.
func TestUnrecordedVersionIsRecordedWhenTheStoreAnswers(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": "trigger: {http: {path: /echo, mode: sync}}\nsteps:\n  - respond: {status: 200, body: '{n: body.n}'}\n"})
	bolt, err := store.OpenBolt(t.TempDir())
	must(t, err)
	t.Cleanup(func() { bolt.Close() })
	s := &revisionlessStore{Store: bolt}
	s.down.Store(true)
	e := start(t, dir, runtime.Options{Store: s})
	if f, _ := e.Flow("echo"); f.Revision != 0 {
		t.Fatalf("revision %d while the store is down; want 0 (unrecorded)", f.Revision)
	}
	time.Sleep(300 * time.Millisecond) // rescans while the store is still down
	if f, _ := e.Flow("echo"); f.Revision != 0 || f.Status != runtime.StatusActive {
		t.Fatalf("flow %+v; want it serving, unrecorded", f)
	}
	if status, out := post(t, "http://"+e.TriggerAddr()+"/echo", `{"n": 1}`); status != 200 {
		t.Fatalf("unrecorded version: %d %v", status, out)
	}
	s.down.Store(false)
	eventually(t, 5*time.Second, "revision 1 recorded", func() bool {
		f, _ := e.Flow("echo")
		return f.Revision == 1
	})
	revs, err := e.Revisions(context.Background(), "echo")
	must(t, err)
	if len(revs) != 1 || revs[0].Number != 1 || !strings.Contains(revs[0].Source, "/echo") {
		t.Errorf("stored revisions %+v; want revision 1 with the file's source", revs)
	}
	if status, out := post(t, "http://"+e.TriggerAddr()+"/echo", `{"n": 2}`); status != 200 {
		t.Fatalf("recorded version: %d %v", status, out)
	}
}

// A message whose revision cannot be read because the store does not
// answer waits and runs later on that revision; it used to be
// dead-lettered as permanently failed.
func TestUnreadableRevisionPostponesTheMessage(t *testing.T) {
	testenv.SkipShort(t, "waits out a postponement")
	dir, erp := newRevisionFixture(t)
	data := t.TempDir()
	open := func() *revisionlessStore {
		b, err := store.OpenBolt(data)
		must(t, err)
		return &revisionlessStore{Store: b}
	}
	erp.version("/v1")
	s := open()
	e := start(t, dir, runtime.Options{Store: s, RescanInterval: -1})
	status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	time.Sleep(300 * time.Millisecond) // a failed attempt or two
	must(t, e.Shutdown(context.Background()))
	must(t, s.Close())

	erp.version("/v2")
	s = open()
	t.Cleanup(func() { s.Close() })
	s.down.Store(true) // revision 1 cannot be read for a while
	e = start(t, dir, runtime.Options{Store: s, RescanInterval: -1})
	erp.up()
	time.Sleep(500 * time.Millisecond)
	s.down.Store(false)
	eventually(t, 10*time.Second, "the message delivered", func() bool { return len(erp.delivered()) == 1 })
	if paths := erp.delivered(); paths[0] != "/v1" {
		t.Errorf("delivered to %s; want its own revision's /v1", paths[0])
	}
	// The outcome is saved after the call answered: wait for it.
	eventually(t, 5*time.Second, "the message completed", func() bool {
		m, err := e.Message(context.Background(), out["id"].(string))
		return err == nil && m.Status == store.Completed
	})
}
