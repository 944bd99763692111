package runtime_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// lostLeaseStore renews no lease: every Touch answers that another
// replica took the message over, as a Redis store does after XAUTOCLAIM.
type lostLeaseStore struct{ store.Store }

func (lostLeaseStore) Touch(context.Context, string) error { return store.ErrLeaseLost }
func (lostLeaseStore) LeaseTimeout() time.Duration         { return 90 * time.Millisecond }

// A replica that loses a message's lease stops running it and leaves its
// outcome to the replica that took it over: it neither saves a retry
// (which would queue the message again beside the other's run) nor a
// dead letter.
func TestLostLeaseStopsTheRun(t *testing.T) {
	var calls, cancelled atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client go
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(3 * time.Second):
		}
		w.WriteHeader(503)
	}))
	t.Cleanup(srv.Close)
	dir := workspace(t, nil, map[string]string{"in": "trigger: {http: {path: /in}}\nretry: {attempts: 5, initial: 10ms, max: 10ms}\nsteps:\n  - call: {connection: erp, path: /slow}\n"})
	addConnections(t, dir, "erp: {http: {base_url: "+srv.URL+", timeout: 10s}}")
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "data"))
	must(t, err)
	t.Cleanup(func() { bolt.Close() })
	e := start(t, dir, runtime.Options{Store: lostLeaseStore{bolt}})
	status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 2*time.Second, "the call cancelled", func() bool { return cancelled.Load() == 1 })
	time.Sleep(300 * time.Millisecond) // a retry would have been due by now
	if n := calls.Load(); n != 1 {
		t.Errorf("the target got %d calls; want 1, the run stopped with its lease", n)
	}
	m, err := e.Message(context.Background(), out["id"].(string))
	must(t, err)
	if m.Status != store.Running || len(m.Attempts) != 0 {
		t.Errorf("message %s with %d attempts recorded; want it left running, to the replica that took it", m.Status, len(m.Attempts))
	}
}

// flakySaveStore fails the first failing Saves of a retry.
type flakySaveStore struct {
	store.Store
	failing atomic.Int64
}

func (s *flakySaveStore) Save(ctx context.Context, m *store.Message) error {
	if m.Status == store.Retrying && s.failing.Add(-1) >= 0 {
		return errors.New("store unavailable")
	}
	return s.Store.Save(ctx, m)
}

// A retry the store did not take at first is saved again until it does.
// It used to be only logged: the embedded store then kept the message
// leased, and it ran again only after a restart.
func TestRetryTheStoreRefusedIsSavedAgain(t *testing.T) {
	erp := newTarget(t)
	var first atomic.Bool
	first.Store(true)
	erp.status = func(map[string]any) int {
		if first.Swap(false) {
			return 503
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": "trigger: {http: {path: /in}}\nretry: {attempts: 5, initial: 10ms, max: 10ms}\nsteps:\n  - call: {connection: erp, path: /orders}\n"})
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "data"))
	must(t, err)
	t.Cleanup(func() { bolt.Close() })
	s := &flakySaveStore{Store: bolt}
	s.failing.Store(2)
	e := start(t, dir, runtime.Options{Store: s})
	if status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 5*time.Second, "the retry delivered", func() bool { return erp.count() == 1 })
}

// slowBlipStore's first lease renewal hangs for a fifth of the lease and
// fails, as a command does that times out while Redis fails over; the
// renewals after it succeed.
type slowBlipStore struct {
	store.Store
	touches atomic.Int64
}

func (s *slowBlipStore) Touch(context.Context, string) error {
	if s.touches.Add(1) == 1 {
		time.Sleep(s.LeaseTimeout() / 5)
		return errors.New("i/o timeout")
	}
	return nil
}
func (*slowBlipStore) LeaseTimeout() time.Duration { return 3 * time.Second }

// One slow failed renewal does not cost the run its lease: the renewal is
// tried again at once, well before half the lease has gone. It used to
// wait a third of the lease for the next try, and the run was given up
// after one failure that took more than a sixth.
func TestOneSlowLeaseRenewalFailureKeepsTheRun(t *testing.T) {
	testenv.SkipShort(t, "runs a call across several lease renewals")
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			return
		case <-time.After(2500 * time.Millisecond):
		}
		w.WriteHeader(201)
	}))
	t.Cleanup(srv.Close)
	dir := workspace(t, nil, map[string]string{"in": "trigger: {http: {path: /in}}\nsteps:\n  - call: {connection: erp, path: /slow}\n"})
	addConnections(t, dir, "erp: {http: {base_url: "+srv.URL+", timeout: 10s}}")
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "data"))
	must(t, err)
	t.Cleanup(func() { bolt.Close() })
	blip := &slowBlipStore{Store: bolt}
	e := start(t, dir, runtime.Options{Store: blip})
	status, out := post(t, "http://"+e.TriggerAddr()+"/in", `{"n": 1}`)
	if status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 6*time.Second, "the run finished", func() bool {
		m, err := e.Message(context.Background(), out["id"].(string))
		return err == nil && !m.Status.Pending()
	})
	m, err := e.Message(context.Background(), out["id"].(string))
	must(t, err)
	if m.Status != store.Completed || calls.Load() != 1 || blip.touches.Load() < 2 {
		t.Errorf("message %s after %d calls and %d renewals; want completed after 1 call, the renewal tried again", m.Status, calls.Load(), blip.touches.Load())
	}
}
