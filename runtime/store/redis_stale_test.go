package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// takenOver sets up: a leases the one message of flow f, stalls past the
// lease timeout, b takes it over. It returns a's and b's copies.
func takenOver(t *testing.T, lease time.Duration) (a, b, c *store.Redis, ma, mb *store.Message) {
	t.Helper()
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	a, b, c = openRedis(t, url, prefix, "a", lease), openRedis(t, url, prefix, "b", lease), openRedis(t, url, prefix, "c", lease)
	id := acceptN(t, a, "f", 1)[0]
	got, err := a.Lease(ctx, "f", time.Now(), 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("a leased %v %v", got, err)
	}
	ma = got[0]
	time.Sleep(lease + 100*time.Millisecond) // a stalls (GC pause, partition, SIGSTOP)
	got, err = b.Lease(ctx, "f", time.Now(), 1)
	if err != nil || len(got) != 1 || got[0].ID != id {
		t.Fatalf("b took over %v %v", got, err)
	}
	mb = got[0]
	if err := a.Touch(ctx, id); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("a's touch after the takeover: %v", err)
	}
	return a, b, c, ma, mb
}

// A stale replica's retry (or requeue) must not touch the lease of the
// replica that took the message over: "a message is leased to one worker
// at a time".
func TestRedisStaleRetryDoesNotStealTheNewLease(t *testing.T) {
	ctx := context.Background()
	a, b, c, ma, mb := takenOver(t, 200*time.Millisecond)
	// a wakes up, its run failed transiently: it saves a retry due now.
	ma.Status, ma.DueAt = store.Retrying, time.Now()
	if err := a.Save(ctx, ma); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("stale save: %v; want ErrLeaseLost", err)
	}
	if err := b.Touch(ctx, mb.ID); err != nil {
		t.Errorf("b's lease after a's stale save: %v (b's pending entry was acknowledged by a)", err)
	}
	got, err := c.Lease(ctx, "f", time.Now(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("c leased %s while b still runs it: two replicas hold the message at once", got[0].ID)
	}
}

// A stale replica's checkpoint (the memo flush, a Save with status
// running) must not overwrite what the new owner recorded. Here the new
// owner scheduled a retry; a stale flush that landed would drop it from
// the due set and leave the message "running" with no lease, never
// delivered again.
func TestRedisStaleCheckpointKeepsTheNewOwnersRetry(t *testing.T) {
	ctx := context.Background()
	a, b, c, ma, mb := takenOver(t, 200*time.Millisecond)
	// b runs it, the target fails transiently: retry in 300ms.
	mb.Attempt++
	mb.Status, mb.DueAt, mb.Error = store.Retrying, time.Now().Add(300*time.Millisecond), "503"
	if err := b.Save(ctx, mb); err != nil {
		t.Fatal(err)
	}
	// a wakes up after its first call succeeded and flushes the memo
	// before its next effect (storeMemo.Flush: a Save with status running).
	ma.Memo = map[string]json.RawMessage{"k1": json.RawMessage(`{"status":200}`)}
	if err := a.Save(ctx, ma); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("stale checkpoint: %v; want ErrLeaseLost", err)
	}
	// a's heartbeat now sees the lost lease and drops the run without saving.
	time.Sleep(600 * time.Millisecond)
	for _, s := range []*store.Redis{b, c} {
		got, err := s.Lease(ctx, "f", time.Now(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 {
			return // the retry was delivered
		}
	}
	m, _ := c.Get(ctx, mb.ID)
	t.Errorf("the retry b scheduled is never delivered: status %s, error %q", m.Status, m.Error)
}

// saveUntilStored retries a Save whose reply was lost (timeout while
// Redis was slow or briefly unreachable; the script may have run). The
// second landing of a requeue must not acknowledge the lease another
// replica took in between.
func TestRedisRetriedRequeueDoesNotStealTheNewLease(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	a, b, c := openRedis(t, url, prefix, "a", 0), openRedis(t, url, prefix, "b", 0), openRedis(t, url, prefix, "c", 0)
	acceptN(t, a, "f", 1)
	got, err := a.Lease(ctx, "f", time.Now(), 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("a leased %v %v", got, err)
	}
	m := got[0]
	m.Status, m.DueAt = store.Queued, time.Now() // shutdown interrupted the run: requeue
	if err := a.Save(ctx, m); err != nil {       // lands, but the reply is lost
		t.Fatal(err)
	}
	gb, err := b.Lease(ctx, "f", time.Now(), 1)
	if err != nil || len(gb) != 1 {
		t.Fatalf("b leased %v %v", gb, err)
	}
	_ = a.Save(ctx, m) // saveUntilStored tries again
	if err := b.Touch(ctx, m.ID); err != nil {
		t.Errorf("b's lease after a's repeated save: %v", err)
	}
	if gc, _ := c.Lease(ctx, "f", time.Now(), 1); len(gc) != 0 {
		t.Errorf("c leased %s while b runs it", gc[0].ID)
	}
}
