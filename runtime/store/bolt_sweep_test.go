package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
)

func TestBoltSweepKeepsDeadAndPending(t *testing.T) {
	s, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
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
