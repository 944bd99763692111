package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded store: one bbolt file, one process. Writes from
// concurrent requests are grouped into one transaction and one fsync
// (group commit, see batch), so accepting stays fast while every 202 is
// durable.
//
// Buckets:
//
//	messages  id -> Message without its body (binary, codec.go)
//	bodies    id -> body                                 written once, at the first write
//	queue     flow 0x00 due(8, big endian ns) id -> received(8)   due order per flow
//	running   id -> flow                                 leased messages
//	dedup     key -> dedupEntry (binary, codec.go)       a key longer than bbolt takes: "#sha256:" digest
//	journal   received(8) id -> ""                       newest-first listing
//	revisions flow 0x00 number(8) -> Revision (JSON)
//	audit     at(8) seq(8) -> AuditEntry (JSON)
//	meta      key -> value
//
// Two things live in memory only, because losing them in a crash is
// harmless: leases (a crash leaves leased messages in the queue, and the
// next start hands them out again) and sync dedup claims that are still
// pending (a crash ends the run that claimed them, and a pending claim
// must then be released anyway). Neither costs a write.
type Bolt struct {
	db     *bolt.DB
	writes chan *boltWrite // to the committer (see batch)
	quit   chan struct{}
	closed sync.Once

	mu      sync.Mutex
	leased  map[string]uint64       // message ids handed out by Lease -> which lease
	leases  uint64                  // leases handed out so far
	pending map[string]pendingClaim // sync dedup key -> claim not yet confirmed
}

// boltWrite is one write waiting for the committer.
type boltWrite struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the committer never blocks on it
}

// maxCommit bounds the writes of one commit.
const maxCommit = 2048

type pendingClaim struct {
	id      string
	expires time.Time
}

var (
	bMessages  = []byte("messages")
	bBodies    = []byte("bodies")
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
	// Released: the sync run ID failed and let the key go; the sender's
	// retry claims it as that run (see Store.ClaimKey). Nobody holds it.
	Released bool `json:"released,omitempty"`
}

// OpenBolt opens (creating) the store file conveyor.db in dir.
func OpenBolt(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// The freelist is rebuilt at open instead of written at every commit,
	// and kept as a map: both are what etcd runs bbolt with for writes.
	db, err := bolt.Open(filepath.Join(dir, "conveyor.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) { // the file lock: bbolt says only "timeout"
		return nil, fmt.Errorf("store: open %s: %w: another process holds it (is a conveyor serve already running on this data directory?)", filepath.Join(dir, "conveyor.db"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", filepath.Join(dir, "conveyor.db"), err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMessages, bBodies, bQueue, bRunning, bDedup, bJournal, bRevisions, bAudit, bMeta} {
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
	s := &Bolt{db: db, leased: map[string]uint64{}, pending: map[string]pendingClaim{},
		writes: make(chan *boltWrite, maxCommit), quit: make(chan struct{})}
	go s.committer()
	return s, nil
}

// batch runs fn in a write transaction shared with the writes that wait
// with it: group commit, one fsync for all. Nothing waits to fill a
// commit: a lone write commits at once, and the writes that arrive while
// a commit runs make up the next, so under load the commits are as large
// as the load (bbolt's own Batch groups only the callers that arrive
// within its delay, and holds a lone write for the delay). fn may run
// twice: when a write of its commit fails, each is retried alone.
func (s *Bolt) batch(fn func(*bolt.Tx) error) error {
	w := &boltWrite{fn: fn, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-s.quit:
		return bolt.ErrDatabaseNotOpen
	}
	select {
	case err := <-w.done:
		return err
	case <-s.quit: // closed meanwhile: the write may or may not have landed
		return bolt.ErrDatabaseNotOpen
	}
}

func (s *Bolt) committer() {
	group := make([]*boltWrite, 0, maxCommit)
	for {
		select {
		case <-s.quit:
			return
		case w := <-s.writes:
			group = takeReady(append(group[:0], w), s.writes)
		}
		s.commit(group)
	}
}

// commit writes group in one transaction. When a write fails, the others
// commit together without it, and then it runs once more in a
// transaction of its own (it may have failed only because of a write
// before it) and gets that outcome, as with bbolt's Batch. A panicking
// write fails instead of taking the process down.
func (s *Bolt) commit(group []*boltWrite) {
	var failed []*boltWrite
	for len(group) > 0 {
		at := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, w := range group {
				if err := safely(w.fn, tx); err != nil {
					at = i
					return err
				}
			}
			return nil
		})
		if at < 0 || len(group) == 1 {
			for _, w := range group {
				w.done <- err
			}
			break
		}
		failed = append(failed, group[at])
		group = append(group[:at:at], group[at+1:]...)
	}
	for _, w := range failed {
		w.done <- s.db.Update(func(tx *bolt.Tx) error { return safely(w.fn, tx) })
	}
}

func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: a write panicked: %v", p)
		}
	}()
	return fn(tx)
}

var _ Store = (*Bolt)(nil)

// Close closes the file.
func (s *Bolt) Close() error {
	s.closed.Do(func() { close(s.quit) })
	return s.db.Close()
}

// be is t as a key part that sorts as time does, clamped as records
// clamp times (codec.go): a wrapped time would give a key that the
// message's next write, from its clamped record, could not find.
func be(t time.Time) []byte {
	switch {
	case t.Before(minTime):
		t = minTime
	case t.After(maxTime):
		t = maxTime
	}
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
	m, err := read(tx, id, decodeMessage)
	if err == nil && m.Body == nil {
		if b := tx.Bucket(bBodies).Get([]byte(id)); b != nil {
			m.Body = append(json.RawMessage(nil), b...)
		}
	}
	return m, err
}

// getHead reads the queue fields of a stored message (see decodeHead).
func getHead(tx *bolt.Tx, id string) (*Message, error) { return read(tx, id, decodeHead) }

func read(tx *bolt.Tx, id string, decode func([]byte) (*Message, error)) (*Message, error) {
	v := tx.Bucket(bMessages).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	m, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("store: message %s: %w", id, err)
	}
	return m, nil
}

// put writes m and keeps the queue and running index in step with its
// status. prev is the stored version, if any.
func put(tx *bolt.Tx, m *Message, prev *Message) error {
	if m.DueAt.IsZero() && (m.Status == Queued || m.Status == Retrying) {
		m.DueAt = time.Now() // as the Redis store does; a zero time would sort last
	}
	q := tx.Bucket(bQueue)
	if prev != nil && (prev.Status == Queued || prev.Status == Retrying) {
		if err := q.Delete(queueKey(prev.Flow, prev.DueAt, prev.ID)); err != nil {
			return err
		}
	}
	switch m.Status {
	case Queued, Retrying:
		if err := q.Put(queueKey(m.Flow, m.DueAt, m.ID), be(m.ReceivedAt)); err != nil {
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
		if err := denseBucket(tx, bJournal).Put(journalKey(m), nil); err != nil {
			return err
		}
	}
	// The body never changes: it is written once, so that a checkpoint
	// rewrites the small record, not the payload. (A record of an older
	// store that holds its body inline moves it out on its next write.)
	if prev == nil || prev.Body != nil {
		if err := denseBucket(tx, bBodies).Put([]byte(m.ID), m.Body); err != nil {
			return err
		}
	}
	rec := *m
	rec.Body = nil
	return denseBucket(tx, bMessages).Put([]byte(m.ID), encodeMessage(&rec))
}

// denseBucket returns a bucket whose new keys mostly come in ascending
// order, told to fill its pages before splitting them: journal keys start
// with the receive time, and the ids of HTTP messages are time-ordered
// UUIDv7 (the other triggers derive their ids, which land anywhere). At
// bbolt's default of half-full pages every commit rewrote twice the pages
// it needed: a sync run's journal write costs a fifth less CPU.
func denseBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	b := tx.Bucket(name)
	b.FillPercent = 0.95
	return b
}

// dedupHolder returns the live holder of key, if any: a key released to
// a retry has none.
func dedupHolder(tx *bolt.Tx, key string, now time.Time) (*dedupEntry, bool) {
	e, live := dedupLive(tx, key, now)
	return e, live && !e.Released
}

// dedupLive returns the entry of key unless it expired.
func dedupLive(tx *bolt.Tx, key string, now time.Time) (*dedupEntry, bool) {
	return liveDedup(tx.Bucket(bDedup).Get(dedupBucketKey(key)), now)
}

// liveDedup decodes v, a stored dedup entry (nil: none), unless it
// expired or cannot be read.
func liveDedup(v []byte, now time.Time) (*dedupEntry, bool) {
	if v == nil {
		return nil, false
	}
	e, err := decodeDedup(v)
	if err != nil || now.After(e.Expires) {
		return nil, false
	}
	return &e, true
}

func putDedup(tx *bolt.Tx, key string, e dedupEntry) error {
	return tx.Bucket(bDedup).Put(dedupBucketKey(key), encodeDedup(e))
}

// dedupBucketKey is key as a key of the dedup bucket: the key itself, or
// the digest of a key longer than bbolt takes (a key expression on a
// whole body may give one), so the write does not fail for good.
func dedupBucketKey(key string) []byte {
	if len(key) <= bolt.MaxKeySize {
		return []byte(key)
	}
	h := sha256.Sum256([]byte(key))
	return []byte("#sha256:" + hex.EncodeToString(h[:]))
}

// Accept implements Store.
func (s *Bolt) Accept(ctx context.Context, m *Message, ttl time.Duration) (*Message, error) {
	var existing *Message
	err := s.batch(func(tx *bolt.Tx) error {
		existing = nil // batch may run this function again
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

// Lease implements Store. It reads the queue without writing: the lease
// is kept in memory (see Bolt), so handing out messages costs no commit.
func (s *Bolt) Lease(ctx context.Context, flow string, now time.Time, n int) ([]*Message, error) {
	var out []*Message
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(flow), 0)
		c := tx.Bucket(bQueue).Cursor()
		limit := be(now)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, _ = c.Next() {
			if bytes.Compare(k[len(prefix):len(prefix)+8], limit) > 0 {
				break
			}
			if s.leased[string(k[len(prefix)+8:])] != 0 { // no allocation for the skipped
				continue
			}
			id := string(k[len(prefix)+8:])
			m, err := getMsg(tx, id)
			if err != nil {
				continue // an orphan index entry; the next Save of that id cleans it
			}
			m.Status, m.UpdatedAt = Running, now
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: lease: %w", err)
	}
	for _, m := range out {
		s.leases++
		s.leased[m.ID] = s.leases
	}
	return out, nil
}

// Save implements Store.
func (s *Bolt) Save(ctx context.Context, m *Message) error {
	// The lease this write ends, if any: by the time the commit is back
	// the message may have been saved again (an admin's replay) and
	// leased anew, and that lease is not this write's to end.
	lease := s.leaseOf(m.ID)
	m.UpdatedAt = time.Now()
	err := s.batch(func(tx *bolt.Tx) error {
		prev, err := getHead(tx, m.ID)
		if err == ErrNotFound {
			prev = nil
		} else if err != nil {
			return err
		}
		if m.Expect != "" && (prev == nil || prev.Status != m.Expect ||
			m.read != "" && string(tx.Bucket(bMessages).Get([]byte(m.ID))) != m.read) {
			return ErrChanged
		}
		return put(tx, m, prev)
	})
	if err != nil {
		return fmt.Errorf("store: save %s: %w", m.ID, err)
	}
	if m.Status != Running {
		s.endLease(m.ID, lease)
	}
	return nil
}

// leaseOf returns which lease of id is current (0: none).
func (s *Bolt) leaseOf(id string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leased[id]
}

// endLease ends lease of id, unless id was leased anew since.
func (s *Bolt) endLease(id string, lease uint64) {
	s.mu.Lock()
	if s.leased[id] == lease {
		delete(s.leased, id)
	}
	s.mu.Unlock()
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, id string) (*Message, error) {
	var m *Message
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if m, err = getMsg(tx, id); err == nil {
			m.read = string(tx.Bucket(bMessages).Get([]byte(id)))
		}
		return err
	})
	if err == nil && m.Status.Pending() {
		s.mu.Lock()
		if s.leased[id] != 0 {
			m.Status = Running
		}
		s.mu.Unlock()
	}
	return m, err
}

// List implements Store. A leased message is listed as running, as Get
// reports it.
func (s *Bolt) List(ctx context.Context, f Filter) ([]*Message, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	leased := s.leasedIDs()
	var out []*Message
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bJournal).Cursor()
		since := be(f.Since)
		k, _ := c.Last()
		if f.After != nil { // the journal key below the cursor's
			if k, _ = c.Seek(append(be(f.After.At), f.After.ID...)); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && len(out) < f.Limit; k, _ = c.Prev() {
			if !f.Since.IsZero() && bytes.Compare(k[:8], since) < 0 {
				break
			}
			m, err := getMsg(tx, string(k[8:]))
			if err != nil {
				continue
			}
			if m.Status.Pending() && leased[m.ID] {
				m.Status = Running
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
			// Only a message whose record says running goes back to the
			// queue: an entry left beside any other status (or none) is
			// stale, and requeuing a finished message would run it again.
			m, err := getMsg(tx, id)
			if err != nil || m.Status != Running {
				if err := tx.Bucket(bRunning).Delete([]byte(id)); err != nil {
					return err
				}
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

// Depth implements Store. Queue entries carry their message's receive
// time, so a scrape decodes no message.
func (s *Bolt) Depth(ctx context.Context, flow string) (int, time.Time, error) {
	n := 0
	var oldest time.Time
	leased := s.leasedIDs()
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(flow), 0)
		c := tx.Bucket(bQueue).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if leased[string(k[len(prefix)+8:])] {
				continue
			}
			if len(v) == 8 {
				if at := time.Unix(0, int64(binary.BigEndian.Uint64(v))); oldest.IsZero() || at.Before(oldest) {
					oldest = at
				}
			}
			n++
		}
		return nil
	})
	return n, oldest, err
}

// leasedIDs copies the set of leased message ids. It is taken before a
// read transaction, not inside one: taking s.mu inside would invert the
// order Lease and ClaimKey take them in, and a commit waiting to remap
// the file between the two would block all three.
func (s *Bolt) leasedIDs() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	leased := make(map[string]bool, len(s.leased))
	for id := range s.leased {
		leased[id] = true
	}
	return leased
}

// ClaimKey implements Store. A claim is pending in memory until the run
// confirms it (one commit, with the journal: Finish) or releases it.
func (s *Bolt) ClaimKey(ctx context.Context, key, id string, ttl time.Duration) (string, bool, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pending[key]; ok && now.Before(p.expires) {
		return p.id, false, nil
	}
	var holder string
	err := s.db.View(func(tx *bolt.Tx) error {
		if e, live := dedupLive(tx, key, now); live && !e.Released {
			holder = e.ID
		} else if live {
			id = e.ID // a failed run's: this claim resumes it
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	if holder != "" {
		return holder, false, nil
	}
	s.pending[key] = pendingClaim{id: id, expires: now.Add(ttl)}
	return id, true, nil
}

// ConfirmKey implements Store.
func (s *Bolt) ConfirmKey(ctx context.Context, key, id string, ttl time.Duration) error {
	s.mu.Lock()
	p, ok := s.pending[key]
	s.mu.Unlock()
	if ok && p.id != id && time.Now().Before(p.expires) {
		return fmt.Errorf("dedup key %q is held by %s", key, p.id)
	}
	err := s.batch(func(tx *bolt.Tx) error { return confirm(tx, key, id, ttl) })
	s.unpend(key, id)
	return err
}

func confirm(tx *bolt.Tx, key, id string, ttl time.Duration) error {
	if e, held := dedupHolder(tx, key, time.Now()); held && e.ID != id {
		return fmt.Errorf("dedup key %q is held by %s", key, e.ID)
	}
	return putDedup(tx, key, dedupEntry{ID: id, Expires: time.Now().Add(ttl), Confirmed: true})
}

func (s *Bolt) unpend(key, id string) {
	s.mu.Lock()
	if p, ok := s.pending[key]; ok && p.id == id {
		delete(s.pending, key)
	}
	s.mu.Unlock()
}

// ReleaseKey implements Store.
func (s *Bolt) ReleaseKey(ctx context.Context, key, id string) error {
	s.unpend(key, id)
	held := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		e, ok := dedupHolder(tx, key, time.Now())
		held = ok && e.ID == id
		return nil
	})
	if !held {
		return nil
	}
	return s.batch(func(tx *bolt.Tx) error {
		if e, ok := dedupHolder(tx, key, time.Now()); ok && e.ID == id {
			return tx.Bucket(bDedup).Delete(dedupBucketKey(key))
		}
		return nil
	})
}

// Finish journals a sync run and, in the same commit, confirms its dedup
// key for ttl (completed or filtered: a duplicate gets the cached
// response) or releases it to the run for ttl (any other status: the
// sender's retry runs, as this run; see Store.ClaimKey).
func (s *Bolt) Finish(ctx context.Context, m *Message, ttl time.Duration) error {
	m.UpdatedAt = time.Now()
	err := s.batch(func(tx *bolt.Tx) error {
		prev, err := getHead(tx, m.ID)
		if err == ErrNotFound {
			prev = nil
		} else if err != nil {
			return err
		}
		if err := put(tx, m, prev); err != nil {
			return err
		}
		if m.DedupKey == "" {
			return nil
		}
		e, held := dedupHolder(tx, m.DedupKey, time.Now())
		if m.Status == Completed || m.Status == Filtered {
			if held && e.ID != m.ID {
				return nil // taken over after this run's claim lapsed: journaled, not confirmed (as Redis)
			}
			return putDedup(tx, m.DedupKey, dedupEntry{ID: m.ID, Expires: time.Now().Add(ttl), Confirmed: true})
		}
		if held && e.ID != m.ID {
			return nil // taken over after this run's claim lapsed
		}
		return putDedup(tx, m.DedupKey, dedupEntry{ID: m.ID, Expires: time.Now().Add(ttl), Released: true})
	})
	if m.DedupKey != "" {
		s.unpend(m.DedupKey, m.ID)
	}
	if err != nil {
		return fmt.Errorf("store: finish %s: %w", m.ID, err)
	}
	return nil
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

// Revision implements Store.
func (s *Bolt) Revision(ctx context.Context, flow string, n int) (*Revision, error) {
	var r *Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bRevisions).Cursor()
		var k, v []byte
		if n > 0 {
			k, v = c.Seek(revKey(flow, n))
			if !bytes.Equal(k, revKey(flow, n)) {
				return ErrNotFound
			}
		} else {
			// The last key of the flow's range: the one before the first
			// key past it (flow 0x01 sorts after every flow 0x00 number).
			if k, _ = c.Seek(append([]byte(flow), 1)); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
			if k == nil || !bytes.HasPrefix(k, append([]byte(flow), 0)) {
				return ErrNotFound
			}
		}
		r = new(Revision)
		return json.Unmarshal(v, r)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
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

// SwapMeta implements Store.
func (s *Bolt) SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error) {
	ok := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		if !sameMeta(b.Get([]byte(key)), old) {
			return nil
		}
		ok = true
		if value == nil {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), value)
	})
	return ok && err == nil, err
}

// sameMeta reports whether a stored meta value (nil: absent) is want.
func sameMeta(stored, want []byte) bool {
	return (stored == nil) == (want == nil) && bytes.Equal(stored, want)
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
// pending messages stay whatever their age, and so does a message whose
// dedup key is live (a dedup TTL longer than the retention): a duplicate
// must still find what it duplicates. A record that cannot be read stays
// too: deleting it would leave its queue entry behind.
//
// The candidates are found in a read transaction, which writers do not
// wait for, and deleted sweepBatch at a time, each checked again in its
// write: a sweep of a million old messages never holds the file's one
// writer for long, so accepting goes on meanwhile.
func (s *Bolt) Sweep(ctx context.Context, olderThan time.Time) (int, error) {
	var drop, expired [][]byte
	now := time.Now()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bJournal).Cursor()
		cutoff := be(olderThan)
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
			if sweepable(tx, string(k[8:]), now) {
				drop = append(drop, append([]byte(nil), k...))
			}
		}
		return tx.Bucket(bDedup).ForEach(func(k, v []byte) error {
			if _, live := liveDedup(v, now); !live {
				expired = append(expired, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for batch := range slices.Chunk(drop, sweepBatch) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		deleted := 0
		err := s.batch(func(tx *bolt.Tx) error {
			deleted = 0 // batch may run this function again
			for _, k := range batch {
				id := k[8:]
				if !sweepable(tx, string(id), time.Now()) {
					continue // written since the scan
				}
				deleted++
				if err := errors.Join(tx.Bucket(bJournal).Delete(k), tx.Bucket(bMessages).Delete(id), tx.Bucket(bBodies).Delete(id)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += deleted
	}
	for batch := range slices.Chunk(expired, sweepBatch) {
		err := s.batch(func(tx *bolt.Tx) error {
			for _, k := range batch {
				if _, live := liveDedup(tx.Bucket(bDedup).Get(k), time.Now()); live {
					continue // claimed again since the scan
				}
				if err := tx.Bucket(bDedup).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sweepBatch is how many records one write of Sweep deletes.
const sweepBatch = 1000

// sweepable reports whether message id is finished and may go: not pending
// nor dead, readable, and not the holder of a live dedup key (a released
// key's retry resumes that run, with its memo).
func sweepable(tx *bolt.Tx, id string, now time.Time) bool {
	m, err := read(tx, id, decodeMessage)
	if err != nil || m.Status.Pending() || m.Status == Dead {
		return false
	}
	if m.DedupKey != "" {
		if e, live := dedupLive(tx, m.DedupKey, now); live && e.ID == m.ID {
			return false
		}
	}
	return true
}
