package store

import (
	"context"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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

// Recover requeues the messages whose record says running, and drops a
// running entry left beside a finished message instead of running that
// message again.
func TestRecoverRequeuesOnlyRunning(t *testing.T) {
	s, m := storeWithOne(t)
	ctx := context.Background()
	m.Status = Completed
	if err := s.Save(ctx, m); err != nil {
		t.Fatal(err)
	}
	run := &Message{ID: "m2", Flow: "f", Status: Running, ReceivedAt: time.Now(), DueAt: time.Now(), Body: []byte(`{}`)}
	if err := s.Save(ctx, run); err != nil { // a checkpoint of a running message
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { // a stale entry beside a completed message
		return tx.Bucket(bRunning).Put([]byte("m1"), []byte("f"))
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovered %d (%v); want 1, the running one", n, err)
	}
	got, err := s.Lease(ctx, "f", time.Now().Add(time.Second), 10)
	if err != nil || len(got) != 1 || got[0].ID != "m2" {
		t.Errorf("leased %v (%v); want m2 only", got, err)
	}
	if done, err := s.Get(ctx, "m1"); err != nil || done.Status != Completed {
		t.Errorf("m1 after recover: %+v %v; want it completed", done, err)
	}
}

// Sweep keeps a record it cannot read: it is not known to be finished,
// and deleting it left its queue entry behind for ever.
func TestSweepKeepsUnreadableRecords(t *testing.T) {
	s, m := storeWithOne(t)
	ctx := context.Background()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bMessages).Put([]byte(m.ID), []byte{0xff, 1, 2})
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("swept %d (%v); want 0", n, err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bMessages).Get([]byte(m.ID)) == nil {
			t.Error("the unreadable record was deleted")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A second process on one data directory is told why it cannot open the
// store: bbolt's own error was a bare "timeout".
func TestBoltInUseSaysSo(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = OpenBolt(dir) // flock is per open file: the same process is refused too
	if err == nil || !strings.Contains(err.Error(), "another process holds it") {
		t.Fatalf("second open: %v; want it to say another process holds the file", err)
	}
}
