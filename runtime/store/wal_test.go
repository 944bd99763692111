package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// crash ends s as kill -9 would: nothing more is applied to the file and
// the log stays as it is.
func crash(t *testing.T, s *Bolt) {
	t.Helper()
	s.stopCommitter()
	close(s.applies)
	s.applying.Wait()
	s.closed.Do(func() {}) // the Close of a test's cleanup does nothing
	if err := s.wal.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// applied waits until the file holds everything the log does.
func applied(t *testing.T, s *Bolt) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.ovMu.RLock()
		n := s.ov.size()
		s.ovMu.RUnlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes still not applied to the file", n)
		}
	}
}

func openHeld(t *testing.T, dir string) *Bolt {
	t.Helper()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.holdApply.Store(true)
	t.Cleanup(func() { s.Close() })
	return s
}

// fill accepts 30 messages of flow f with dedup keys k0..k29, then
// completes the first 10 and dead-letters the next 5.
func fill(t *testing.T, s *Bolt) {
	t.Helper()
	ctx := context.Background()
	for i := range 30 {
		m := &Message{ID: fmt.Sprintf("m%02d", i), Flow: "f", Status: Queued, DedupKey: fmt.Sprintf("k%d", i),
			ReceivedAt: time.Now(), DueAt: time.Now(), Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if dup, err := s.Accept(ctx, m, time.Hour); err != nil || dup != nil {
			t.Fatalf("accept %d: %v %v", i, dup, err)
		}
	}
	for i := range 15 {
		m, err := s.Get(ctx, fmt.Sprintf("m%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		m.Status = Completed
		if i >= 10 {
			m.Status, m.Error = Dead, "ERP said 422"
		}
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// check asserts that s holds what fill wrote: every message with its body
// and status, 15 queued in due order, each leased once, and every dedup
// key held by its message.
func check(t *testing.T, s *Bolt) {
	t.Helper()
	ctx := context.Background()
	for i := range 30 {
		m, err := s.Get(ctx, fmt.Sprintf("m%02d", i))
		want := map[bool]Status{true: Completed, false: Queued}[i < 10]
		if i >= 10 && i < 15 {
			want = Dead
		}
		if err != nil || m.Status != want || string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("m%02d: %+v %v; want %s with its body", i, m, err, want)
		}
	}
	if n, _, err := s.Depth(ctx, "f"); err != nil || n != 15 {
		t.Errorf("depth %d (%v); want 15", n, err)
	}
	if all, err := s.List(ctx, Filter{Limit: 1000}); err != nil || len(all) != 30 {
		t.Errorf("listed %d (%v); want 30", len(all), err)
	}
	got, err := s.Lease(ctx, "f", time.Now(), 100)
	if err != nil || len(got) != 15 {
		t.Fatalf("leased %d (%v); want 15", len(got), err)
	}
	for i, m := range got {
		if want := fmt.Sprintf("m%02d", 15+i); m.ID != want {
			t.Errorf("lease %d: %s; want %s (due order)", i, m.ID, want)
		}
	}
	dup, err := s.Accept(ctx, &Message{ID: "again", Flow: "f", Status: Queued, DedupKey: "k20", ReceivedAt: time.Now()}, time.Hour)
	if err != nil || dup == nil || dup.ID != "m20" {
		t.Errorf("a duplicate of k20: %v %v; want m20", dup, err)
	}
}

// What was acknowledged survives a crash before any of it reached the
// file: the log is replayed at open.
func TestBoltCrashReplaysTheLog(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	crash(t, s)
	check(t, openHeld(t, dir))
}

// A crash after the applier wrote the file but before it deleted the
// segments replays them over the file: each operation is a whole new
// state, so nothing is doubled or rolled back.
func TestBoltReplayOverAppliedFile(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	if err := s.db.Update(func(txn *bolt.Tx) error { // the applier's write, without its cleanup
		for id, e := range s.ov.msgs {
			if err := applyMsg(txn, id, e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	crash(t, s)
	check(t, openHeld(t, dir))
}

// The applier moves everything into the file and deletes the segments it
// covered; a later clean restart finds no log to replay.
func TestBoltApplyEmptiesTheLog(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s)
	applied(t, s)
	if segs, _ := segments(filepath.Join(dir, "conveyor.wal")); len(segs) != 1 {
		t.Errorf("segments after the apply: %v; want the one being written only", segs)
	}
	check(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := segments(filepath.Join(dir, "conveyor.wal")); len(segs) != 0 {
		t.Errorf("segments after Close: %v; want none", segs)
	}
	s2, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	n, _, err := s2.Depth(context.Background(), "f")
	if err != nil || n != 15 {
		t.Errorf("depth after a restart: %d (%v); want 15", n, err)
	}
}

// A frame torn by the crash (never acknowledged) is dropped; the frames
// before it are replayed.
func TestBoltTornTailIsDropped(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	seg := filepath.Join(dir, "conveyor.wal", segmentName(s.wal.seq))
	crash(t, s)
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 'M', 3}) // a header and the start of a frame
	f.Close()
	check(t, openHeld(t, dir))
}

// A damaged frame with newer segments after it is not a torn write:
// opening fails, naming the segment, rather than lose what follows.
func TestBoltDamagedSegmentFailsOpen(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	wdir := filepath.Join(dir, "conveyor.wal")
	seg := filepath.Join(wdir, segmentName(s.wal.seq))
	crash(t, s)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wdir, segmentName(99)), frame(99, nil), 0o600); err != nil { // a segment that ended
		t.Fatal(err)
	}
	_, err = OpenBolt(dir)
	if err == nil || !strings.Contains(err.Error(), segmentName(1)) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open: %v; want it to name the damaged segment", err)
	}
}

// Reads merge the file and the overlay: the queue hands out by due time
// whichever holds the message, and a listing pages across both.
func TestBoltReadsMergeFileAndLog(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	accept := func(id string, at time.Time) {
		t.Helper()
		if _, err := s.Accept(ctx, &Message{ID: id, Flow: "f", Status: Queued, ReceivedAt: at, DueAt: at, Body: []byte(`{}`)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	accept("a", t0.Add(2*time.Second))
	accept("c", t0.Add(4*time.Second))
	applied(t, s)
	s.holdApply.Store(true)
	accept("b", t0.Add(3*time.Second))
	accept("d", t0.Add(1*time.Second))
	if n, oldest, err := s.Depth(ctx, "f"); err != nil || n != 4 || !oldest.Equal(t0.Add(time.Second)) {
		t.Errorf("depth %d, oldest %v (%v); want 4, %v", n, oldest, err, t0.Add(time.Second))
	}
	var pages []string
	var after *Cursor
	for {
		page, err := s.List(ctx, Filter{Limit: 3, After: after})
		if err != nil {
			t.Fatal(err)
		}
		ids := ""
		for _, m := range page {
			ids += m.ID
		}
		pages = append(pages, ids)
		if len(page) < 3 {
			break
		}
		after = CursorOf(page[len(page)-1])
	}
	if got := strings.Join(pages, "|"); got != "cba|d" {
		t.Errorf("pages %s; want cba|d (newest first)", got)
	}
	got, err := s.Lease(ctx, "f", time.Now(), 3)
	if err != nil {
		t.Fatal(err)
	}
	ids := ""
	for _, m := range got {
		ids += m.ID
	}
	if ids != "dab" {
		t.Errorf("leased %s; want dab (due order)", ids)
	}
}

// Lease starts where its last scan of the file's queue found the first
// live entry; messages delivered, retried or applied meanwhile change
// nothing of what it hands out.
func TestBoltLeaseAcrossApplies(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		at := t0.Add(time.Duration(i) * time.Second)
		if _, err := s.Accept(ctx, &Message{ID: id, Flow: "f", Status: Queued, ReceivedAt: at, DueAt: at, Body: []byte(`{}`)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	applied(t, s)
	s.holdApply.Store(true)
	lease := func(n int) string {
		t.Helper()
		got, err := s.Lease(ctx, "f", time.Now(), n)
		if err != nil {
			t.Fatal(err)
		}
		ids := ""
		for _, m := range got {
			ids += m.ID
		}
		return ids
	}
	save := func(id string, st Status, due time.Time) {
		t.Helper()
		m, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		m.Status, m.DueAt = st, due
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := lease(2); got != "ab" {
		t.Fatalf("first lease %s; want ab", got)
	}
	save("a", Completed, time.Time{})
	save("b", Retrying, t0.Add(-time.Second)) // due again before every other
	if got := lease(2); got != "bc" {
		t.Fatalf("second lease %s; want bc", got)
	}
	save("c", Retrying, time.Now().Add(time.Hour)) // not due for an hour
	s.holdApply.Store(false)
	applied(t, s)
	s.holdApply.Store(true)
	if got := lease(5); got != "de" {
		t.Fatalf("after an apply: %s; want de", got)
	}
	save("d", Queued, t0) // an admin's requeue
	if got := lease(5); got != "d" {
		t.Fatalf("after a requeue: %s; want d", got)
	}
	if got, err := s.Lease(ctx, "f", time.Now().Add(2*time.Hour), 5); err != nil || len(got) != 1 || got[0].ID != "c" {
		t.Fatalf("two hours on: %v %v; want c", got, err)
	}
}

// A message the file cannot take fails its own write, as it did when
// each commit was a bbolt transaction: acknowledged into the log, it
// would fail every apply after it, and the log would grow for ever.
func TestBoltRefusesWhatTheFileCannotTake(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, id := range []string{"", strings.Repeat("x", 40000)} {
		_, err := s.Accept(ctx, &Message{ID: id, Flow: "f", Status: Queued, ReceivedAt: time.Now(), Body: []byte(`{}`)}, time.Hour)
		if err == nil {
			t.Errorf("accept of a %d-byte id: no error", len(id))
		}
	}
	if _, err := s.Accept(ctx, &Message{ID: "ok", Flow: "f", Status: Queued, ReceivedAt: time.Now(), Body: []byte(`{}`)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	applied(t, s)
	if m, err := s.Get(ctx, "ok"); err != nil || m.Status != Queued {
		t.Fatalf("the message after them: %v %v", m, err)
	}
}

// A message swept and accepted again under the same id (a trigger that
// derives its ids) before the applier runs reaches the file as one
// write: its journal entry must move to the new receive time, or a
// listing since then misses it and the next sweep takes it at once.
func TestBoltReacceptAfterSweepInOneApply(t *testing.T) {
	s, err := OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour)
	m := &Message{ID: "x", Flow: "f", Status: Completed, ReceivedAt: old, Body: []byte(`{"v":1}`)}
	if _, err := s.Accept(ctx, m, time.Minute); err != nil {
		t.Fatal(err)
	}
	applied(t, s)
	s.holdApply.Store(true)
	if n, err := s.Sweep(ctx, time.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("swept %d (%v); want 1", n, err)
	}
	now := time.Now()
	m = &Message{ID: "x", Flow: "f", Status: Completed, ReceivedAt: now, Body: []byte(`{"v":2}`)}
	if dup, err := s.Accept(ctx, m, time.Minute); err != nil || dup != nil {
		t.Fatalf("accept again: %v %v", dup, err)
	}
	s.holdApply.Store(false)
	applied(t, s)
	if got, err := s.List(ctx, Filter{Since: now.Add(-time.Minute)}); err != nil || len(got) != 1 {
		t.Errorf("listed since a minute ago: %d (%v); want x", len(got), err)
	}
	if n, err := s.Sweep(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("swept %d (%v); want none: x was received just now", n, err)
	}
}

// An empty dedup key is refused at staging like an empty message id (see
// TestBoltRefusesWhatTheFileCannotTake): bbolt takes no empty key, and
// acknowledged into the log, the entry would fail every apply after it
// and the replay of every later open.
func TestBoltRefusesAnEmptyDedupKey(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.ConfirmKey(ctx, "", "m", time.Hour); err == nil {
		t.Error("confirm of an empty dedup key: no error")
	}
	if _, err := s.Accept(ctx, &Message{ID: "ok", Flow: "f", Status: Queued, ReceivedAt: time.Now(), Body: []byte(`{}`)}, time.Hour); err != nil {
		t.Fatal(err)
	}
	applied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "ok"); err != nil {
		t.Fatal(err)
	}
}

// A torn tail followed by empty segments only (started before the crash,
// as a rotation or an interrupted open does) is still a torn tail.
func TestBoltTornTailBeforeEmptySegments(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	wdir := filepath.Join(dir, "conveyor.wal")
	seq := s.wal.seq
	crash(t, s)
	f, err := os.OpenFile(filepath.Join(wdir, segmentName(seq)), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 0xde, 0xad})
	f.Close()
	for _, n := range []uint64{seq + 1, seq + 2} {
		if err := os.WriteFile(filepath.Join(wdir, segmentName(n)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check(t, openHeld(t, dir))
}

// A commit larger than a frame may be is written as several frames with
// one sync, each write's operations whole in one of them.
func TestBoltLargeCommitSpansFrames(t *testing.T) {
	defer func(n int) { maxFrameBytes = n }(maxFrameBytes)
	maxFrameBytes = 100
	dir := t.TempDir()
	s := openHeld(t, dir)
	s.stopCommitter() // the test commits the group itself
	var group []*boltWrite
	for i := range 5 {
		m := &Message{ID: fmt.Sprintf("m%d", i), Flow: "f", Status: Queued, ReceivedAt: time.Now(), DueAt: time.Now(),
			Body: []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 80)))}
		group = append(group, &boltWrite{fn: func(sn *snap) error { return sn.put(m, nil) }, done: make(chan error, 1)})
	}
	s.commit(group)
	for _, w := range group {
		if err := <-w.done; err != nil {
			t.Fatal(err)
		}
	}
	seq := s.wal.seq
	crash(t, s)
	sg, err := readSegment(filepath.Join(dir, "conveyor.wal"), seq)
	if err != nil || len(sg.frames) != 5 {
		t.Fatalf("%v (%v); want a frame per write", sg, err)
	}
	s = openHeld(t, dir)
	for i := range 5 {
		if m, err := s.Get(context.Background(), fmt.Sprintf("m%d", i)); err != nil || !strings.Contains(string(m.Body), fmt.Sprintf(`"n":%d`, i)) {
			t.Errorf("m%d after the replay: %v %v", i, m, err)
		}
	}
}

// Segment files are reused, and a reused one still holds the frames of
// its last life after the new ones. They must never be replayed: after a
// clean restart (every segment retired to a spare), new segments are
// numbered above every old one, so the old frames no longer check out.
func TestBoltRecycledSegmentsHideStaleFrames(t *testing.T) {
	dir := t.TempDir()
	s := openHeld(t, dir)
	fill(t, s)
	retired := s.wal.seq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if sp, _ := spares(filepath.Join(dir, "conveyor.wal")); len(sp) == 0 {
		t.Fatal("no spare segment after Close")
	}
	s = openHeld(t, dir)
	if s.wal.seq <= retired {
		t.Fatalf("the log restarted at segment %d, not above %d: a reused file's old frames would check out", s.wal.seq, retired)
	}
	ctx := context.Background()
	for i := 25; i < 30; i++ { // fewer bytes than the last life wrote
		m, err := s.Get(ctx, fmt.Sprintf("m%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		m.Status = Completed
		if err := s.Save(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	crash(t, s)
	s = openHeld(t, dir)
	for i := 15; i < 30; i++ {
		want := map[bool]Status{true: Completed, false: Queued}[i >= 25]
		if m, err := s.Get(ctx, fmt.Sprintf("m%02d", i)); err != nil || m.Status != want {
			t.Errorf("m%02d: %v %v; want %s", i, m, err, want)
		}
	}
}
