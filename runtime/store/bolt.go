package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded store: one bbolt file, one process, with a
// write-ahead log in front of it.
//
// A write is durable once its frame in the log (wal.go) is synced; the
// writes of concurrent requests share a frame and a sync (group commit,
// see batch). What the log holds and the file does not yet is kept in
// memory (the overlay), where every read looks first. An applier copies
// the overlay into the file in the background, hundreds of writes per
// bbolt transaction, and then deletes the log segments it covered. A
// bbolt transaction costs CPU for every page it touches, however few
// writes share it: a commit per group of requests (the 15–30 in flight)
// spent 2–3 times the CPU per write of one per several hundred, and a
// message saved several times before the applier runs is written to the
// file once. At open, the segments left by a crash are replayed.
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
// Revisions, audit entries and meta settings are rare and written to the
// file directly. Two things live in memory only, because losing them in
// a crash is harmless: leases (a crash leaves leased messages in the
// queue, and the next start hands them out again) and sync dedup claims
// that are still pending (a crash ends the run that claimed them, and a
// pending claim must then be released anyway). Neither costs a write.
type Bolt struct {
	db         *bolt.DB
	wal        wal
	writes     chan *boltWrite // to the committer (see batch)
	applies    chan *applyJob  // committer -> applier
	applied    chan error      // applier -> committer: how the job went
	quit       chan struct{}
	stop       sync.Once // closes quit
	committing sync.WaitGroup
	applying   sync.WaitGroup
	closed     sync.Once
	closeErr   error

	holdApply atomic.Bool // tests: keep everything in the log

	ovMu sync.RWMutex
	ov   overlay // durable in the log, not yet in the file; written by the committer, forgotten by the applier

	mu        sync.Mutex
	leased    map[string]uint64       // message ids handed out by Lease -> which lease
	leaseFrom map[string]leaseHint    // flow -> where Lease starts (see Lease)
	leases    uint64                  // leases handed out so far
	pending   map[string]pendingClaim // sync dedup key -> claim not yet confirmed
}

// boltWrite is one write waiting for the committer.
type boltWrite struct {
	fn   func(*snap) error
	done chan error // buffered: the committer never blocks on it
}

const (
	// maxCommit bounds the writes of one commit.
	maxCommit = 2048
	// applyAt is how many overlay entries start an apply at once;
	// below it, an apply starts every applyEvery. The CPU per write
	// levels off at about a hundred writes per transaction.
	applyAt    = 512
	applyEvery = 100 * time.Millisecond
)

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

// OpenBolt opens (creating) the store file conveyor.db in dir, and
// replays into it what the write-ahead log in conveyor.wal holds.
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
	s := &Bolt{db: db, leased: map[string]uint64{}, leaseFrom: map[string]leaseHint{}, pending: map[string]pendingClaim{}, ov: newOverlay(),
		writes: make(chan *boltWrite, maxCommit), quit: make(chan struct{}),
		applies: make(chan *applyJob, 1), applied: make(chan error, 1),
		wal: wal{dir: filepath.Join(dir, "conveyor.wal")}}
	if err == nil {
		err = s.replay()
	}
	if err != nil {
		s.wal.close()
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	s.committing.Add(1)
	s.applying.Add(1)
	go s.committer()
	go s.applier()
	return s, nil
}

// replay applies the log's segments to the file, oldest first, and
// starts a new segment after them.
func (s *Bolt) replay() error {
	if err := os.MkdirAll(s.wal.dir, 0o750); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(s.wal.dir)); err != nil { // the log's own name, on its first open
		return err
	}
	segs, err := readLog(s.wal.dir)
	if err != nil {
		return err
	}
	// Segment numbers never repeat: a spare's stale frames must not
	// check out as a new segment's.
	_, top := spares(s.wal.dir)
	next := top + 1
	for _, sg := range segs {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, f := range sg.frames {
				ops, err := decodeOps(f)
				if err != nil {
					return err
				}
				for _, op := range ops {
					if err := applyOp(tx, op); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write-ahead log %s: %w", filepath.Join(s.wal.dir, segmentName(sg.seq)), err)
		}
		next = max(next, sg.seq+1)
	}
	// Everything is in the file: the segments are retired before a new
	// one starts, so a torn frame never has a newer segment after it.
	if err := s.wal.removeBefore(next); err != nil {
		return err
	}
	return s.wal.create(next)
}

// batch runs fn in a commit shared with the writes that wait with it:
// group commit, one frame and one sync for all. Nothing waits to fill a
// commit: a lone write commits at once, and the writes that arrive while
// a commit runs make up the next, so under load the commits are as large
// as the load. fn stages its changes on sn; they are seen by the writes
// after it, and by readers once the frame is synced.
func (s *Bolt) batch(fn func(sn *snap) error) error {
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
	defer s.committing.Done()
	group := make([]*boltWrite, 0, maxCommit)
	tick := time.NewTicker(applyEvery)
	defer tick.Stop()
	applying := false
	// After a failed apply (a full disk), the next waits: from a second
	// up to half a minute.
	var retryAt time.Time
	backoff := time.Second
	for {
		select {
		case <-s.quit:
			return
		case err := <-s.applied:
			applying = false
			if err != nil {
				slog.Error("store: applying the write-ahead log to the file failed; it stays in the log and is tried again",
					"err", err, "retry_in", backoff)
				retryAt, backoff = time.Now().Add(backoff), min(2*backoff, 30*time.Second)
			} else {
				backoff = time.Second
			}
			continue
		case <-tick.C:
		case w := <-s.writes:
			group = takeReady(append(group[:0], w), s.writes)
			s.commit(group)
		}
		if !applying && !s.holdApply.Load() && !time.Now().Before(retryAt) {
			s.ovMu.RLock()
			n := s.ov.size()
			s.ovMu.RUnlock()
			if n >= applyAt || n > 0 && len(group) == 0 {
				s.startApply()
				applying = true
			}
		}
		group = group[:0]
	}
}

// commit stages the writes of group, each over the ones before it, syncs
// their operations as one frame, and makes them visible. A write that
// fails or panics is undone and fails alone; the others commit.
func (s *Bolt) commit(group []*boltWrite) {
	st := &overlay{msgs: map[string]*ovMsg{}, dedup: map[string]*ovDedup{}}
	var frames [][]byte
	ops := &enc{}
	errs := make([]error, len(group))
	s.ovMu.RLock()
	err := s.db.View(func(tx *bolt.Tx) error {
		for i, w := range group {
			sn := &snap{tx: tx, ov: &s.ov, st: st, ops: ops}
			mark := len(ops.b)
			if errs[i] = safely(w.fn, sn); errs[i] != nil {
				for _, undo := range slices.Backward(sn.undo) {
					undo()
				}
				ops.b = ops.b[:mark]
			}
			if len(ops.b) >= maxFrameBytes {
				frames, ops = append(frames, ops.b), &enc{}
			}
		}
		return nil
	})
	s.ovMu.RUnlock()
	if len(ops.b) > 0 {
		frames = append(frames, ops.b)
	}
	if err == nil && len(frames) > 0 {
		err = s.wal.append(frames...)
	}
	if err == nil && st.size() > 0 {
		s.ovMu.Lock()
		s.ov.merge(st)
		s.ovMu.Unlock()
	}
	for i, w := range group {
		if err != nil {
			w.done <- err
		} else {
			w.done <- errs[i]
		}
	}
}

func safely(fn func(*snap) error, sn *snap) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: a write panicked: %v", p)
		}
	}()
	return fn(sn)
}

// applyJob is what one apply copies into the file: the overlay as it was
// when the job started, whose operations are all in the segments below
// before.
type applyJob struct {
	msgs   map[string]*ovMsg
	dedup  map[string]*ovDedup
	before uint64
}

// startApply hands the overlay to the applier. Later commits go to a new
// segment, so that the segments before can be deleted once the job is in
// the file. The committer calls it only while the applier is idle, so the
// overlay changes under it only by the committer's own merges.
func (s *Bolt) startApply() {
	before := s.wal.seq
	if err := s.wal.create(s.wal.seq + 1); err != nil {
		slog.Warn("store: cannot start a new write-ahead log segment; the current one grows", "err", err)
	} else {
		before = s.wal.seq
	}
	s.ovMu.RLock()
	job := &applyJob{msgs: maps.Clone(s.ov.msgs), dedup: maps.Clone(s.ov.dedup), before: before}
	s.ovMu.RUnlock()
	s.applies <- job
}

func (s *Bolt) applier() {
	defer s.applying.Done()
	for job := range s.applies {
		s.applied <- s.apply(job)
	}
}

// apply writes job into the file in one transaction, forgets the overlay
// entries that were not written again meanwhile, and deletes the log
// segments the job covers.
func (s *Bolt) apply(job *applyJob) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for id, e := range job.msgs {
			if err := applyMsg(tx, id, e); err != nil {
				return err
			}
		}
		d := tx.Bucket(bDedup)
		for k, e := range job.dedup {
			var err error
			if e.v == nil {
				err = d.Delete([]byte(k))
			} else {
				err = d.Put([]byte(k), e.v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.ovMu.Lock()
	s.ov.forget(job)
	s.ovMu.Unlock()
	return s.wal.removeBefore(job.before)
}

// Close applies what the log holds to the file, deletes the log and
// closes the file. A write still waiting fails.
func (s *Bolt) Close() error {
	s.closed.Do(func() {
		s.stopCommitter()
		close(s.applies)
		s.applying.Wait()
		select {
		case err := <-s.applied: // the result of an apply the committer left running
			if err != nil {
				slog.Error("store: applying the write-ahead log to the file failed; it stays in the log", "err", err)
			}
		default:
		}
		err := s.apply(&applyJob{msgs: maps.Clone(s.ov.msgs), dedup: maps.Clone(s.ov.dedup), before: s.wal.seq})
		err = errors.Join(err, s.wal.close())
		if err == nil { // everything is in the file: the newest segment goes too
			err = s.wal.removeBefore(s.wal.seq + 1)
		}
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}

// stopCommitter makes writes fail from now on and waits for the commit
// under way, if any, to end.
func (s *Bolt) stopCommitter() {
	s.stop.Do(func() { close(s.quit) })
	s.committing.Wait()
}

// overlay holds the newest state of what the log has and the file may
// not have yet: messages and dedup entries, each a complete new state
// (nil record or value: deleted). Entries are never changed once made:
// a new write makes a new entry, so the applier can tell whether the one
// it wrote is still the newest.
type overlay struct {
	msgs  map[string]*ovMsg
	dedup map[string]*ovDedup // by dedup bucket key
	// queued indexes the queued and retrying entries by flow, for
	// Lease and Depth (only in the committed overlay).
	queued map[string]map[string]*ovMsg
	gen    uint64 // applies so far (see Lease)
}

type ovMsg struct {
	m       *Message // the queue and listing fields: id, flow, status, due, received, dedup key; nil when deleted
	rec     []byte   // the stored record (encodeMessage, without body); nil when deleted
	body    []byte
	hasBody bool // the file has no body for it yet: body is to be written
}

type ovDedup struct{ v []byte } // nil: deleted

func newOverlay() overlay {
	return overlay{msgs: map[string]*ovMsg{}, dedup: map[string]*ovDedup{}, queued: map[string]map[string]*ovMsg{}}
}

func (o *overlay) size() int { return len(o.msgs) + len(o.dedup) }

func (e *ovMsg) isQueued() bool {
	return e.m != nil && (e.m.Status == Queued || e.m.Status == Retrying)
}

// merge takes in the entries a commit staged.
func (o *overlay) merge(st *overlay) {
	for id, e := range st.msgs {
		if old := o.msgs[id]; old != nil && old.isQueued() {
			o.unqueue(id, old)
		}
		o.msgs[id] = e
		if e.isQueued() {
			q := o.queued[e.m.Flow]
			if q == nil {
				q = map[string]*ovMsg{}
				o.queued[e.m.Flow] = q
			}
			q[id] = e
		}
	}
	maps.Copy(o.dedup, st.dedup)
}

func (o *overlay) unqueue(id string, e *ovMsg) {
	if q := o.queued[e.m.Flow]; q[id] == e {
		delete(q, id)
		if len(q) == 0 {
			delete(o.queued, e.m.Flow)
		}
	}
}

// forget drops the entries of job that are still the newest: the file
// holds them now.
func (o *overlay) forget(job *applyJob) {
	o.gen++
	for id, e := range job.msgs {
		if o.msgs[id] == e {
			delete(o.msgs, id)
			if e.isQueued() {
				o.unqueue(id, e)
			}
		}
	}
	for k, e := range job.dedup {
		if o.dedup[k] == e {
			delete(o.dedup, k)
		}
	}
}

// snap is the store as one read or write sees it: the entries the write's
// commit staged so far (st, writes only), over the overlay, over a read
// transaction of the file. A write stages its changes here and records
// their operations for the log frame.
type snap struct {
	tx   *bolt.Tx
	ov   *overlay // read under Bolt.ovMu
	st   *overlay
	ops  *enc
	undo []func()
}

// view runs fn on a snapshot of the store.
func (s *Bolt) view(fn func(sn *snap) error) error {
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	return s.db.View(func(tx *bolt.Tx) error { return fn(&snap{tx: tx, ov: &s.ov}) })
}

// entry returns the newest overlay entry of message id, if any.
func (sn *snap) entry(id string) (*ovMsg, bool) {
	if sn.st != nil {
		if e, ok := sn.st.msgs[id]; ok {
			return e, true
		}
	}
	e, ok := sn.ov.msgs[id]
	return e, ok
}

// record returns the stored record of message id; nil when there is none.
func (sn *snap) record(id string) []byte {
	if e, ok := sn.entry(id); ok {
		return e.rec
	}
	return sn.tx.Bucket(bMessages).Get([]byte(id))
}

func (sn *snap) getMsg(id string) (*Message, error) {
	m, err := sn.read(id, decodeMessage)
	if err == nil && m.Body == nil {
		if e, ok := sn.entry(id); ok && e.hasBody {
			m.Body = bytes.Clone(e.body)
		} else if b := sn.tx.Bucket(bBodies).Get([]byte(id)); b != nil {
			m.Body = append(json.RawMessage(nil), b...)
		}
	}
	return m, err
}

// getHead reads the queue fields of a stored message (see decodeHead).
func (sn *snap) getHead(id string) (*Message, error) { return sn.read(id, decodeHead) }

func (sn *snap) read(id string, decode func([]byte) (*Message, error)) (*Message, error) {
	v := sn.record(id)
	if v == nil {
		return nil, ErrNotFound
	}
	m, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("store: message %s: %w", id, err)
	}
	return m, nil
}

func (sn *snap) dedupValue(bkey []byte) []byte {
	if sn.st != nil {
		if e, ok := sn.st.dedup[string(bkey)]; ok {
			return e.v
		}
	}
	if e, ok := sn.ov.dedup[string(bkey)]; ok {
		return e.v
	}
	return sn.tx.Bucket(bDedup).Get(bkey)
}

func (sn *snap) stageMsg(id string, e *ovMsg)       { stage(sn, sn.st.msgs, id, e) }
func (sn *snap) stageDedup(bkey string, e *ovDedup) { stage(sn, sn.st.dedup, bkey, e) }

// stage sets m[k] to v, and records how to undo it should the write fail.
func stage[V any](sn *snap, m map[string]V, k string, v V) {
	old, had := m[k]
	m[k] = v
	sn.undo = append(sn.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

// put stages m. prev is the stored version, if any (its head will do).
// A message the file could not take fails here, alone: once in the log,
// it would fail every apply.
func (sn *snap) put(m *Message, prev *Message) error {
	switch {
	case m.ID == "":
		return errors.New("a message without an id")
	case len(queueKey(m.Flow, m.DueAt, m.ID)) > bolt.MaxKeySize:
		return fmt.Errorf("message id and flow name of %d bytes together: the store takes at most %d", len(m.Flow)+len(m.ID), bolt.MaxKeySize-9)
	}
	if m.DueAt.IsZero() && (m.Status == Queued || m.Status == Retrying) {
		m.DueAt = time.Now() // as the Redis store does; a zero time would sort last
	}
	rec := *m
	rec.Body = nil
	e := &ovMsg{rec: encodeMessage(&rec),
		m: &Message{ID: m.ID, Flow: m.Flow, Status: m.Status, DueAt: m.DueAt, ReceivedAt: m.ReceivedAt, DedupKey: m.DedupKey}}
	// The body never changes: it is written once, so that a checkpoint
	// rewrites the small record, not the payload. (A record of an older
	// store that holds its body inline moves it out on its next write.)
	if prev == nil || prev.Body != nil {
		e.body, e.hasBody = bytes.Clone(m.Body), true
	} else if old, ok := sn.entry(m.ID); ok && old.hasBody {
		e.body, e.hasBody = old.body, true // not in the file yet
	}
	sn.stageMsg(m.ID, e)
	sn.ops.b = append(sn.ops.b, opMessage)
	sn.ops.str(m.ID)
	sn.ops.bytes(e.rec)
	if e.hasBody {
		sn.ops.uint(1)
	} else {
		sn.ops.uint(0)
	}
	sn.ops.bytes(e.body)
	return nil
}

// remove stages the deletion of message id.
func (sn *snap) remove(id string) {
	sn.stageMsg(id, &ovMsg{})
	sn.ops.b = append(sn.ops.b, opDelMessage)
	sn.ops.str(id)
}

// putDedup stages the entry of key. It refuses an empty key, which the
// file cannot take (see put).
func (sn *snap) putDedup(key string, e dedupEntry) error {
	if key == "" {
		return errors.New("an empty dedup key")
	}
	bkey, v := string(dedupBucketKey(key)), encodeDedup(e)
	sn.stageDedup(bkey, &ovDedup{v: v})
	sn.ops.b = append(sn.ops.b, opDedup)
	sn.ops.str(bkey)
	sn.ops.bytes(v)
	return nil
}

func (sn *snap) deleteDedup(bkey string) {
	sn.stageDedup(bkey, &ovDedup{})
	sn.ops.b = append(sn.ops.b, opDelDedup)
	sn.ops.str(bkey)
}

// applyOp applies an operation of a log frame to the file.
func applyOp(tx *bolt.Tx, op walOp) error {
	switch op.kind {
	case opMessage:
		m, err := decodeMessage(op.value)
		if err != nil {
			return fmt.Errorf("message %s: %w", op.key, err)
		}
		return applyMsg(tx, op.key, &ovMsg{m: m, rec: op.value, body: op.body, hasBody: op.hasBody})
	case opDelMessage:
		return applyMsg(tx, op.key, &ovMsg{})
	case opDedup:
		return tx.Bucket(bDedup).Put([]byte(op.key), op.value)
	default: // opDelDedup
		return tx.Bucket(bDedup).Delete([]byte(op.key))
	}
}

// applyMsg writes e, the newest state of message id, to the file, and
// keeps the queue, running and journal indexes in step with it.
func applyMsg(tx *bolt.Tx, id string, e *ovMsg) error {
	key := []byte(id)
	prev, err := read(tx, id, decodeHead)
	if err != nil {
		prev = nil // none, or one that cannot be read: e replaces it
	}
	q := tx.Bucket(bQueue)
	if prev != nil && (prev.Status == Queued || prev.Status == Retrying) {
		if err := q.Delete(queueKey(prev.Flow, prev.DueAt, prev.ID)); err != nil {
			return err
		}
	}
	running := tx.Bucket(bRunning)
	if e.m == nil { // deleted
		if old, err := read(tx, id, decodeMessage); err == nil {
			if err := tx.Bucket(bJournal).Delete(journalKey(old)); err != nil {
				return err
			}
		}
		return errors.Join(running.Delete(key), tx.Bucket(bMessages).Delete(key), tx.Bucket(bBodies).Delete(key))
	}
	m := e.m
	switch m.Status {
	case Queued, Retrying:
		err = errors.Join(q.Put(queueKey(m.Flow, m.DueAt, id), be(m.ReceivedAt)), running.Delete(key))
	case Running:
		err = running.Put(key, []byte(m.Flow))
	default:
		err = running.Delete(key)
	}
	if err != nil {
		return err
	}
	journal := denseBucket(tx, bJournal)
	if prev != nil && e.hasBody && journal.Get(journalKey(m)) == nil {
		// Deleted (swept) and accepted again since the file's version,
		// both in one apply: the journal entry moves to the new receive
		// time, or listings and sweeps would go by the old one.
		if old, err := read(tx, id, decodeMessage); err == nil {
			if err := journal.Delete(journalKey(old)); err != nil {
				return err
			}
		}
		prev = nil
	}
	if prev == nil {
		if err := journal.Put(journalKey(m), nil); err != nil {
			return err
		}
	}
	if e.hasBody {
		if err := denseBucket(tx, bBodies).Put(key, e.body); err != nil {
			return err
		}
	}
	return denseBucket(tx, bMessages).Put(key, e.rec)
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

// read decodes the record of message id in the file alone.
func read(tx *bolt.Tx, id string, decode func([]byte) (*Message, error)) (*Message, error) {
	return (&snap{tx: tx, ov: &overlay{}}).read(id, decode)
}

// denseBucket returns a bucket whose new keys mostly come in ascending
// order, told to fill its pages before splitting them: journal keys start
// with the receive time, and the ids of HTTP messages are time-ordered
// UUIDv7 (the other triggers derive their ids, which land anywhere). At
// bbolt's default of half-full pages every commit rewrote twice the pages
// it needed.
func denseBucket(tx *bolt.Tx, name []byte) *bolt.Bucket {
	b := tx.Bucket(name)
	b.FillPercent = 0.95
	return b
}

// dedupHolder returns the live holder of key, if any: a key released to
// a retry has none.
func dedupHolder(sn *snap, key string, now time.Time) (*dedupEntry, bool) {
	e, live := dedupLive(sn, key, now)
	return e, live && !e.Released
}

// dedupLive returns the entry of key unless it expired.
func dedupLive(sn *snap, key string, now time.Time) (*dedupEntry, bool) {
	return liveDedup(sn.dedupValue(dedupBucketKey(key)), now)
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
	err := s.batch(func(sn *snap) error {
		existing = nil
		if prev, err := sn.getMsg(m.ID); err == nil {
			existing = prev
			return nil
		}
		now := time.Now()
		if m.DedupKey != "" {
			if e, held := dedupHolder(sn, m.DedupKey, now); held {
				prev, err := sn.getMsg(e.ID)
				if err == nil {
					existing = prev
					return nil
				}
			}
			if err := sn.putDedup(m.DedupKey, dedupEntry{ID: m.ID, Expires: now.Add(ttl), Confirmed: true}); err != nil {
				return err
			}
		}
		return sn.put(m, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("store: accept: %w", err)
	}
	return existing, nil
}

// Lease implements Store. It reads the queue without writing: the lease
// is kept in memory (see Bolt), so handing out messages costs no commit.
//
// The file's queue entries of messages written since the last apply are
// stale (the overlay tells where those stand), and so are those of leased
// messages. Until the next apply changes the file, an entry once stale
// stays so (a lease ends only by a write), so Lease remembers per flow
// where its scan found the first entry that was not, and starts there:
// otherwise every Lease would step again over every message delivered
// since the last apply.
func (s *Bolt) Lease(ctx context.Context, flow string, now time.Time, n int) ([]*Message, error) {
	var out []*Message
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := be(now)
	err := s.view(func(sn *snap) error {
		prefix := append([]byte(flow), 0)
		start := prefix
		if h, ok := s.leaseFrom[flow]; ok && h.gen == sn.ov.gen {
			start = h.key
		}
		c := sn.tx.Bucket(bQueue).Cursor()
		var first, last []byte
		k, _ := c.Seek(start)
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < n; k, _ = c.Next() {
			last = k
			if bytes.Compare(k[len(prefix):len(prefix)+8], limit) > 0 {
				break
			}
			idb := k[len(prefix)+8:]
			if _, written := sn.ov.msgs[string(idb)]; written || s.leased[string(idb)] != 0 { // no allocation for the skipped
				continue
			}
			m, err := sn.getMsg(string(idb))
			if err != nil {
				continue // an orphan index entry; the next Save of that id cleans it
			}
			if first == nil {
				first = k
			}
			out = append(out, m)
		}
		switch {
		case first != nil:
			s.leaseFrom[flow] = leaseHint{gen: sn.ov.gen, key: bytes.Clone(first)}
		case last != nil && (k == nil || !bytes.HasPrefix(k, prefix)): // every entry was stale: start after the last
			s.leaseFrom[flow] = leaseHint{gen: sn.ov.gen, key: append(bytes.Clone(last), 0)}
		case last != nil: // stopped at one not due yet
			s.leaseFrom[flow] = leaseHint{gen: sn.ov.gen, key: bytes.Clone(last)}
		}
		// The queued messages not in the file yet: the n due first.
		var due []*ovMsg
		for id, e := range sn.ov.queued[flow] {
			if s.leased[id] == 0 && bytes.Compare(be(e.m.DueAt), limit) <= 0 {
				due = append(due, e)
			}
		}
		slices.SortFunc(due, func(a, b *ovMsg) int { return dueOrder(a.m, b.m) })
		for _, e := range due[:min(n, len(due))] {
			if m, err := sn.getMsg(e.m.ID); err == nil {
				out = append(out, m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: lease: %w", err)
	}
	slices.SortFunc(out, dueOrder)
	out = out[:min(n, len(out))]
	for _, m := range out {
		m.Status, m.UpdatedAt = Running, now
		s.leases++
		s.leased[m.ID] = s.leases
	}
	return out, nil
}

// leaseHint is where Lease starts its scan of a flow's queue entries in
// the file, valid while the file is as apply number gen left it.
type leaseHint struct {
	gen uint64
	key []byte
}

// dueOrder orders messages as the queue does: by due time, then id.
func dueOrder(a, b *Message) int {
	return cmp.Or(bytes.Compare(be(a.DueAt), be(b.DueAt)), cmp.Compare(a.ID, b.ID))
}

// Save implements Store.
func (s *Bolt) Save(ctx context.Context, m *Message) error {
	// The lease this write ends, if any: by the time the commit is back
	// the message may have been saved again (an admin's replay) and
	// leased anew, and that lease is not this write's to end.
	lease := s.leaseOf(m.ID)
	m.UpdatedAt = time.Now()
	err := s.batch(func(sn *snap) error {
		prev, err := sn.getHead(m.ID)
		if err == ErrNotFound {
			prev = nil
		} else if err != nil {
			return err
		}
		if m.Expect != "" && (prev == nil || prev.Status != m.Expect ||
			m.read != "" && string(sn.record(m.ID)) != m.read) {
			return ErrChanged
		}
		return sn.put(m, prev)
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
	err := s.view(func(sn *snap) error {
		var err error
		if m, err = sn.getMsg(id); err == nil {
			m.read = string(sn.record(id))
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
	match := func(m *Message) bool {
		if m.Status.Pending() && leased[m.ID] {
			m.Status = Running
		}
		return (f.Flow == "" || m.Flow == f.Flow) && (f.Status == "" || m.Status == f.Status) && (f.Key == "" || m.DedupKey == f.Key)
	}
	err := s.view(func(sn *snap) error {
		seen := map[string]bool{}
		c := sn.tx.Bucket(bJournal).Cursor()
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
			id := string(k[8:])
			seen[id] = true
			if m, err := sn.getMsg(id); err == nil && match(m) {
				out = append(out, m)
			}
		}
		// The messages not in the file's journal yet. One that is, but
		// lies past where the scan stopped, sorts after a full page.
		for id, e := range sn.ov.msgs {
			if seen[id] || e.m == nil || !f.Since.IsZero() && bytes.Compare(be(e.m.ReceivedAt), since) < 0 ||
				!f.After.Precedes(e.m) || f.Flow != "" && e.m.Flow != f.Flow || f.Key != "" && e.m.DedupKey != f.Key {
				continue
			}
			if m, err := sn.getMsg(id); err == nil && match(m) {
				out = append(out, m)
			}
		}
		return nil
	})
	slices.SortFunc(out, ListOrder)
	return out[:min(f.Limit, len(out))], err
}

// Recover implements Store: in one process every running message belongs
// to a worker of a previous run.
func (s *Bolt) Recover(ctx context.Context) (int, error) {
	var ids []string
	err := s.view(func(sn *snap) error {
		_ = sn.tx.Bucket(bRunning).ForEach(func(k, _ []byte) error { ids = append(ids, string(k)); return nil })
		for id, e := range sn.ov.msgs {
			if e.m != nil && e.m.Status == Running {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	n := 0
	err = s.batch(func(sn *snap) error {
		n = 0
		for _, id := range ids {
			// Only a message whose record says running goes back to the
			// queue: an entry left beside any other status (or none) is
			// stale, and requeuing a finished message would run it again.
			m, err := sn.getMsg(id)
			switch {
			case errors.Is(err, ErrNotFound):
				sn.remove(id) // clears the stale entry
			case err != nil:
			case m.Status != Running:
				head := *m
				head.Body = nil
				_ = sn.put(m, &head) // rewritten as it is: clears the stale entry (it was stored, so it fits)
			default:
				head := *m
				head.Body = nil
				m.Status, m.DueAt = Queued, time.Now()
				if err := sn.put(m, &head); err != nil {
					return err
				}
				n++
			}
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
	count := func(at time.Time) {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		n++
	}
	err := s.view(func(sn *snap) error {
		prefix := append([]byte(flow), 0)
		c := sn.tx.Bucket(bQueue).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			id := k[len(prefix)+8:]
			if _, written := sn.ov.msgs[string(id)]; leased[string(id)] || written {
				continue
			}
			if len(v) == 8 {
				count(time.Unix(0, int64(binary.BigEndian.Uint64(v))))
			}
		}
		for id, e := range sn.ov.queued[flow] {
			if !leased[id] {
				count(e.m.ReceivedAt)
			}
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
	err := s.view(func(sn *snap) error {
		if e, live := dedupLive(sn, key, now); live && !e.Released {
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
	err := s.batch(func(sn *snap) error {
		if e, held := dedupHolder(sn, key, time.Now()); held && e.ID != id {
			return fmt.Errorf("dedup key %q is held by %s", key, e.ID)
		}
		return sn.putDedup(key, dedupEntry{ID: id, Expires: time.Now().Add(ttl), Confirmed: true})
	})
	s.unpend(key, id)
	return err
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
	held := func(sn *snap) bool {
		e, ok := dedupHolder(sn, key, time.Now())
		return ok && e.ID == id
	}
	mine := false
	_ = s.view(func(sn *snap) error { mine = held(sn); return nil })
	if !mine {
		return nil
	}
	return s.batch(func(sn *snap) error {
		if held(sn) {
			sn.deleteDedup(string(dedupBucketKey(key)))
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
	err := s.batch(func(sn *snap) error {
		prev, err := sn.getHead(m.ID)
		if err == ErrNotFound {
			prev = nil
		} else if err != nil {
			return err
		}
		if err := sn.put(m, prev); err != nil {
			return err
		}
		if m.DedupKey == "" {
			return nil
		}
		if e, held := dedupHolder(sn, m.DedupKey, time.Now()); held && e.ID != m.ID {
			return nil // taken over after this run's claim lapsed: journaled, not confirmed (as Redis)
		}
		done := m.Status == Completed || m.Status == Filtered
		return sn.putDedup(m.DedupKey, dedupEntry{ID: m.ID, Expires: time.Now().Add(ttl), Confirmed: done, Released: !done})
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
// write: a sweep of a million old messages never holds the committer for
// long, so accepting goes on meanwhile.
func (s *Bolt) Sweep(ctx context.Context, olderThan time.Time) (int, error) {
	var drop, expired []string
	now := time.Now()
	err := s.view(func(sn *snap) error {
		c := sn.tx.Bucket(bJournal).Cursor()
		cutoff := be(olderThan)
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], cutoff) < 0; k, _ = c.Next() {
			if _, written := sn.ov.msgs[string(k[8:])]; !written && sweepable(sn, string(k[8:]), now) {
				drop = append(drop, string(k[8:]))
			}
		}
		for id, e := range sn.ov.msgs { // the newest state of these is not in the file yet
			if e.m != nil && bytes.Compare(be(e.m.ReceivedAt), cutoff) < 0 && sweepable(sn, id, now) {
				drop = append(drop, id)
			}
		}
		_ = sn.tx.Bucket(bDedup).ForEach(func(k, _ []byte) error {
			if _, live := liveDedup(sn.dedupValue(k), now); !live {
				expired = append(expired, string(k))
			}
			return nil
		})
		for k, e := range sn.ov.dedup {
			if _, live := liveDedup(e.v, now); !live && e.v != nil {
				expired = append(expired, k)
			}
		}
		return nil
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
		err := s.batch(func(sn *snap) error {
			deleted = 0
			for _, id := range batch {
				if sweepable(sn, id, time.Now()) { // else written since the scan
					sn.remove(id)
					deleted++
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += deleted
	}
	for batch := range slices.Chunk(slices.Compact(slices.Sorted(slices.Values(expired))), sweepBatch) {
		err := s.batch(func(sn *snap) error {
			for _, k := range batch {
				if v := sn.dedupValue([]byte(k)); v != nil {
					if _, live := liveDedup(v, time.Now()); !live { // else claimed again since the scan
						sn.deleteDedup(k)
					}
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
func sweepable(sn *snap, id string, now time.Time) bool {
	m, err := sn.read(id, decodeMessage)
	if err != nil || m.Status.Pending() || m.Status == Dead {
		return false
	}
	if m.DedupKey != "" {
		if e, live := dedupLive(sn, m.DedupKey, now); live && e.ID == m.ID {
			return false
		}
	}
	return true
}
