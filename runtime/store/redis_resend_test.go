package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// answerLosses are the ways a script's answer gets lost after Redis ran
// it, each of which makes go-redis send the script again: the answer
// comes after the read timeout (300ms here), or the connection is cut.
var answerLosses = []struct {
	name string
	arm  func(p *storetest.Proxy, marker string)
}{
	{"late", func(p *storetest.Proxy, marker string) { p.DelayAnswer(marker, time.Second) }},
	{"cut", func(p *storetest.Proxy, marker string) { p.LoseAnswer(marker, nil) }},
}

// proxiedRedis opens a store on a fresh prefix through a proxy, with a
// read timeout of 300ms.
func proxiedRedis(t *testing.T, consumer string) (*store.Redis, *storetest.Proxy) {
	t.Helper()
	url, p := storetest.RedisProxy(t)
	return openRedis(t, p.Through(url, "read_timeout=300ms"), storetest.RedisPrefix(t, url), consumer, 0), p
}

// A save that Redis applied but whose answer was lost is sent again by
// go-redis. The second run found the lease acknowledged (ErrLeaseLost: the
// worker logged that it did not record the outcome it had recorded) or the
// dead letter replayed (ErrChanged: the replay API answered 409, "another
// request replayed it", for its own replay, and wrote no audit entry).
func TestRedisSaveSentAgainReportsItsOutcome(t *testing.T) {
	for _, loss := range answerLosses {
		t.Run(loss.name, func(t *testing.T) {
			s, p := proxiedRedis(t, "c")
			ctx := context.Background()
			ids := acceptN(t, s, "f", 1)
			got, err := s.Lease(ctx, "f", time.Now(), 1)
			if err != nil || len(got) != 1 {
				t.Fatalf("lease: %v %v", got, err)
			}
			m := got[0]
			m.Status, m.Error = store.Dead, "boom"
			loss.arm(p, ids[0])
			if err := s.Save(ctx, m); err != nil {
				t.Errorf("a worker's save whose answer was lost: %v; want nil, it landed", err)
			}
			d, err := s.Get(ctx, ids[0])
			if err != nil || d.Status != store.Dead {
				t.Fatalf("after the save: %+v %v; want a dead letter", d, err)
			}
			d.Status, d.Expect = store.Queued, store.Dead // a replay
			loss.arm(p, ids[0])
			if err := s.Save(ctx, d); err != nil {
				t.Errorf("a replay whose answer was lost: %v; want nil, it landed", err)
			}
			var leased []string
			for range 2 {
				got, err := s.Lease(ctx, "f", time.Now(), 10)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range got {
					leased = append(leased, m.ID)
				}
			}
			if !slices.Equal(leased, ids) {
				t.Errorf("leased after the replay: %v; want %v once", leased, ids)
			}
		})
	}
}

// A lease whose answer was lost is sent again by go-redis. The second run
// leased the next messages, and those the first run had leased stayed
// with this consumer, running for nobody, until another replica took
// them over a lease timeout later (30s by default), each counted as a
// delivery without an outcome.
func TestRedisLeaseSentAgainLosesNoMessage(t *testing.T) {
	for _, loss := range answerLosses {
		t.Run(loss.name, func(t *testing.T) {
			s, p := proxiedRedis(t, "c")
			ctx := context.Background()
			ids := acceptN(t, s, "f", 3)
			loss.arm(p, "q:f")
			got, err := s.Lease(ctx, "f", time.Now(), 2)
			if err != nil {
				t.Fatalf("a lease whose answer was lost: %v", err)
			}
			var leased []string
			for _, m := range got {
				if m.Status != store.Running || len(m.Body) == 0 {
					t.Errorf("leased %s: status %s, body %q", m.ID, m.Status, m.Body)
				}
				leased = append(leased, m.ID)
			}
			if !slices.Equal(leased, ids[:2]) {
				t.Errorf("leased %v; want the first two of %v", leased, ids)
			}
			rest, err := s.Lease(ctx, "f", time.Now(), 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range rest {
				leased = append(leased, m.ID)
			}
			if !slices.Equal(leased, ids) {
				t.Errorf("leased %v in all; want each of %v once", leased, ids)
			}
		})
	}
}
