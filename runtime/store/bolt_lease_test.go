package store

import (
	"context"
	"testing"
	"time"
)

// A worker's save whose commit lands after the message was saved again
// and leased anew (an admin replayed it meanwhile) must not end the new
// lease: a third worker would then get the message while the second runs
// it. Save's end of lease is replayed here at the moment it would come
// late.
func TestLateSaveKeepsTheNewLease(t *testing.T) {
	s, _ := storeWithOne(t)
	ctx := context.Background()
	first, err := s.Lease(ctx, "f", time.Now(), 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("first lease: %v %v", first, err)
	}
	workerLease := s.leaseOf("m1") // the first worker's Save reads it, then commits Dead ...

	replay := *first[0]
	replay.Status, replay.DueAt = Queued, time.Now()
	if err := s.Save(ctx, &replay); err != nil { // ... an admin replays it ...
		t.Fatal(err)
	}
	second, err := s.Lease(ctx, "f", time.Now().Add(time.Millisecond), 1) // ... a second worker takes it ...
	if err != nil || len(second) != 1 {
		t.Fatalf("second lease: %v %v", second, err)
	}
	s.endLease("m1", workerLease) // ... and the first worker's Save ends its lease, late

	if again, err := s.Lease(ctx, "f", time.Now().Add(time.Second), 1); err != nil || len(again) != 0 {
		t.Errorf("leased %d more while the second worker runs it (%v)", len(again), err)
	}
}

// A retry due past what a record can hold (a date centuries ahead) keeps
// one queue entry, which the message's next write finds and removes:
// the key was built from the wrapped time and the record from the
// clamped one, and the entry stayed behind for ever.
func TestFarFutureDueLeavesNoOrphan(t *testing.T) {
	s, m := storeWithOne(t)
	ctx := context.Background()
	m.Status, m.DueAt = Retrying, time.Now().AddDate(500, 0, 0)
	if err := s.Save(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Status = Completed
	if err := s.Save(ctx, m); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Depth(ctx, "f"); err != nil || n != 0 {
		t.Errorf("depth %d (%v) after the message completed; want 0", n, err)
	}
}

// storeWithOne opens a store holding one queued message, m1 of flow f.
func storeWithOne(t *testing.T) (*Bolt, *Message) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m := &Message{ID: "m1", Flow: "f", Status: Queued, ReceivedAt: time.Now(), DueAt: time.Now(), Body: []byte(`{}`)}
	if _, err := s.Accept(context.Background(), m, time.Hour); err != nil {
		t.Fatal(err)
	}
	return s, m
}
