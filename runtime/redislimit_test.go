package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// redisStore opens a Redis store on a fresh prefix (cleaned up at t's end).
func redisStore(t testing.TB, url, prefix string, opts store.RedisOptions) *store.Redis {
	t.Helper()
	opts.Prefix = prefix
	s, err := store.OpenRedis(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// hammer calls Allow from several goroutines for d and returns the tokens
// granted and the start times of all calls.
func hammer(t *testing.T, l runtime.RateLimiter, key string, rl flows.RateLimit, d time.Duration) (int64, []time.Time) {
	var ok atomic.Int64
	var mu sync.Mutex
	var calls []time.Time
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Time
			for now := time.Now(); now.Sub(start) < d; now = time.Now() {
				allowed, _, err := l.Allow(context.Background(), key, rl)
				if err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, now)
				if allowed {
					ok.Add(1)
				}
				time.Sleep(500 * time.Microsecond)
			}
			mu.Lock()
			calls = append(calls, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok.Load(), calls
}

// idealGrants is what an exact GCRA grants to requests at the given times:
// the reference when the machine is too busy to keep the demand
// continuous (then fewer than Burst + d/interval are due).
func idealGrants(calls []time.Time, rl flows.RateLimit) int {
	slices.SortFunc(calls, func(a, b time.Time) int { return a.Compare(b) })
	T := rl.Per / time.Duration(rl.Limit)
	tau := T * time.Duration(max(rl.Burst, 1)-1)
	var tat time.Time
	n := 0
	for _, c := range calls {
		if tat.Before(c) {
			tat = c
		}
		if tat.Sub(c) <= tau {
			tat = tat.Add(T)
			n++
		}
	}
	return n
}

// checkAccuracy fails when got is more than 5% off: off Burst + d×rate
// (and never above it by more), and off an exact GCRA over the same
// requests (which equals Burst + d×rate while the demand is continuous).
func checkAccuracy(t *testing.T, what string, got int64, calls []time.Time, rl flows.RateLimit, d time.Duration) {
	t.Helper()
	nominal := float64(rl.Burst) + d.Seconds()*float64(rl.Limit)/rl.Per.Seconds()
	ideal := float64(idealGrants(calls, rl))
	devN, devI := (float64(got)-nominal)/nominal, (float64(got)-ideal)/ideal
	t.Logf("%s: granted %d of %d requests in %s; nominal %.0f (%+.2f%%), exact GCRA over the same requests %.0f (%+.2f%%)",
		what, got, len(calls), d, nominal, 100*devN, ideal, 100*devI)
	if devN > 0.05 || math.Abs(devI) > 0.05 {
		t.Errorf("%s: granted %d, want %.0f ±5%% (nominal %.0f)", what, got, ideal, nominal)
	}
}

// Over 10 s at 50/s with a burst of 10, each limiter grants 510 tokens,
// within 5%, however many goroutines ask.
func TestRateLimitAccuracy(t *testing.T) {
	testenv.SkipShort(t, "10 s per limiter")
	rl := flows.RateLimit{Limit: 50, Per: time.Second, Burst: 10}
	const d = 10 * time.Second
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		got, calls := hammer(t, runtime.NewLimiter(), "acc", rl, d)
		checkAccuracy(t, "embedded", got, calls, rl, d)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		url := storetest.RedisURL(t)
		s := redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})
		got, calls := hammer(t, runtime.NewRedisLimiter(s), "acc", rl, d)
		checkAccuracy(t, "redis", got, calls, rl, d)
	})
}

// Two limits naming the same key (two flows pacing calls to one ERP) share
// one budget: alternating them never refills the bucket, and together they
// get no more than the larger burst.
func TestLimitsSharingAKeyShareItsBudget(t *testing.T) {
	a := flows.RateLimit{Limit: 10, Per: time.Minute, Burst: 10}
	b := flows.RateLimit{Limit: 5, Per: time.Minute, Burst: 5}
	check := func(t *testing.T, l runtime.RateLimiter) {
		granted := 0
		for i := range 100 {
			rl := a
			if i%2 == 1 {
				rl = b
			}
			ok, _, err := l.Allow(context.Background(), "erp", rl)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				granted++
			}
		}
		if granted > 10 {
			t.Errorf("granted %d of 100, want at most 10", granted)
		}
	}
	t.Run("embedded", func(t *testing.T) { check(t, runtime.NewLimiter()) })
	t.Run("redis", func(t *testing.T) {
		url := storetest.RedisURL(t)
		check(t, runtime.NewRedisLimiter(redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})))
	})
}

func TestRedisLimiterBurstAndWait(t *testing.T) {
	url := storetest.RedisURL(t)
	s := redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})
	l := runtime.NewRedisLimiter(s)
	ctx := context.Background()
	rl := flows.RateLimit{Limit: 5, Per: time.Second, Burst: 3}
	for i := range 3 {
		if ok, _, err := l.Allow(ctx, "k", rl); !ok || err != nil {
			t.Fatalf("burst request %d refused: %v", i+1, err)
		}
	}
	ok, wait, err := l.Allow(ctx, "k", rl)
	if ok || err != nil || wait <= 100*time.Millisecond || wait > 200*time.Millisecond {
		t.Fatalf("past the burst: ok %v wait %s err %v; want refused, ~200ms", ok, wait, err)
	}
	if ok, _, _ := l.Allow(ctx, "other", rl); !ok {
		t.Error("another key shares the bucket")
	}
	start := time.Now()
	if err := l.Wait(ctx, "k", rl); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("Wait took %s, want ~%s", d, wait)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(short, "k", rl); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past its deadline: %v", err)
	}
}

// AllowClaim is the rate limit and the dedup claim in one round trip.
func TestRedisLimiterAllowClaim(t *testing.T) {
	url := storetest.RedisURL(t)
	s := redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})
	l := runtime.NewRedisLimiter(s)
	ctx := context.Background()
	rl := flows.RateLimit{Limit: 2, Per: time.Minute, Burst: 2}
	ok, _, holder, claimed, err := l.AllowClaim(ctx, "p", rl, "f:k1", "m1", time.Hour)
	if !ok || !claimed || holder != "m1" || err != nil {
		t.Fatalf("first: %v %q %v %v", ok, holder, claimed, err)
	}
	ok, _, holder, claimed, _ = l.AllowClaim(ctx, "p", rl, "f:k1", "m2", time.Hour)
	if !ok || claimed || holder != "m1" {
		t.Fatalf("duplicate: %v %q %v", ok, holder, claimed)
	}
	ok, wait, _, claimed, _ := l.AllowClaim(ctx, "p", rl, "f:k2", "m3", time.Hour)
	if ok || claimed || wait <= 0 {
		t.Fatalf("over the limit: ok %v claimed %v wait %s", ok, claimed, wait)
	}
	if _, ok, _ := s.ClaimKey(ctx, "f:k2", "m4", time.Hour); !ok {
		t.Error("a refused request claimed its key")
	}
}

// With Redis unreachable the limiter answers at once, as FailOpen says.
func TestRedisLimiterFailOpenOrClosed(t *testing.T) {
	url, p := storetest.RedisProxy(t)
	s := redisStore(t, p.Through(url, ""), storetest.RedisPrefix(t, url), store.RedisOptions{})
	l := runtime.NewRedisLimiter(s)
	ctx := context.Background()
	rl := flows.RateLimit{Limit: 1, Per: time.Hour, Burst: 1}
	p.Down()
	start := time.Now()
	if ok, _, err := l.Allow(ctx, "k", rl); !ok || err == nil {
		t.Errorf("fail-open (default): ok %v err %v; want ok with the error", ok, err)
	}
	if err := l.Wait(ctx, "k", rl); err != nil {
		t.Errorf("fail-open Wait: %v", err)
	}
	l.FailOpen = false
	if ok, wait, err := l.Allow(ctx, "k", rl); ok || err == nil || wait <= 0 {
		t.Errorf("fail-closed: ok %v wait %s err %v; want refused with the error", ok, wait, err)
	}
	if err := l.Wait(ctx, "k", rl); err == nil {
		t.Error("fail-closed Wait succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("four calls during the outage took %s", d)
	}
	p.Up()
	eventually(t, 5*time.Second, "the limiter to work again", func() bool {
		_, _, err := l.Allow(ctx, "k", rl)
		return err == nil
	})
}

// A limit changed under a key that holds state (a hot reload, or two
// flows pacing one ERP at different rates) counts the tokens the key has
// left at the new rate, in either limiter: raising 1/h to 100/s frees the
// key within one new interval, not an hour later, and lowering 5/s to
// 1/min after a full burst waits about a minute for the next token, not
// the second the old rate had left.
func TestChangedLimitCountsTokensLeft(t *testing.T) {
	check := func(t *testing.T, l runtime.RateLimiter) {
		ctx := context.Background()
		hourly := flows.RateLimit{Limit: 1, Per: time.Hour, Burst: 1}
		fast := flows.RateLimit{Limit: 100, Per: time.Second, Burst: 100}
		if ok, _, err := l.Allow(ctx, "up", hourly); !ok || err != nil {
			t.Fatalf("first request refused: %v", err)
		}
		if ok, wait, err := l.Allow(ctx, "up", fast); err != nil || (!ok && wait > time.Second) {
			t.Errorf("raised to 100/s: ok %v, wait %s (Retry-After %d s); want a token within 10ms", ok, wait, int(wait.Seconds()))
		}
		slow := flows.RateLimit{Limit: 1, Per: time.Minute, Burst: 1}
		small := flows.RateLimit{Limit: 5, Per: time.Second, Burst: 5}
		for i := range 5 {
			if ok, _, err := l.Allow(ctx, "down", small); !ok || err != nil {
				t.Fatalf("burst request %d refused: %v", i+1, err)
			}
		}
		if ok, wait, err := l.Allow(ctx, "down", slow); err != nil || ok || wait < 30*time.Second {
			t.Errorf("lowered to 1/min after a full burst: ok %v, wait %s; want refused for about a minute", ok, wait)
		}
	}
	t.Run("embedded", func(t *testing.T) { check(t, runtime.NewLimiter()) })
	t.Run("redis", func(t *testing.T) {
		url := storetest.RedisURL(t)
		check(t, runtime.NewRedisLimiter(redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})))
	})
}

// A Wait whose context has ended (shutdown, a lost lease, the sync
// request gone) returns the context's error, whether or not the limiter
// fails open: it never reports a token it did not take.
func TestWaitAfterContextEnds(t *testing.T) {
	check := func(t *testing.T, l runtime.RateLimiter) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rl := flows.RateLimit{Limit: 1, Per: time.Hour, Burst: 1}
		for i := range 10 {
			if err := l.Wait(ctx, "k", rl); !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait %d on an ended context: %v, want context.Canceled", i+1, err)
			}
		}
	}
	t.Run("embedded", func(t *testing.T) { check(t, runtime.NewLimiter()) })
	t.Run("redis", func(t *testing.T) {
		url := storetest.RedisURL(t)
		check(t, runtime.NewRedisLimiter(redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})))
	})
}

// An AllowClaim whose answer was lost (late past the read timeout, or the
// connection cut) is sent again by go-redis, and its second run took a
// second token: with a burst of 1 the request was refused (429) for the
// token its first run had taken, with its dedup key claimed, so the
// sender's retry was answered 409 until the claim lapsed.
func TestRedisAllowClaimSentAgainTakesOneToken(t *testing.T) {
	for _, loss := range []struct {
		name string
		arm  func(p *storetest.Proxy, marker string)
	}{
		{"late", func(p *storetest.Proxy, marker string) { p.DelayAnswer(marker, time.Second) }},
		{"cut", func(p *storetest.Proxy, marker string) { p.LoseAnswer(marker, nil) }},
	} {
		t.Run(loss.name, func(t *testing.T) {
			url, p := storetest.RedisProxy(t)
			s := redisStore(t, p.Through(url, "read_timeout=300ms"), storetest.RedisPrefix(t, url), store.RedisOptions{})
			l := runtime.NewRedisLimiter(s)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			two := flows.RateLimit{Limit: 2, Per: time.Hour, Burst: 2}
			one := flows.RateLimit{Limit: 1, Per: time.Hour, Burst: 1}
			// Loaded first: a script not loaded yet is not run by the
			// EVALSHA whose answer is lost.
			_, _, _ = l.Allow(ctx, "warm", two)
			_, _, _, _, _ = l.AllowClaim(ctx, "warm", two, "f:warm", "m0", time.Hour)
			// (Allow sent again takes a second token: see gcraLua.)
			loss.arm(p, "gcra:p")
			ok, wait, holder, claimed, err := l.AllowClaim(ctx, "p", one, "f:k", "m1", time.Hour)
			// Claimed, or (the claim sent again) found held by m1 itself:
			// the sync accept path takes both as m1's claim.
			if !ok || holder != "m1" || err != nil {
				t.Errorf("AllowClaim: ok %v (wait %s) claimed %v holder %q err %v; want allowed and held by m1", ok, wait, claimed, holder, err)
			}
			if ok, _, _, _, _ := l.AllowClaim(ctx, "p", one, "f:k2", "m2", time.Hour); ok {
				t.Error("a second request was allowed; the limit is 1")
			}
		})
	}
}

// A fail-closed limiter whose AllowClaim got no answer in time refuses the
// request (503), but the script may have run: the claim it took was left
// in place, so the sender's retry of the refused request was answered 409
// ("the same request is being processed") until the claim lapsed, the
// flow's timeout and a minute later. The refusal lets the claim go.
func TestFailClosedLimiterWithoutAnswerLeavesNoClaim(t *testing.T) {
	url, p := storetest.RedisProxy(t)
	dir := workspace(t, nil, map[string]string{
		"quote": "trigger: {http: {path: /quote, mode: sync}}\ndedup: {key: 'string(body.id)', ttl: 1h}\nrate_limit: {limit: 100, per: 1s}\nsteps: [{respond: {body: '{ok: true}'}}]\n",
	})
	cfg := fmt.Sprintf("store: {backend: redis, url: %q, fail_open: {rate_limit: false}}\n", p.Through(url, "prefix="+storetest.RedisPrefix(t, url)))
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg), 0o644))
	e := start(t, dir, runtime.Options{})
	u := "http://" + e.TriggerAddr() + "/quote"
	if code, _ := post(t, u, `{"id": 0}`); code != 200 { // loads the script
		t.Fatalf("first request: %d", code)
	}
	p.DelayAnswer("gcra:", 1500*time.Millisecond) // past the limiter's 1s, within the read timeout
	if code, _ := post(t, u, `{"id": 1}`); code != 503 {
		t.Fatalf("with the limiter's answer late: %d; want 503", code)
	}
	eventually(t, 5*time.Second, "the sender's retry to run (not 409)", func() bool {
		code, _ := post(t, u, `{"id": 1}`)
		return code == 200
	})
}
