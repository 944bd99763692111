package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded store: one bbolt file, one process. Writes from
// concurrent requests are grouped into one transaction and one fsync
// (bbolt's Batch), so accepting stays fast while every 202 is durable.
//
// Buckets:
//
//	messages  id -> Message (JSON)
//	queue     flow 0x00 due(8, big endian ns) id -> ""   due order per flow
//	running   id -> flow                                 leased messages
//	dedup     key -> dedupEntry (JSON)
//	journal   received(8) id -> ""                       newest-first listing
//	revisions flow 0x00 number(8) -> Revision (JSON)
//	audit     at(8) seq(8) -> AuditEntry (JSON)
//	meta      key -> value
type Bolt struct {
	db *bolt.DB
}

var (
	bMessages  = []byte("messages")
	bQueue     = []byte("queue")
	bRunning   = []byte("running")
	bDedup     = []byte("dedup")
	bJournal   = []byte("journal")
	bRevisions = []byte("revisions")
	bAudit     = []byte("audit")
	bMeta      = []byte("meta")
)

type dedupEntry struct {
	ID        string    `json:"id"`
	Expires   time.Time `json:"expires"`
	Confirmed bool      `json:"confirmed"`
}

// OpenBolt opens (creating) the store file conveyor.db in dir.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "conveyor.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", filepath.Join(dir, "conveyor.db"), err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMessages, bQueue, bRunning, bDedup, bJournal, bRevisions, bAudit, bMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Bolt{db: db}, nil
}

var _ Store = (*Bolt)(nil)

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }

func be(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return b[:]
}

func queueKey(flow string, due time.Time, id string) []byte {
	k := make([]byte, 0, len(flow)+1+8+len(id))
	k = append(k, flow...)
	k = append(k, 0)
	k = append(k, be(due)...)
	return append(k, id...)
}

func journalKey(m *Message) []byte { return append(be(m.ReceivedAt), m.ID...) }

func getMsg(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bMessages).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	m := &Message{}
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("store: message %s: %w", id, err)
	}
	return m, nil
}

// put writes m and keeps the queue and running index in step with its
// status. prev is the stored version, if any.
func put(tx *bolt.Tx, m *Message, prev *Message) error {
	q := tx.Bucket(bQueue)
	if prev != nil && (prev.Status == Queued || prev.Status == Retrying) {
		if err := q.Delete(queueKey(prev.Flow, prev.DueAt, prev.ID)); err != nil {
			return err
		}
	}
	switch m.Status {
	case Queued, Retrying:
		if err := q.Put(queueKey(m.Flow, m.DueAt, m.ID), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bRunning).Delete([]byte(m.ID)); err != nil {
			return err
		}
	case Running:
		if err := tx.Bucket(bRunning).Put([]byte(m.ID), []byte(m.Flow)); err != nil {
			return err
		}
	default:
		if err := tx.Bucket(bRunning).Delete([]byte(m.ID)); err != nil {
			return err
		}
	}
	if prev == nil {
		if err := tx.Bucket(bJournal).Put(journalKey(m), nil); err != nil {
			return err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bMessages).Put([]byte(m.ID), b)
}

// dedupHolder returns the live holder of key, if any.
func dedupHolder(tx *bolt.Tx, key string, now time.Time) (*dedupEntry, bool) {
	v := tx.Bucket(bDedup).Get([]byte(key))
	if v == nil {
		return nil, false
	}
	var e dedupEntry
	if json.Unmarshal(v, &e) != nil || now.After(e.Expires) {
		return nil, false
	}
	return &e, true
}

func putDedup(tx *bolt.Tx, key string, e dedupEntry) error {
	b, _ := json.Marshal(e)
	return tx.Bucket(bDedup).Put([]byte(key), b)
}

// Accept implements Store.
func (s *Bolt) Accept(ctx context.Context, m *Message, ttl time.Duration) (*Message, error) {
	var existing *Message
	err := s.db.Batch(func(tx *bolt.Tx) error {
		existing = nil // Batch may run this function again
		if prev, err := getMsg(tx, m.ID); err == nil {
			existing = prev
			return nil
		}
		now := time.Now()
		if m.DedupKey != "" {
			if e, held := dedupHolder(tx, m.DedupKey, now); held {
				prev, err := getMsg(tx, e.ID)
				if err == nil {
					existing = prev
					return nil
				}
			}
			if err := putDedup(tx, m.DedupKey, dedupEntry{ID: m.ID, Expires: now.Add(ttl), Confirmed: true}); err != nil {
				return err
			}
		}
		return put(tx, m, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("store: accept: %w", err)
	}
	return existing, nil
}

// due reports whether flow has a message due at now: a read-only look,
// so that idle dispatchers cost no write transaction (and no fsync).
func (s *Bolt) due(flow string, now time.Time) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(flow), 0)
		k, _ := tx.Bucket(bQueue).Cursor().Seek(prefix)
		found = k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k[len(prefix):len(prefix)+8], be(now)) <= 0
		return nil
	})
	return found
}

// Lease implements Store.
func (s *Bolt) Lease(ctx context.Context, flow string, now time.Time, n int) ([]*Message, error) {
	if !s.due(flow, now) {
		return nil, nil
	}
	var out []*Message
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		prefix := append([]byte(flow), 0)
		c := tx.Bucket(bQueue).Cursor()
		limit := be(now)
		var keys [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, _ = c.Next() {
			due := k[len(prefix) : len(prefix)+8]
			if bytes.Compare(due, limit) > 0 {
				break
			}
			m, err := getMsg(tx, string(k[len(prefix)+8:]))
			if err != nil {
				keys = append(keys, append([]byte(nil), k...)) // orphan index entry
				continue
			}
			keys = append(keys, append([]byte(nil), k...))
			out = append(out, m)
		}
		for _, k := range keys {
			if err := tx.Bucket(bQueue).Delete(k); err != nil {
				return err
			}
		}
		for _, m := range out {
			m.Status, m.UpdatedAt = Running, now
			prev := *m
			prev.Status = Running // the queue entry is already gone
			if err := put(tx, m, &prev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: lease: %w", err)
	}
	return out, nil
}

// Save implements Store.
func (s *Bolt) Save(ctx context.Context, m *Message) error {
	m.UpdatedAt = time.Now()
	err := s.db.Batch(func(tx *bolt.Tx) error {
		prev, err := getMsg(tx, m.ID)
		if err == ErrNotFound {
			prev = nil
		} else if err != nil {
			return err
		}
		return put(tx, m, prev)
	})
	if err != nil {
		return fmt.Errorf("store: save %s: %w", m.ID, err)
	}
	return nil
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, id string) (*Message, error) {
	var m *Message
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = getMsg(tx, id)
		return err
	})
	return m, err
}

// List implements Store.
func (s *Bolt) List(ctx context.Context, f Filter) ([]*Message, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var out []*Message
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bJournal).Cursor()
		since := be(f.Since)
		for k, _ := c.Last(); k != nil && len(out) < f.Limit; k, _ = c.Prev() {
			if !f.Since.IsZero() && bytes.Compare(k[:8], since) < 0 {
				break
			}
			m, err := getMsg(tx, string(k[8:]))
			if err != nil {
				continue
			}
			if (f.Flow != "" && m.Flow != f.Flow) || (f.Status != "" && m.Status != f.Status) || (f.Key != "" && m.DedupKey != f.Key) {
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Recover implements Store: in one process every running message belongs
// to a worker of a previous run.
func (s *Bolt) Recover(ctx context.Context) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		var ids []string
		_ = tx.Bucket(bRunning).ForEach(func(k, _ []byte) error { ids = append(ids, string(k)); return nil })
		for _, id := range ids {
			m, err := getMsg(tx, id)
			if err != nil {
				_ = tx.Bucket(bRunning).Delete([]byte(id))
				continue
			}
			prev := *m
			m.Status, m.DueAt = Queued, time.Now()
			if err := put(tx, m, &prev); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Depth implements Store.
func (s *Bolt) Depth(ctx context.Context, flow string) (int, time.Time, error) {
	n := 0
	var oldest time.Time
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(flow), 0)
		c := tx.Bucket(bQueue).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
			if m, err := getMsg(tx, string(k[len(prefix)+8:])); err == nil && (oldest.IsZero() || m.ReceivedAt.Before(oldest)) {
				oldest = m.ReceivedAt
			}
		}
		return nil
	})
	return n, oldest, err
}

// ClaimKey implements Store.
func (s *Bolt) ClaimKey(ctx context.Context, key, id string, ttl time.Duration) (string, bool, error) {
	holder, ok := "", false
	err := s.db.Batch(func(tx *bolt.Tx) error {
		if e, held := dedupHolder(tx, key, time.Now()); held {
			holder, ok = e.ID, false
			return nil
		}
		holder, ok = id, true
		return putDedup(tx, key, dedupEntry{ID: id, Expires: time.Now().Add(ttl)})
	})
	return holder, ok, err
}

// ConfirmKey implements Store.
func (s *Bolt) ConfirmKey(ctx context.Context, key, id string, ttl time.Duration) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if e, held := dedupHolder(tx, key, time.Now()); held && e.ID != id {
			return fmt.Errorf("dedup key %q is held by %s", key, e.ID)
		}
		return putDedup(tx, key, dedupEntry{ID: id, Expires: time.Now().Add(ttl), Confirmed: true})
	})
}

// ReleaseKey implements Store.
func (s *Bolt) ReleaseKey(ctx context.Context, key, id string) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if e, held := dedupHolder(tx, key, time.Now()); held && e.ID == id {
			return tx.Bucket(bDedup).Delete([]byte(key))
		}
		return nil
	})
}

func revKey(flow string, n int) []byte {
	k := append([]byte(flow), 0)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return append(k, b[:]...)
}

// AddRevision implements Store.
func (s *Bolt) AddRevision(ctx context.Context, r Revision) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bRevisions).Put(revKey(r.Flow, r.Number), b) })
}

// Revisions implements Store.
func (s *Bolt) Revisions(ctx context.Context, flow string) ([]Revision, error) {
	var out []Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(flow), 0)
		c := tx.Bucket(bRevisions).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r Revision
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// AppendAudit implements Store.
func (s *Bolt) AppendAudit(ctx context.Context, a AuditEntry) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bAudit)
		seq, _ := bk.NextSequence()
		var k [16]byte
		binary.BigEndian.PutUint64(k[:8], uint64(a.At.UnixNano()))
		binary.BigEndian.PutUint64(k[8:], seq)
		return bk.Put(k[:], b)
	})
}

// Audit implements Store.
func (s *Bolt) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []AuditEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var a AuditEntry
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// PutMeta implements Store.
func (s *Bolt) PutMeta(ctx context.Context, key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if value == nil {
			return tx.Bucket(bMeta).Delete([]byte(key))
		}
		return tx.Bucket(bMeta).Put([]byte(key), value)
	})
}

// GetMeta implements Store.
func (s *Bolt) GetMeta(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Sweep deletes finished messages (completed, filtered, failed, discarded)
// received before olderThan, and expired dedup keys. Dead letters and
// pending messages stay whatever their age.
func (s *Bolt) Sweep(ctx context.Context, olderThan time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		j, msgs := tx.Bucket(bJournal), tx.Bucket(bMessages)
		c := j.Cursor()
		cutoff := be(olderThan)
		var drop [][]byte
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
			m, err := getMsg(tx, string(k[8:]))
			if err == nil && (m.Status.Pending() || m.Status == Dead) {
				continue
			}
			drop = append(drop, append([]byte(nil), k...))
		}
		for _, k := range drop {
			if err := j.Delete(k); err != nil {
				return err
			}
			if err := msgs.Delete(k[8:]); err != nil {
				return err
			}
			n++
		}
		now := time.Now()
		var expired [][]byte
		_ = tx.Bucket(bDedup).ForEach(func(k, v []byte) error {
			var e dedupEntry
			if json.Unmarshal(v, &e) != nil || now.After(e.Expires) {
				expired = append(expired, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range expired {
			if err := tx.Bucket(bDedup).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
