package runtime_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// acceptFails is a store whose Accept of event copies fails while fails
// is above zero: the disk full, or Redis out of reach, for a moment.
type acceptFails struct {
	store.Store
	fails atomic.Int32
}

func (s *acceptFails) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	if m.Source == "event:orders.accepted" && s.fails.Add(-1) >= 0 {
		return nil, errors.New("no space left on device")
	}
	return s.Store.Accept(ctx, m, ttl)
}

// A publish step whose copies cannot be stored is the store's failure,
// not the message's: the message waits for the store, without using up
// its attempts. With attempts: 1 it was dead-lettered at once.
func TestPublishStoreFailureDoesNotUseUpAttempts(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"capture": "trigger: {http: {path: /orders}}\nretry: {attempts: 1}\nsteps:\n  - publish: {topic: orders.accepted}\n",
		"to-erp":  "trigger: {event: {topic: orders.accepted}}\nsteps:\n  - call: {connection: erp, path: /sales-orders}\n",
	})
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "data"))
	must(t, err)
	t.Cleanup(func() { _ = b.Close() })
	s := &acceptFails{Store: b}
	s.fails.Store(2)
	e := start(t, dir, runtime.Options{Store: s})
	st, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	if st != 202 {
		t.Fatalf("accept: %d %v", st, out)
	}
	id := out["id"].(string)
	var m *store.Message
	eventually(t, 20*time.Second, "the message finished", func() bool {
		m, _ = e.Message(context.Background(), id)
		return m != nil && !m.Status.Pending()
	})
	if m.Status != store.Completed {
		t.Fatalf("status %s (%s): a store failure used up the message's attempts", m.Status, m.Error)
	}
	eventually(t, 5*time.Second, "the event delivered", func() bool { return erp.count() == 1 })
}
