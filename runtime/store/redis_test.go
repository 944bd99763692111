package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// openRedis opens a store on url with prefix and consumer; the store is
// closed when t ends.
func openRedis(t testing.TB, url, prefix, consumer string, lease time.Duration) *store.Redis {
	t.Helper()
	s, err := store.OpenRedis(context.Background(), url, store.RedisOptions{Prefix: prefix, Consumer: consumer, LeaseTimeout: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRedisConformance(t *testing.T) {
	url := storetest.RedisURL(t)
	var prefixes sync.Map // *testing.T -> prefix: the same t reopens the same data, as the same consumer
	storetest.Run(t, func(t *testing.T) store.Store {
		p, loaded := prefixes.Load(t)
		if !loaded {
			p = storetest.RedisPrefix(t, url)
			prefixes.Store(t, p)
		}
		s, err := store.OpenRedis(context.Background(), url, store.RedisOptions{Prefix: p.(string), Consumer: "conformance"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func acceptN(t *testing.T, s store.Store, flow string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		now := time.Now().UTC()
		m := &store.Message{ID: fmt.Sprintf("%s-%d-%d", flow, now.UnixNano(), i), Flow: flow, Status: store.Queued, ReceivedAt: now, DueAt: now, Body: []byte(`{}`)}
		if ex, err := s.Accept(context.Background(), m, time.Hour); err != nil || ex != nil {
			t.Fatalf("accept: %v %v", ex, err)
		}
		out = append(out, m.ID)
	}
	return out
}

// Two replicas leasing one flow at once never get the same message.
func TestRedisReplicasNeverShareALease(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	a, b := openRedis(t, url, prefix, "a", 0), openRedis(t, url, prefix, "b", 0)
	want := acceptN(t, a, "f", 400)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range []*store.Redis{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for empty := 0; empty < 3; {
				ms, err := s.Lease(context.Background(), "f", time.Now(), 5)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ms) == 0 {
					empty++
				}
				mu.Lock()
				for _, m := range ms {
					seen[m.ID]++
				}
				mu.Unlock()
				for _, m := range ms {
					m.Status = store.Completed
					if err := s.Save(context.Background(), m); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("message %s leased %d times", id, seen[id])
		}
	}
}

// The leases of a replica that died are taken over once idle for the
// lease timeout, not before; Touch keeps a live replica's lease.
func TestRedisTakeOverAndTouch(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	a, b := openRedis(t, url, prefix, "a", 300*time.Millisecond), openRedis(t, url, prefix, "b", 300*time.Millisecond)
	ids := acceptN(t, a, "f", 2)
	held, err := a.Lease(ctx, "f", time.Now(), 2)
	if err != nil || len(held) != 2 {
		t.Fatalf("a leased %d: %v", len(held), err)
	}
	// a stays alive for a while and keeps touching the first message only.
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := a.Touch(ctx, ids[0]); err != nil {
			t.Fatalf("touch: %v", err)
		}
		got, err := b.Lease(ctx, "f", time.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range got {
			if m.ID == ids[0] {
				t.Fatal("b took over a lease that a kept touching")
			}
			if m.ID == ids[1] && time.Since(deadline.Add(-900*time.Millisecond)) < 300*time.Millisecond {
				t.Fatal("b took over a lease before the lease timeout")
			}
			if m.ID == ids[1] {
				m.Status = store.Completed
				if err := b.Save(ctx, m); err != nil {
					t.Fatal(err)
				}
				ids[1] = "" // taken over and done
			}
		}
		time.Sleep(80 * time.Millisecond)
	}
	if ids[1] != "" {
		t.Fatal("b never took over the untouched lease")
	}
	// a dies: b takes the first message over too, and a's touch says so.
	time.Sleep(400 * time.Millisecond)
	got, err := b.Lease(ctx, "f", time.Now(), 10)
	if err != nil || len(got) != 1 || got[0].ID != ids[0] {
		t.Fatalf("after a died b leased %v %v", got, err)
	}
	if err := a.Touch(ctx, ids[0]); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("touch of a lost lease: %v, want ErrLeaseLost", err)
	}
	if err := b.Touch(ctx, ids[0]); err != nil {
		t.Errorf("touch by the new holder: %v", err)
	}
}

// A message whose worker dies every time it is leased ends in the
// dead-letter queue after MaxDeliveries leases ("leased this many times
// without an outcome being saved"): also when the worker checkpoints (a
// memo flush, a Save with status running) before it dies, as a
// checkpoint is no outcome. The lease that dead-letters it says so
// (LeaseDeadLettering), for the engine to count it.
func TestRedisPoisonMessageIsDeadLettered(t *testing.T) {
	for _, checkpoint := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkpoint=%v", checkpoint), func(t *testing.T) {
			url := storetest.RedisURL(t)
			prefix := storetest.RedisPrefix(t, url)
			ctx := context.Background()
			s, err := store.OpenRedis(ctx, url, store.RedisOptions{Prefix: prefix, LeaseTimeout: 50 * time.Millisecond, MaxDeliveries: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			id := acceptN(t, s, "f", 1)[0]
			for i := 1; i <= 4; i++ {
				got, dead, err := s.LeaseDeadLettering(ctx, "f", time.Now(), 1)
				if err != nil {
					t.Fatal(err)
				}
				if want := i <= 3; (len(got) == 1) != want {
					t.Fatalf("lease %d: got %d messages", i, len(got))
				}
				var wantDead []string
				if i == 4 {
					wantDead = []string{id}
				}
				if !slices.Equal(dead, wantDead) {
					t.Fatalf("lease %d: dead-lettered %v, want %v", i, dead, wantDead)
				}
				if checkpoint && len(got) == 1 {
					got[0].Memo = map[string]json.RawMessage{"k1": json.RawMessage(`{"status":200}`)}
					if err := s.Save(ctx, got[0]); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(80 * time.Millisecond) // the worker dies
			}
			m, err := s.Get(ctx, id)
			if err != nil || m.Status != store.Dead || !strings.Contains(m.Error, "worker was lost") || len(m.Attempts) != 1 {
				t.Fatalf("poison message: %+v %v", m, err)
			}
			if dl, _ := s.List(ctx, store.Filter{Status: store.Dead}); len(dl) != 1 {
				t.Errorf("dead letters: %d", len(dl))
			}
		})
	}
}

// During an outage every call fails fast; when Redis is back the same
// store works again without being reopened.
func TestRedisOutageFailsFastAndRecovers(t *testing.T) {
	url, p := storetest.RedisProxy(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	s, err := store.OpenRedis(ctx, p.Through(url, ""), store.RedisOptions{Prefix: prefix, CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acceptN(t, s, "f", 1)
	calls := map[string]func() error{
		"accept": func() error {
			_, err := s.Accept(ctx, &store.Message{ID: "x", Flow: "f", Body: []byte(`1`)}, time.Hour)
			return err
		},
		"lease": func() error { _, err := s.Lease(ctx, "f", time.Now(), 1); return err },
		"claim": func() error { _, _, err := s.ClaimKey(ctx, "k", "x", time.Minute); return err },
		"get":   func() error { _, err := s.Get(ctx, "x"); return err },
		"ping":  func() error { return s.Ping(ctx) },
	}
	for _, mode := range []string{"down", "stall"} {
		if mode == "down" {
			p.Down()
		} else {
			p.Stall()
		}
		for name, call := range calls {
			start := time.Now()
			err := call()
			if err == nil {
				t.Errorf("%s: %s succeeded while redis is unreachable", mode, name)
			}
			d := time.Since(start)
			if d > 2500*time.Millisecond {
				t.Errorf("%s: %s took %s to fail", mode, name, d)
			}
			t.Logf("redis %s: %s failed after %s: %v", mode, name, d.Round(time.Millisecond), err)
		}
		p.Up()
		back := time.Now()
		deadline := back.Add(5 * time.Second)
		for s.Ping(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the store did not recover after redis came back", mode)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("redis %s: working again %s after it came back", mode, time.Since(back).Round(time.Millisecond))
		if got, err := s.Lease(ctx, "f", time.Now(), 1); err != nil {
			t.Fatalf("%s: after recovery: %v", mode, err)
		} else if len(got) == 1 {
			got[0].Status = store.Queued
			_ = s.Save(ctx, got[0])
		}
	}
	// A server that is not there at all: opening returns fast, and Ping
	// says it is out of reach (see TestRedisOpenWaitsForAnOutageNotARefusal).
	start := time.Now()
	c, err := store.OpenRedis(ctx, "redis://127.0.0.1:1", store.RedisOptions{})
	if err != nil || time.Since(start) > 3*time.Second {
		t.Fatalf("open on a closed port: %v after %s", err, time.Since(start))
	}
	defer c.Close()
	if err := c.Ping(ctx); err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("ping on a closed port: %v after %s", err, time.Since(start))
	}
}

// A replica may start before its Redis does (a host that boots, a
// failover during a rollout): OpenRedis then returns a store that works
// as soon as Redis answers, its scripts loaded by their first calls. A
// Redis that answers and refuses the credentials is the configuration,
// not an outage: opening fails, saying so, without the password.
func TestRedisOpenWaitsForAnOutageNotARefusal(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	opt, _ := redis.ParseURL(url)
	ctx := context.Background()
	p := storetest.NewProxy(t, opt.Addr)
	p.Down()
	s, err := store.OpenRedis(ctx, p.Through(url, ""), store.RedisOptions{Prefix: prefix, Consumer: "a", CallTimeout: time.Second})
	if err != nil {
		t.Fatalf("open while redis is out of reach: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping answered while redis is out of reach")
	}
	p.Up()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping once redis is back: %v", err)
	}
	acceptN(t, s, "f", 1)
	if got, err := s.Lease(ctx, "f", time.Now(), 1); err != nil || len(got) != 1 {
		t.Fatalf("lease once redis is back: %v %v", got, err)
	}

	_, err = store.OpenRedis(ctx, fmt.Sprintf("redis://cvtest-nobody:s3cret@%s/%d", opt.Addr, opt.DB), store.RedisOptions{Prefix: prefix})
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("open with a wrong password: %v, want WRONGPASS with a hint and no password", err)
	}
}

// Connections killed by the server (CLIENT KILL, a failover, an idle
// timeout) are replaced on the next call.
func TestRedisClientKill(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	s := openRedis(t, url, prefix, fmt.Sprintf("kill-%d", time.Now().UnixNano()), 0)
	acceptN(t, s, "f", 1)
	opt, _ := redis.ParseURL(url)
	admin := redis.NewClient(opt)
	defer admin.Close()
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name=conveyor:"+s.Consumer()+" ") {
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					if admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err() == nil {
						killed++
					}
				}
			}
		}
	}
	if killed == 0 {
		t.Fatal("found no connection of the store to kill")
	}
	if _, err := s.Lease(ctx, "f", time.Now(), 1); err != nil {
		t.Fatalf("first call after CLIENT KILL: %v", err)
	}
}

// roundTrips counts commands and pipelines sent by a client.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// Every queue operation is one round trip.
func TestRedisRoundTrips(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	s := openRedis(t, url, prefix, "rt", 0)
	acceptN(t, s, "warm", 1) // scripts loaded
	rt := &roundTrips{}
	s.Client().AddHook(rt)
	count := func(what string, f func()) {
		t.Helper()
		before := rt.n.Load()
		f()
		if n := rt.n.Load() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", what, n)
		}
	}
	now := time.Now()
	m := &store.Message{ID: "rt1", Flow: "f", Status: store.Queued, DedupKey: "f:rt1", ReceivedAt: now, DueAt: now, Body: []byte(`{}`)}
	count("accept", func() { _, _ = s.Accept(ctx, m, time.Hour) })
	var got []*store.Message
	count("lease", func() { got, _ = s.Lease(ctx, "f", time.Now(), 10) })
	count("touch", func() { _ = s.Touch(ctx, "rt1") })
	got[0].Status = store.Completed
	count("save", func() { _ = s.Save(ctx, got[0]) })
	count("claim", func() { _, _, _ = s.ClaimKey(ctx, "f:sync", "rt2", time.Hour) })
	sm := &store.Message{ID: "rt2", Flow: "f", Status: store.Completed, DedupKey: "f:sync", ReceivedAt: now, Body: []byte(`{}`)}
	count("finish", func() { _ = s.Finish(ctx, sm, time.Hour) })
	if h, ok, _ := s.ClaimKey(ctx, "f:sync", "rt3", time.Hour); ok || h != "rt2" {
		t.Errorf("Finish did not confirm the key: holder %q", h)
	}
	sm.ID, sm.DedupKey, sm.Status = "rt4", "f:sync2", store.Failed
	_, _, _ = s.ClaimKey(ctx, "f:sync2", "rt4", time.Hour)
	_ = s.Finish(ctx, sm, time.Hour)
	if _, ok, _ := s.ClaimKey(ctx, "f:sync2", "rt5", time.Hour); !ok {
		t.Error("Finish of a failed run did not release the key")
	}
}

// A script call whose caller has given up is not sent: it could land
// after the caller's retry. Calls still wanted go through the same
// pipelines.
func TestRedisEvalDropsAbandonedCalls(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	s := openRedis(t, url, prefix, "c1", time.Minute)
	incr := redis.NewScript(`return redis.call('INCR', KEYS[1])`)
	key := prefix + "evaltest"
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 {
		if err := s.Eval(gone, incr, []string{key}).Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned call: %v, want context.Canceled", err)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Eval(context.Background(), incr, []string{key}).Err(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // anything abandoned but sent would have landed
	if n, err := s.Client().Get(context.Background(), key).Int(); err != nil || n != 20 {
		t.Errorf("the counter is %d (%v); want 20: only the wanted calls ran", n, err)
	}
}

// Revisions stored before the revlast key existed are still found: the
// latest is then looked up among them all.
func TestRedisLatestRevisionWithoutRevlast(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	s := openRedis(t, url, prefix, "rev", 0)
	ctx := context.Background()
	for _, n := range []int{1, 3, 2} {
		if err := s.AddRevision(ctx, store.Revision{Flow: "f", Number: n, Hash: fmt.Sprint("h", n)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Client().Del(ctx, prefix+"revlast:f").Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Revision(ctx, "f", 0); err != nil || r.Number != 3 || r.Hash != "h3" {
		t.Errorf("latest = %+v, %v; want revision 3", r, err)
	}
}

// A finished message stays while its dedup key does, however short the
// journal's retention: a duplicate must still find what it repeats.
func TestRedisDedupHolderOutlivesTheJournal(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	s, err := store.OpenRedis(ctx, url, store.RedisOptions{Prefix: prefix, JournalTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	async := &store.Message{ID: "a1", Flow: "f", Status: store.Queued, DedupKey: "k-async", ReceivedAt: time.Now(), Body: []byte(`{}`)}
	if _, err := s.Accept(ctx, async, time.Hour); err != nil {
		t.Fatal(err)
	}
	async.Status = store.Completed
	sync := &store.Message{ID: "s1", Flow: "f", Status: store.Completed, DedupKey: "k-sync", ReceivedAt: time.Now(), Body: []byte(`{}`)}
	if _, ok, err := s.ClaimKey(ctx, sync.DedupKey, sync.ID, time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if err := s.Save(ctx, async); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, sync, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "s1"} {
		ttl, err := s.Client().PTTL(ctx, prefix+"m:"+id).Result()
		if err != nil || ttl < 59*time.Minute {
			t.Errorf("message %s expires in %v (%v); want with its dedup key, in about an hour", id, ttl, err)
		}
	}
}

// A dead replica's lease behind a long run of live ones is taken over:
// XAUTOCLAIM looks at ten pending entries per message asked for, and
// each scan used to start at the head again.
func TestRedisTakeOverBehindLiveLeases(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	const lease = 200 * time.Millisecond
	live, dead, taker := openRedis(t, url, prefix, "live", lease), openRedis(t, url, prefix, "dead", lease), openRedis(t, url, prefix, "taker", lease)
	ids := acceptN(t, live, "f", 60)
	held, err := live.Lease(ctx, "f", time.Now(), 59)
	if err != nil || len(held) != 59 {
		t.Fatalf("live leased %d: %v", len(held), err)
	}
	if got, err := dead.Lease(ctx, "f", time.Now(), 1); err != nil || len(got) != 1 || got[0].ID != ids[59] {
		t.Fatalf("dead leased %v: %v", got, err)
	}
	time.Sleep(lease + 50*time.Millisecond) // dead stops here; live renews
	for _, m := range held {
		if err := live.Touch(ctx, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		got, err := taker.Lease(ctx, "f", time.Now(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 {
			if got[0].ID != ids[59] {
				t.Fatalf("took over %s, a live lease", got[0].ID)
			}
			return
		}
		t.Logf("scan %d: nothing yet", i+1)
	}
	t.Fatal("the dead replica's lease was not taken over in 10 scans")
}

// Only finished messages leave the journal: a dead letter, and a message
// still waiting for its retry, stay in every listing however short the
// journal's retention (as in the embedded store, whose sweep keeps them),
// including the listing by dedup key.
func TestRedisDeadLettersStayListedPastTheJournal(t *testing.T) {
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	ctx := context.Background()
	const journal = 300 * time.Millisecond
	s, err := store.OpenRedis(ctx, url, store.RedisOptions{Prefix: prefix, JournalTTL: journal})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outcome := func(id, key string, st store.Status) {
		t.Helper()
		m := &store.Message{ID: id, Flow: "f", Status: store.Queued, DedupKey: key, ReceivedAt: time.Now().UTC(), Body: []byte(`{}`)}
		if ex, err := s.Accept(ctx, m, time.Millisecond); err != nil || ex != nil {
			t.Fatalf("accept %s: %v %v", id, ex, err)
		}
		got, err := s.Lease(ctx, "f", time.Now(), 1)
		if err != nil || len(got) != 1 || got[0].ID != id {
			t.Fatalf("lease %s: %v %v", id, got, err)
		}
		got[0].Status, got[0].DueAt = st, time.Now().Add(time.Hour)
		if err := s.Save(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
	}
	outcome("dead", "k-dead", store.Dead)
	outcome("waiting", "k-waiting", store.Retrying)
	time.Sleep(2 * journal)
	outcome("done", "", store.Completed) // a later save trims the journal
	for _, c := range []struct {
		f    store.Filter
		want []string
	}{
		{store.Filter{}, []string{"done", "waiting", "dead"}},
		{store.Filter{Flow: "f"}, []string{"done", "waiting", "dead"}},
		{store.Filter{Since: time.Now().Add(-time.Hour)}, []string{"done", "waiting", "dead"}},
		{store.Filter{Flow: "f", Limit: 2}, []string{"done", "waiting"}},
		{store.Filter{Key: "k-dead"}, []string{"dead"}},
		{store.Filter{Key: "k-waiting"}, []string{"waiting"}},
	} {
		got, err := s.List(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range got {
			ids = append(ids, m.ID)
		}
		if !slices.Equal(ids, c.want) {
			t.Errorf("List(%+v) = %v, want %v", c.f, ids, c.want)
		}
	}
	var pages []string
	for f := (store.Filter{Flow: "f", Limit: 1}); len(pages) < 5; {
		got, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		pages, f.After = append(pages, got[0].ID), store.CursorOf(got[0])
	}
	if want := []string{"done", "waiting", "dead"}; !slices.Equal(pages, want) {
		t.Errorf("pages of one = %v, want %v", pages, want)
	}
}
