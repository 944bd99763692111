package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
)

func TestBoltSweepKeepsDeadAndPending(t *testing.T) {
	s, ctx := openSweepStore(t)
	old := time.Now().Add(-48 * time.Hour)
	for id, st := range map[string]store.Status{"done": store.Completed, "dead": store.Dead, "queued": store.Queued, "gone": store.Discarded} {
		m := &store.Message{ID: id, Flow: "f", Status: st, ReceivedAt: old, DueAt: old, Body: []byte("{}")}
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	fresh := &store.Message{ID: "fresh", Flow: "f", Status: store.Completed, ReceivedAt: time.Now(), Body: []byte("{}")}
	if err := s.Save(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("swept %d (%v), want 2", n, err)
	}
	for id, want := range map[string]bool{"done": false, "gone": false, "dead": true, "queued": true, "fresh": true} {
		_, err := s.Get(ctx, id)
		if (err == nil) != want {
			t.Errorf("%s: present=%v, want %v", id, err == nil, want)
		}
	}
}

// A finished message whose dedup key outlives the retention stays as long
// as the key: a duplicate must still get it, not be taken as new.
func TestBoltSweepKeepsLiveDedupHolders(t *testing.T) {
	s, ctx := openSweepStore(t)
	old := time.Now().Add(-48 * time.Hour)
	for id, ttl := range map[string]time.Duration{"held": 72 * time.Hour, "lapsed": time.Millisecond} {
		m := &store.Message{ID: id, Flow: "f", Status: store.Queued, DedupKey: "k-" + id, ReceivedAt: old, DueAt: old, Body: []byte("{}")}
		if _, err := s.Accept(ctx, m, ttl); err != nil {
			t.Fatal(err)
		}
		m.Status = store.Completed
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := s.Sweep(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want 1 (the one whose key lapsed)", n, err)
	}
	dup := &store.Message{ID: "again", Flow: "f", Status: store.Queued, DedupKey: "k-held", ReceivedAt: time.Now(), Body: []byte("{}")}
	existing, err := s.Accept(ctx, dup, 72*time.Hour)
	if err != nil || existing == nil || existing.ID != "held" {
		t.Errorf("a duplicate after the sweep: existing %v, err %v; want held", existing, err)
	}
}

func openSweepStore(t *testing.T) (*store.Bolt, context.Context) {
	s, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, context.Background()
}

// A sweep of more messages than one write deletes goes on in batches:
// every old finished message goes, and the count says how many.
func TestBoltSweepInBatches(t *testing.T) {
	s, ctx := openSweepStore(t)
	old := time.Now().Add(-48 * time.Hour)
	const n = 2500
	for i := range n {
		st := store.Completed
		if i%500 == 0 {
			st = store.Dead
		}
		m := &store.Message{ID: fmt.Sprintf("m%05d", i), Flow: "f", Status: st, ReceivedAt: old.Add(time.Duration(i)), DueAt: old, Body: []byte("{}")}
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	swept, err := s.Sweep(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || swept != n-n/500 {
		t.Fatalf("swept %d (%v), want %d", swept, err, n-n/500)
	}
	left, err := s.List(ctx, store.Filter{Flow: "f", Limit: 1000})
	if err != nil || len(left) != n/500 {
		t.Fatalf("%d left (%v), want the %d dead letters", len(left), err, n/500)
	}
	for _, m := range left {
		if m.Status != store.Dead {
			t.Errorf("%s left as %s", m.ID, m.Status)
		}
	}
}
