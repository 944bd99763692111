package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A store file written before the binary records (messages as JSON with
// the body inline) keeps working: its messages read back whole, and a
// write moves the body out without losing it.
func TestBoltReadsJSONRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	old := &Message{ID: "old", Flow: "f", Status: Queued, ReceivedAt: now, DueAt: now, Body: json.RawMessage(`{"sku":"A-1"}`)}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, _ := json.Marshal(old)
		if err := tx.Bucket(bMessages).Put([]byte("old"), b); err != nil {
			return err
		}
		if err := tx.Bucket(bJournal).Put(journalKey(old), nil); err != nil {
			return err
		}
		return tx.Bucket(bQueue).Put(queueKey("f", now, "old"), be(now))
	})
	if err != nil {
		t.Fatal(err)
	}
	leased, err := s.Lease(ctx, "f", time.Now(), 10)
	if err != nil || len(leased) != 1 || string(leased[0].Body) != `{"sku":"A-1"}` {
		t.Fatalf("lease of a JSON record = %+v, %v", leased, err)
	}
	m := leased[0]
	m.Status, m.State = Completed, json.RawMessage(`{"next":1}`)
	if err := s.Save(ctx, m); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = OpenBolt(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, "old")
	if err != nil || got.Status != Completed || string(got.Body) != `{"sku":"A-1"}` || string(got.State) != `{"next":1}` {
		t.Fatalf("after a write: %+v, %v", got, err)
	}
	if n, _, _ := s.Depth(ctx, "f"); n != 0 {
		t.Errorf("queue depth %d after completing the only message", n)
	}
}

// One failing or panicking write of a commit fails alone: the writes
// committed with it land, and the process lives on.
func TestBoltCommitIsolatesAFailingWrite(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(k string) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte(k), []byte("v")) }
	}
	boom := errors.New("boom")
	writes := []*boltWrite{
		{fn: put("a"), done: make(chan error, 1)},
		{fn: func(*bolt.Tx) error { return boom }, done: make(chan error, 1)},
		{fn: put("b"), done: make(chan error, 1)},
		{fn: func(*bolt.Tx) error { panic("bad write") }, done: make(chan error, 1)},
		{fn: put("c"), done: make(chan error, 1)},
	}
	s.commit(writes)
	for i, w := range writes {
		err := <-w.done
		if (i == 1 || i == 3) != (err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
	}
	for _, k := range []string{"a", "b", "c"} {
		if v, _ := s.GetMeta(context.Background(), k); string(v) != "v" {
			t.Errorf("write %q was lost with the failing ones", k)
		}
	}
}
