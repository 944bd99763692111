// Package storetest is the one conformance suite for store.Store: every
// implementation (the embedded bbolt store, Redis) runs Run and so keeps
// the semantics the engine relies on. It also has the helpers tests use to
// reach the Redis they run against.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
)

// Run runs the suite. open returns the store under test for t; called
// again with the same t after that store was closed, it must reopen the
// same data (the same file, the same Redis prefix and consumer name). The
// suite closes the stores it opens; open cleans up the data at t's end.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) store.Store)
	}{
		{"QueueOrder", testQueueOrder},
		{"LeasedNotHandedOutTwice", testVisibility},
		{"ConcurrentLeasers", testConcurrentLeasers},
		{"RetryDueTimes", testRetryDue},
		{"RetrySurvivesReopen", testRetryReopen},
		{"DeadLetters", testDeadLetters},
		{"ReplayOnce", testReplayOnce},
		{"CheckpointsAndMemos", testCheckpoints},
		{"AcceptIdempotent", testAcceptIdempotent},
		{"AcceptConcurrentSameID", testAcceptConcurrent},
		{"DedupTTL", testDedupTTL},
		{"ClaimRace", testClaimRace},
		{"ClaimReleaseConfirm", testClaimReleaseConfirm},
		{"Recover", testRecover},
		{"SyncJournal", testSyncJournal},
		{"FinishAfterTakeover", testFinishAfterTakeover},
		{"FailedRunResumedByRetry", testFailedRunResumed},
		{"ZeroDueIsNow", testZeroDue},
		{"ListFilters", testList},
		{"ListPages", testListPages},
		{"ListLeasedAsRunning", testListLeased},
		{"Depth", testDepth},
		{"Revisions", testRevisions},
		{"Audit", testAudit},
		{"Meta", testMeta},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

var ctx = context.Background()

func openT(t *testing.T, open func(t *testing.T) store.Store) store.Store {
	s := open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var seq struct {
	sync.Mutex
	n int
}

// msg returns a queued message of flow due at due, received now (each
// message a microsecond later than the one before, so order is defined).
func msg(flow string, due time.Time) *store.Message {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	now := time.Now().UTC().Truncate(time.Microsecond).Add(time.Duration(n) * time.Microsecond)
	return &store.Message{ID: fmt.Sprintf("m-%s-%06d", flow, n), Flow: flow, Revision: 1, Status: store.Queued, Source: "http",
		ReceivedAt: now, DueAt: due, Body: json.RawMessage(`{"id":820982911946154777,"n":` + fmt.Sprint(n) + `}`)}
}

func accept(t *testing.T, s store.Store, m *store.Message) {
	t.Helper()
	existing, err := s.Accept(ctx, m, time.Hour)
	must(t, err)
	if existing != nil {
		t.Fatalf("accept %s: got existing %s", m.ID, existing.ID)
	}
}

func ids(ms []*store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func lease(t *testing.T, s store.Store, flow string, now time.Time, n int) []*store.Message {
	t.Helper()
	ms, err := s.Lease(ctx, flow, now, n)
	must(t, err)
	return ms
}

func testQueueOrder(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	now := time.Now()
	a, b, c := msg("f", now), msg("f", now), msg("f", now)
	for _, m := range []*store.Message{a, b, c} {
		accept(t, s, m)
	}
	accept(t, s, msg("other", now)) // another flow's queue is separate
	if got := ids(lease(t, s, "f", time.Now(), 10)); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Fatalf("due now: leased %v, want accept order %v", got, []string{a.ID, b.ID, c.ID})
	}
	// Due later: handed out in due order, and not before.
	x, y, z := msg("g", now.Add(3*time.Second)), msg("g", now.Add(time.Second)), msg("g", now.Add(2*time.Second))
	for _, m := range []*store.Message{x, y, z} {
		accept(t, s, m)
	}
	if got := lease(t, s, "g", now, 10); len(got) != 0 {
		t.Fatalf("leased %v before they were due", ids(got))
	}
	if got := ids(lease(t, s, "g", now.Add(1500*time.Millisecond), 10)); !slices.Equal(got, []string{y.ID}) {
		t.Fatalf("at +1.5s leased %v, want [%s]", got, y.ID)
	}
	if got := ids(lease(t, s, "g", now.Add(5*time.Second), 10)); !slices.Equal(got, []string{z.ID, x.ID}) {
		t.Fatalf("at +5s leased %v, want due order [%s %s]", got, z.ID, x.ID)
	}
}

func testVisibility(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	now := time.Now()
	var all []string
	for range 3 {
		m := msg("f", now)
		accept(t, s, m)
		all = append(all, m.ID)
	}
	first := lease(t, s, "f", time.Now(), 1)
	if len(first) != 1 || first[0].ID != all[0] || first[0].Status != store.Running {
		t.Fatalf("lease 1: %v", first)
	}
	if !strings.HasPrefix(string(first[0].Body), `{"id":820982911946154777,"n":`) {
		t.Errorf("body changed: %s", first[0].Body)
	}
	got, err := s.Get(ctx, all[0])
	must(t, err)
	if got.Status != store.Running {
		t.Errorf("leased message has status %s, want running", got.Status)
	}
	rest := lease(t, s, "f", time.Now(), 10)
	if !slices.Equal(ids(rest), all[1:]) {
		t.Fatalf("second lease: %v, want %v", ids(rest), all[1:])
	}
	if more := lease(t, s, "f", time.Now().Add(time.Hour), 10); len(more) != 0 {
		t.Fatalf("leased messages were handed out again: %v", ids(more))
	}
}

func testConcurrentLeasers(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	const total = 300
	want := map[string]bool{}
	for range total {
		m := msg("f", time.Now())
		accept(t, s, m)
		want[m.ID] = true
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for empty := 0; empty < 3; {
				ms, err := s.Lease(ctx, "f", time.Now(), 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ms) == 0 {
					empty++
					continue
				}
				mu.Lock()
				for _, m := range ms {
					seen[m.ID]++
				}
				mu.Unlock()
				for _, m := range ms {
					m.Status = store.Completed
					if err := s.Save(ctx, m); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != total {
		t.Errorf("leased %d distinct messages, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 || !want[id] {
			t.Errorf("message %s leased %d times", id, n)
		}
	}
}

// fail records a transient failure and requeues m at due.
func fail(t *testing.T, s store.Store, m *store.Message, due time.Time) {
	t.Helper()
	m.Attempt++
	m.Attempts = append(m.Attempts, store.Attempt{At: time.Now().UTC(), Step: "2", Class: "transient", Error: "status 503"})
	m.Status, m.DueAt, m.FailedStep, m.Error = store.Retrying, due, "2", "status 503"
	must(t, s.Save(ctx, m))
}

func testRetryDue(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("f", time.Now())
	accept(t, s, m)
	got := lease(t, s, "f", time.Now(), 1)
	if len(got) != 1 {
		t.Fatalf("lease: %v", ids(got))
	}
	due := time.Now().Add(800 * time.Millisecond)
	fail(t, s, got[0], due)
	if st, _ := s.Get(ctx, m.ID); st.Status != store.Retrying {
		t.Errorf("status %s, want retrying", st.Status)
	}
	if early := lease(t, s, "f", time.Now(), 10); len(early) != 0 {
		t.Fatalf("leased before its due time: %v", ids(early))
	}
	if n, _, err := s.Depth(ctx, "f"); err != nil || n != 1 {
		t.Errorf("depth %d %v, want 1", n, err)
	}
	time.Sleep(time.Until(due) + 50*time.Millisecond)
	again := lease(t, s, "f", time.Now(), 10)
	if len(again) != 1 || again[0].ID != m.ID || again[0].Attempt != 1 || len(again[0].Attempts) != 1 || again[0].FailedStep != "2" {
		t.Fatalf("after the due time: %+v", again)
	}
}

func testRetryReopen(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	m := msg("f", time.Now())
	accept(t, s, m)
	got := lease(t, s, "f", time.Now(), 1)
	due := time.Now().Add(time.Hour)
	fail(t, s, got[0], due)
	must(t, s.Close())
	s = openT(t, open)
	if _, err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if early := lease(t, s, "f", time.Now(), 10); len(early) != 0 {
		t.Fatalf("reopened: leased before its due time: %v", ids(early))
	}
	later := lease(t, s, "f", due.Add(time.Second), 10)
	if len(later) != 1 || later[0].ID != m.ID || len(later[0].Attempts) != 1 {
		t.Fatalf("reopened: at the due time got %v", ids(later))
	}
}

func testDeadLetters(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("f", time.Now())
	m.DedupKey = "f:dead"
	accept(t, s, m)
	got := lease(t, s, "f", time.Now(), 1)[0]
	fail(t, s, got, time.Now())
	got = lease(t, s, "f", time.Now(), 1)[0]
	got.Attempt++
	got.Attempts = append(got.Attempts, store.Attempt{At: time.Now().UTC(), Step: "3", Class: "permanent", Error: "status 422"})
	got.Status, got.FailedStep, got.Error = store.Dead, "3", "status 422"
	must(t, s.Save(ctx, got))
	if more := lease(t, s, "f", time.Now().Add(24*time.Hour), 10); len(more) != 0 {
		t.Fatalf("a dead letter was leased: %v", ids(more))
	}
	d, err := s.Get(ctx, m.ID)
	must(t, err)
	if d.Status != store.Dead || d.Attempt != 2 || len(d.Attempts) != 2 || d.FailedStep != "3" || d.Error != "status 422" || string(d.Body) != string(m.Body) {
		t.Fatalf("dead letter: %+v", d)
	}
	dl, err := s.List(ctx, store.Filter{Flow: "f", Status: store.Dead})
	must(t, err)
	if !slices.Equal(ids(dl), []string{m.ID}) {
		t.Errorf("dead letters of f: %v", ids(dl))
	}
	if n, _, _ := s.Depth(ctx, "f"); n != 0 {
		t.Errorf("depth %d with only a dead letter", n)
	}
	// Replay (a new message) and discard.
	d.Status, d.Reason = store.Discarded, "duplicate order"
	must(t, s.Save(ctx, d))
	if dl, _ := s.List(ctx, store.Filter{Status: store.Dead}); len(dl) != 0 {
		t.Errorf("discarded message still a dead letter: %v", ids(dl))
	}
}

// Two replays of one dead letter (two replicas, two operators) queue it
// once: a Save with Expect writes only while the status is the expected.
func testReplayOnce(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("f", time.Now())
	accept(t, s, m)
	got := lease(t, s, "f", time.Now(), 1)[0]
	got.Status, got.Error = store.Dead, "status 422"
	must(t, s.Save(ctx, got))
	a, err := s.Get(ctx, m.ID)
	must(t, err)
	b, err := s.Get(ctx, m.ID)
	must(t, err)
	var errs []error
	for _, r := range []*store.Message{a, b} {
		r.Status, r.DueAt, r.Expect = store.Queued, time.Now(), store.Dead
		errs = append(errs, s.Save(ctx, r))
	}
	if errs[0] != nil || !errors.Is(errs[1], store.ErrChanged) {
		t.Fatalf("replays: %v; want the first to land and the second to fail with ErrChanged", errs)
	}
	if got := lease(t, s, "f", time.Now(), 10); len(got) != 1 {
		t.Fatalf("leased %d copies of the replayed message", len(got))
	}
	b.Status, b.Reason, b.Expect = store.Discarded, "late discard", store.Dead
	if err := s.Save(ctx, b); !errors.Is(err, store.ErrChanged) {
		t.Fatalf("discard of a replayed message: %v; want ErrChanged", err)
	}
	if d, _ := s.Get(ctx, m.ID); d.Status != store.Running {
		t.Errorf("status %s; want running (leased after the replay)", d.Status)
	}
	// A replay that read the dead letter before another replay ran it
	// and it died again does not land either: the status is "dead" once
	// more, but the record is not the one it read.
	run := lease(t, s, "f", time.Now().Add(time.Hour), 10)
	if len(run) != 0 {
		t.Fatalf("leased %d more", len(run))
	}
	d, err := s.Get(ctx, m.ID)
	must(t, err)
	d.Status, d.Error = store.Dead, "died again"
	must(t, s.Save(ctx, d)) // the replayed run's outcome
	stale, err := s.Get(ctx, m.ID)
	must(t, err)
	again, err := s.Get(ctx, m.ID)
	must(t, err)
	again.Status, again.DueAt, again.Expect = store.Queued, time.Now(), store.Dead
	must(t, s.Save(ctx, again)) // replayed elsewhere ...
	got = lease(t, s, "f", time.Now(), 1)[0]
	got.Status, got.Error = store.Dead, "died a third time"
	must(t, s.Save(ctx, got)) // ... run, and dead again
	stale.Status, stale.DueAt, stale.Expect = store.Queued, time.Now(), store.Dead
	if err := s.Save(ctx, stale); !errors.Is(err, store.ErrChanged) {
		t.Fatalf("a replay of a dead letter read before it was replayed and died again: %v; want ErrChanged", err)
	}
	if d, _ := s.Get(ctx, m.ID); d.Status != store.Dead || d.Error != "died a third time" {
		t.Errorf("after the stale replay: %s %q; want the newest dead letter kept", d.Status, d.Error)
	}
}

func testCheckpoints(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("f", time.Now())
	accept(t, s, m)
	got := lease(t, s, "f", time.Now(), 1)[0]
	got.State = json.RawMessage(`{"next":2,"body":{"big":820982911946154777}}`)
	got.Memo = map[string]json.RawMessage{"f:" + m.ID + ":1": json.RawMessage(`{"status":201,"body":{"so":"SO-1"}}`)}
	must(t, s.Save(ctx, got)) // a memo written mid-run: still running
	if again := lease(t, s, "f", time.Now(), 10); len(again) != 0 {
		t.Fatalf("saving a running message requeued it: %v", ids(again))
	}
	fail(t, s, got, time.Now())
	r := lease(t, s, "f", time.Now(), 1)
	if len(r) != 1 {
		t.Fatal("retry not leased")
	}
	var st, want any
	_ = json.Unmarshal(r[0].State, &st)
	_ = json.Unmarshal(got.State, &want)
	if fmt.Sprint(st) != fmt.Sprint(want) || string(r[0].Memo["f:"+m.ID+":1"]) != `{"status":201,"body":{"so":"SO-1"}}` {
		t.Fatalf("checkpoint %s memo %v", r[0].State, r[0].Memo)
	}
	if !json.Valid(r[0].State) || !strings.Contains(string(r[0].State), "820982911946154777") {
		t.Errorf("checkpoint lost digits: %s", r[0].State)
	}
}

func testAcceptIdempotent(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("f", time.Now())
	accept(t, s, m)
	again := *m
	again.Body = json.RawMessage(`{"other":true}`)
	existing, err := s.Accept(ctx, &again, time.Hour)
	must(t, err)
	if existing == nil || existing.ID != m.ID || string(existing.Body) != string(m.Body) {
		t.Fatalf("same id twice: existing %+v", existing)
	}
	// Same dedup key, another id: the original is returned, nothing stored.
	k1 := msg("f", time.Now())
	k1.DedupKey = "f:order-1"
	accept(t, s, k1)
	k2 := msg("f", time.Now())
	k2.DedupKey = "f:order-1"
	existing, err = s.Accept(ctx, k2, time.Hour)
	must(t, err)
	if existing == nil || existing.ID != k1.ID || existing.Status != store.Queued {
		t.Fatalf("same key: existing %+v", existing)
	}
	if _, err := s.Get(ctx, k2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the duplicate was stored: %v", err)
	}
	if got := lease(t, s, "f", time.Now(), 10); !slices.Equal(ids(got), []string{m.ID, k1.ID}) {
		t.Errorf("queue holds %v, want %v", ids(got), []string{m.ID, k1.ID})
	}
	if _, err := s.Get(ctx, "no-such-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
}

func testAcceptConcurrent(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	// Replicas firing the same schedule or storing the same event copy
	// accept the same id at once: one stores it.
	base := msg("f", time.Now())
	var stored sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 8 {
		stored.Add(1)
		go func() {
			defer stored.Done()
			m := *base
			existing, err := s.Accept(ctx, &m, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if existing == nil {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	stored.Wait()
	if fresh != 1 {
		t.Errorf("%d accepts stored the same id, want 1", fresh)
	}
	if got := lease(t, s, "f", time.Now(), 10); len(got) != 1 {
		t.Errorf("queue holds %v, want one copy", ids(got))
	}
}

func testDedupTTL(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	a := msg("f", time.Now())
	a.DedupKey = "f:ttl"
	existing, err := s.Accept(ctx, a, 300*time.Millisecond)
	must(t, err)
	b := msg("f", time.Now())
	b.DedupKey = "f:ttl"
	if existing, err = s.Accept(ctx, b, 300*time.Millisecond); err != nil || existing == nil || existing.ID != a.ID {
		t.Fatalf("within the TTL: existing %v err %v", existing, err)
	}
	time.Sleep(450 * time.Millisecond)
	c := msg("f", time.Now())
	c.DedupKey = "f:ttl"
	if existing, err = s.Accept(ctx, c, time.Minute); err != nil || existing != nil {
		t.Fatalf("after the TTL the key should be free: existing %v err %v", existing, err)
	}
	// Sync claims expire too.
	if _, ok, _ := s.ClaimKey(ctx, "f:sync-ttl", "x1", 200*time.Millisecond); !ok {
		t.Fatal("first claim lost")
	}
	if h, ok, _ := s.ClaimKey(ctx, "f:sync-ttl", "x2", time.Minute); ok || h != "x1" {
		t.Fatalf("claim within the TTL: holder %q ok %v", h, ok)
	}
	time.Sleep(350 * time.Millisecond)
	if h, ok, err := s.ClaimKey(ctx, "f:sync-ttl", "x3", time.Minute); !ok || h != "x3" || err != nil {
		t.Fatalf("claim after the TTL: holder %q ok %v err %v", h, ok, err)
	}
}

func testClaimRace(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	for round := range 5 {
		key := fmt.Sprintf("f:race-%d", round)
		const n = 16
		var wg sync.WaitGroup
		holders := make([]string, n)
		wins := make([]bool, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, ok, err := s.ClaimKey(ctx, key, fmt.Sprintf("c%d", i), time.Minute)
				if err != nil {
					t.Error(err)
				}
				holders[i], wins[i] = h, ok
			}()
		}
		wg.Wait()
		winner := ""
		for i, ok := range wins {
			if ok {
				if winner != "" {
					t.Fatalf("round %d: two claims won: %s and c%d", round, winner, i)
				}
				winner = fmt.Sprintf("c%d", i)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no claim won", round)
		}
		for i, h := range holders {
			if h != winner {
				t.Errorf("round %d: claimer c%d was told the holder is %q, want %q", round, i, h, winner)
			}
		}
	}
}

func testClaimReleaseConfirm(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	if _, ok, _ := s.ClaimKey(ctx, "k", "a", time.Minute); !ok {
		t.Fatal("claim lost")
	}
	must(t, s.ReleaseKey(ctx, "k", "b")) // not the holder: nothing happens
	if h, ok, _ := s.ClaimKey(ctx, "k", "c", time.Minute); ok || h != "a" {
		t.Fatalf("a release by a non-holder freed the key: holder %q ok %v", h, ok)
	}
	if err := s.ConfirmKey(ctx, "k", "b", time.Minute); err == nil {
		t.Error("a non-holder confirmed the key")
	}
	must(t, s.ReleaseKey(ctx, "k", "a")) // the failed run releases: the retry runs
	if h, ok, _ := s.ClaimKey(ctx, "k", "d", 300*time.Millisecond); !ok || h != "d" {
		t.Fatalf("after release: holder %q ok %v", h, ok)
	}
	must(t, s.ConfirmKey(ctx, "k", "d", time.Hour)) // success keeps it for the dedup TTL
	time.Sleep(450 * time.Millisecond)
	if h, ok, _ := s.ClaimKey(ctx, "k", "e", time.Minute); ok || h != "d" {
		t.Fatalf("a confirmed key was free after the claim TTL: holder %q ok %v", h, ok)
	}
}

func testRecover(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	a, b := msg("f", time.Now()), msg("f", time.Now())
	accept(t, s, a)
	accept(t, s, b)
	if got := lease(t, s, "f", time.Now(), 1); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("lease: %v", ids(got))
	}
	must(t, s.Close()) // the process dies with a leased
	s = openT(t, open)
	n, err := s.Recover(ctx)
	must(t, err)
	// A store may keep leases in memory only (bbolt): then nothing needs
	// recovering and the message simply is in the queue still.
	if n > 1 {
		t.Errorf("recovered %d, want at most 1", n)
	}

	if m, _ := s.Get(ctx, a.ID); m.Status != store.Queued {
		t.Errorf("recovered message has status %s", m.Status)
	}
	got := lease(t, s, "f", time.Now(), 10)
	if len(got) != 2 || !slices.Contains(ids(got), a.ID) || !slices.Contains(ids(got), b.ID) {
		t.Fatalf("after recover leased %v, want both", ids(got))
	}
}

func testSyncJournal(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("sync", time.Time{})
	m.Status, m.DedupKey, m.Attempt = store.Completed, "sync:r1", 1
	m.Response = json.RawMessage(`{"status":201,"body":{"so":"SO-9"}}`)
	must(t, s.Save(ctx, m))
	got, err := s.Get(ctx, m.ID)
	must(t, err)
	if got.Status != store.Completed || string(got.Response) != string(m.Response) {
		t.Fatalf("journaled sync run: %+v", got)
	}
	if q := lease(t, s, "sync", time.Now().Add(time.Hour), 10); len(q) != 0 {
		t.Errorf("a journaled sync run was queued: %v", ids(q))
	}
	l, err := s.List(ctx, store.Filter{Key: "sync:r1"})
	must(t, err)
	if !slices.Equal(ids(l), []string{m.ID}) {
		t.Errorf("list by key: %v", ids(l))
	}
}

// A sync run whose claim lapsed and was taken over by a resend still
// journals its answer; only the confirmation is skipped (the key stays
// with the resend).
func testFinishAfterTakeover(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	a, b := msg("sync", time.Time{}), msg("sync", time.Time{})
	key := "sync:" + a.ID
	if _, ok, err := s.ClaimKey(ctx, key, a.ID, 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("claim a: %v %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond) // a's run outlasts its claim
	if _, ok, err := s.ClaimKey(ctx, key, b.ID, time.Hour); err != nil || !ok {
		t.Fatalf("claim b after a's lapsed: %v %v", ok, err)
	}
	for _, m := range []*store.Message{b, a} { // b answers first, a late
		m.Status, m.DedupKey, m.Attempt, m.Response = store.Completed, key, 1, json.RawMessage(`{"status":200}`)
		must(t, s.Finish(ctx, m, time.Hour))
	}
	for _, m := range []*store.Message{a, b} {
		if got, err := s.Get(ctx, m.ID); err != nil || got.Status != store.Completed {
			t.Errorf("journal of %s: %+v %v", m.ID, got, err)
		}
	}
	if h, ok, err := s.ClaimKey(ctx, key, "c", time.Hour); err != nil || ok || h != b.ID {
		t.Errorf("the key after both finished: holder %q ok %v err %v; want held by %s", h, ok, err, b.ID)
	}
}

// A failed sync run lets its key go to the sender's retry, which claims
// it as that run: same id (so the same Idempotency-Keys), and its memo
// at hand. Nobody holds the key meanwhile: an async accept on it goes
// through, and a second claim while the retry runs is a duplicate. Once
// the retry succeeds the key is held as usual.
func testFailedRunResumed(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	a := msg("sync", time.Time{})
	key := "sync:" + a.ID
	if _, ok, err := s.ClaimKey(ctx, key, a.ID, time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	a.Status, a.DedupKey, a.Attempt, a.Error = store.Failed, key, 1, "wms: 503"
	a.Memo = map[string]json.RawMessage{"sync:" + a.ID + ":1": json.RawMessage(`{"status":201}`)}
	must(t, s.Finish(ctx, a, time.Hour))
	h, ok, err := s.ClaimKey(ctx, key, "retry", time.Minute)
	if err != nil || !ok || h != a.ID {
		t.Fatalf("the retry's claim: holder %q ok %v err %v; want claimed as %s", h, ok, err, a.ID)
	}
	if h, ok, _ := s.ClaimKey(ctx, key, "another", time.Minute); ok || h != a.ID {
		t.Errorf("a claim while the retry runs: holder %q ok %v; want held by %s", h, ok, a.ID)
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil || got.Status != store.Failed || string(got.Memo["sync:"+a.ID+":1"]) != `{"status":201}` {
		t.Fatalf("the failed run's record: %+v %v; want it failed, with its memo", got, err)
	}
	got.Status, got.Attempt, got.Error, got.Response = store.Completed, 2, "", json.RawMessage(`{"status":200}`)
	must(t, s.Finish(ctx, got, time.Hour))
	if h, ok, _ := s.ClaimKey(ctx, key, "later", time.Minute); ok || h != a.ID {
		t.Errorf("after the retry succeeded: holder %q ok %v; want held by %s", h, ok, a.ID)
	}

	// A released key is free for an async accept, which holds it anew.
	b := msg("sync", time.Time{})
	bkey := "sync:" + b.ID
	_, _, err = s.ClaimKey(ctx, bkey, b.ID, time.Minute)
	must(t, err)
	b.Status, b.DedupKey, b.Attempt = store.Failed, bkey, 1
	must(t, s.Finish(ctx, b, time.Hour))
	c := msg("async", time.Time{})
	c.DedupKey = bkey
	if existing, err := s.Accept(ctx, c, time.Hour); err != nil || existing != nil {
		t.Fatalf("accept on a released key: existing %v err %v; want it stored", existing, err)
	}
	if h, ok, _ := s.ClaimKey(ctx, bkey, "x", time.Minute); ok || h != c.ID {
		t.Errorf("after the accept: holder %q ok %v; want held by %s", h, ok, c.ID)
	}
}

// A queued message saved without a due time is due now.
func testZeroDue(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	m := msg("zero", time.Time{})
	accept(t, s, m)
	got := lease(t, s, "zero", time.Now().Add(time.Second), 10)
	if !slices.Equal(ids(got), []string{m.ID}) {
		t.Fatalf("leased %v; want %s, due now", ids(got), m.ID)
	}
	got[0].Status, got[0].DueAt = store.Retrying, time.Time{}
	must(t, s.Save(ctx, got[0]))
	if got := lease(t, s, "zero", time.Now().Add(time.Second), 10); !slices.Equal(ids(got), []string{m.ID}) {
		t.Fatalf("after a save without due time leased %v; want %s", ids(got), m.ID)
	}
}

func testList(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	var all []*store.Message
	for i := range 6 {
		flow := []string{"a", "b"}[i%2]
		m := msg(flow, time.Now())
		m.DedupKey = fmt.Sprintf("%s:k%d", flow, i/2)
		accept(t, s, m)
		all = append(all, m)
	}
	done := lease(t, s, "a", time.Now(), 1)[0] // all[0]
	done.Status = store.Completed
	must(t, s.Save(ctx, done))
	rev := func(ms ...*store.Message) []string {
		out := ids(ms)
		slices.Reverse(out)
		return out
	}
	cases := []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{}, rev(all...)},
		{store.Filter{Limit: 2}, rev(all[4], all[5])},
		{store.Filter{Flow: "a"}, rev(all[0], all[2], all[4])},
		{store.Filter{Flow: "b", Limit: 1}, rev(all[5])},
		{store.Filter{Status: store.Completed}, []string{all[0].ID}},
		{store.Filter{Status: store.Queued}, rev(all[1], all[2], all[3], all[4], all[5])},
		{store.Filter{Flow: "a", Status: store.Queued}, rev(all[2], all[4])},
		{store.Filter{Status: store.Queued, Limit: 3}, rev(all[3], all[4], all[5])},
		{store.Filter{Key: "b:k1"}, []string{all[3].ID}},
		{store.Filter{Flow: "a", Key: "b:k1"}, nil},
		{store.Filter{Since: all[3].ReceivedAt}, rev(all[3], all[4], all[5])},
		{store.Filter{Flow: "nope"}, nil},
	}
	for _, c := range cases {
		got, err := s.List(ctx, c.f)
		must(t, err)
		if g := ids(got); !slices.Equal(g, c.want) && !(len(g) == 0 && len(c.want) == 0) {
			t.Errorf("List(%+v) = %v, want %v", c.f, g, c.want)
		}
	}
}

// testListPages pages through a listing with cursors: every message once,
// in order, including messages received within one microsecond, whose
// order by id (as Redis indexes them) is not their order by time, and a
// message that arrives between two pages.
func testListPages(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	var all []*store.Message
	for range 5 {
		all = append(all, msg("p", time.Now()))
	}
	base := all[4].ReceivedAt.Add(time.Millisecond)
	for i, id := range []string{"m-p-z", "m-p-y", "m-p-x"} { // later ns, smaller id
		m := msg("p", time.Now())
		m.ID, m.ReceivedAt = id, base.Add(time.Duration(i+1))
		all = append(all, m)
	}
	for _, m := range all {
		accept(t, s, m)
	}
	want := ids(all)
	slices.Reverse(want)
	for _, f := range []store.Filter{{Limit: 1}, {Limit: 2}, {Limit: 3, Flow: "p"}, {Limit: 2, Status: store.Queued}} {
		var got []string
		for page := 0; ; page++ {
			ms, err := s.List(ctx, f)
			must(t, err)
			if len(ms) == 0 || page > len(all) {
				break
			}
			got = append(got, ids(ms)...)
			f.After = store.CursorOf(ms[len(ms)-1])
		}
		if !slices.Equal(got, want) {
			t.Errorf("pages of %d (flow %q, status %q) = %v, want %v", f.Limit, f.Flow, f.Status, got, want)
		}
	}
	// A message that arrives after the first page is on no later page:
	// the cursor is a place, not an offset.
	first, err := s.List(ctx, store.Filter{Limit: 3})
	must(t, err)
	accept(t, s, msg("p", time.Now()))
	next, err := s.List(ctx, store.Filter{Limit: 3, After: store.CursorOf(first[2])})
	must(t, err)
	if g := ids(next); !slices.Equal(g, want[3:6]) {
		t.Errorf("page after a new arrival = %v, want %v", g, want[3:6])
	}
	c, err := store.ParseCursor(store.CursorOf(all[6]).String())
	if err != nil || !c.At.Equal(all[6].ReceivedAt) || c.ID != all[6].ID {
		t.Errorf("cursor round trip = %+v, %v; want %v %s", c, err, all[6].ReceivedAt, all[6].ID)
	}
	if _, err := store.ParseCursor("bm90IGEgY3Vyc29y"); err == nil {
		t.Error("ParseCursor took a string that is no cursor")
	}
}

// A leased message is listed as running, as Get reports it: not as
// queued, and found by the status filter running.
func testListLeased(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	first, second := msg("f", time.Now()), msg("f", time.Now())
	accept(t, s, first)
	accept(t, s, second)
	if got := lease(t, s, "f", time.Now(), 1); len(got) != 1 || got[0].ID != first.ID {
		t.Fatalf("lease: %v", ids(got))
	}
	status := func(ms []*store.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID+"="+string(m.Status))
		}
		return out
	}
	for _, c := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{Flow: "f"}, []string{second.ID + "=queued", first.ID + "=running"}},
		{store.Filter{Status: store.Running}, []string{first.ID + "=running"}},
		{store.Filter{Flow: "f", Status: store.Queued}, []string{second.ID + "=queued"}},
	} {
		got, err := s.List(ctx, c.f)
		must(t, err)
		if g := status(got); !slices.Equal(g, c.want) {
			t.Errorf("List(%+v) = %v, want %v", c.f, g, c.want)
		}
	}
}

func testDepth(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	if n, oldest, err := s.Depth(ctx, "f"); err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("empty: %d %v %v", n, oldest, err)
	}
	a, b, c := msg("f", time.Now()), msg("f", time.Now().Add(time.Hour)), msg("f", time.Now())
	for _, m := range []*store.Message{a, b, c} {
		accept(t, s, m)
	}
	n, oldest, err := s.Depth(ctx, "f")
	must(t, err)
	if n != 3 || !oldest.Equal(a.ReceivedAt) {
		t.Errorf("depth %d oldest %v, want 3 and %v", n, oldest, a.ReceivedAt)
	}
	lease(t, s, "f", time.Now(), 1) // a is running: no longer waiting
	if n, oldest, _ = s.Depth(ctx, "f"); n != 2 || !oldest.Equal(b.ReceivedAt) {
		t.Errorf("after a lease: depth %d oldest %v, want 2 and %v", n, oldest, b.ReceivedAt)
	}
}

func testRevisions(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	at := time.Now().UTC().Truncate(time.Second)
	for _, n := range []int{2, 1, 10, 3} {
		must(t, s.AddRevision(ctx, store.Revision{Flow: "f", Number: n, Hash: fmt.Sprint("h", n), Source: "steps: []", Author: "file", At: at}))
	}
	must(t, s.AddRevision(ctx, store.Revision{Flow: "g", Number: 1}))
	revs, err := s.Revisions(ctx, "f")
	must(t, err)
	var nums []int
	for _, r := range revs {
		nums = append(nums, r.Number)
	}
	if !slices.Equal(nums, []int{1, 2, 3, 10}) || revs[0].Hash != "h1" || !revs[0].At.Equal(at) || revs[0].Source != "steps: []" {
		t.Errorf("revisions %v %+v", nums, revs[0])
	}
	if none, err := s.Revisions(ctx, "nope"); err != nil || len(none) != 0 {
		t.Errorf("unknown flow: %v %v", none, err)
	}
	// One revision, or the latest, without listing them all.
	for _, c := range []struct {
		flow    string
		n, want int
	}{{"f", 0, 10}, {"f", 3, 3}, {"f", 1, 1}, {"g", 0, 1}, {"g", 1, 1}} {
		r, err := s.Revision(ctx, c.flow, c.n)
		if err != nil || r.Number != c.want || r.Flow != c.flow {
			t.Errorf("Revision(%s, %d) = %+v, %v; want number %d", c.flow, c.n, r, err, c.want)
		}
	}
	if r, _ := s.Revision(ctx, "f", 3); r == nil || r.Hash != "h3" || r.Source != "steps: []" || !r.At.Equal(at) {
		t.Errorf("Revision(f, 3) = %+v", r)
	}
	// "f" is a prefix of "ff" and "f" sorts before "f\x00...": neither leaks.
	must(t, s.AddRevision(ctx, store.Revision{Flow: "ff", Number: 99}))
	must(t, s.AddRevision(ctx, store.Revision{Flow: "e", Number: 7}))
	if r, err := s.Revision(ctx, "f", 0); err != nil || r.Number != 10 {
		t.Errorf("latest of f beside ff and e: %+v %v", r, err)
	}
	for _, c := range []struct {
		flow string
		n    int
	}{{"nope", 0}, {"f", 4}, {"f", 11}, {"fff", 0}, {"d", 0}} {
		if r, err := s.Revision(ctx, c.flow, c.n); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Revision(%s, %d) = %+v, %v; want ErrNotFound", c.flow, c.n, r, err)
		}
	}
}

func testAudit(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 5 {
		must(t, s.AppendAudit(ctx, store.AuditEntry{At: at.Add(time.Duration(i) * time.Millisecond), Actor: "ops", Action: "flow.update", Target: fmt.Sprint("f", i)}))
	}
	got, err := s.Audit(ctx, 3)
	must(t, err)
	var targets []string
	for _, a := range got {
		targets = append(targets, a.Target)
	}
	if !slices.Equal(targets, []string{"f4", "f3", "f2"}) || got[0].Actor != "ops" || !got[0].At.Equal(at.Add(4*time.Millisecond)) {
		t.Errorf("audit(3): %+v", got)
	}
	if all, _ := s.Audit(ctx, 0); len(all) != 5 {
		t.Errorf("audit(0): %d entries, want 5", len(all))
	}
}

func testMeta(t *testing.T, open func(t *testing.T) store.Store) {
	s := openT(t, open)
	if v, err := s.GetMeta(ctx, "disabled"); err != nil || v != nil {
		t.Fatalf("absent: %q %v", v, err)
	}
	must(t, s.PutMeta(ctx, "disabled", []byte(`["orders"]`)))
	if v, _ := s.GetMeta(ctx, "disabled"); string(v) != `["orders"]` {
		t.Errorf("got %q", v)
	}
	must(t, s.PutMeta(ctx, "disabled", nil))
	if v, _ := s.GetMeta(ctx, "disabled"); v != nil {
		t.Errorf("after delete: %q", v)
	}

	// SwapMeta writes only over the value expected, absence included.
	for _, tc := range []struct {
		old, value []byte
		ok         bool
		after      string
	}{
		{[]byte(`"a"`), []byte(`"b"`), false, ""}, // absent, not "a"
		{nil, []byte(`"a"`), true, `"a"`},
		{nil, []byte(`"b"`), false, `"a"`},
		{[]byte(`"b"`), []byte(`"c"`), false, `"a"`},
		{[]byte(`"a"`), []byte(`"b"`), true, `"b"`},
		{[]byte(`"b"`), nil, true, ""},
	} {
		ok, err := s.SwapMeta(ctx, "watermark/x", tc.old, tc.value)
		must(t, err)
		v, _ := s.GetMeta(ctx, "watermark/x")
		if ok != tc.ok || string(v) != tc.after {
			t.Errorf("SwapMeta(%s, %s) = %v, now %q; want %v, %q", tc.old, tc.value, ok, v, tc.ok, tc.after)
		}
	}
}
