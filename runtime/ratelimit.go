package runtime

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/conveyor-run/conveyor/flows"
)

// RateLimiter enforces rate limits: inbound requests are refused when
// over (Allow), outbound calls wait (Wait). The embedded Limiter keeps
// buckets in process; the Redis one shares them between replicas.
type RateLimiter interface {
	// Allow takes a token for key now, or says how long until one is free.
	// An error means the limiter could not be asked.
	Allow(ctx context.Context, key string, rl flows.RateLimit) (bool, time.Duration, error)
	// Wait blocks until key has a token or ctx ends.
	Wait(ctx context.Context, key string, rl flows.RateLimit) error
}

var _ RateLimiter = (*Limiter)(nil)

// Limiter is the embedded store's rate limiting: one token bucket per key
// (golang.org/x/time/rate), refilled at Limit per Per, holding up to Burst
// tokens (default Limit). A key idle for a minute whose bucket is full
// again is forgotten: a new bucket would be the same, whereas forgetting
// one still refilling, or reserved ahead by waiting calls, would hand out
// tokens the limit does not allow. Limits that name the same key share
// its bucket.
//
// Burst semantics: a client idle long enough may send Burst requests at
// once; after that, one request per Per/Limit.
type Limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// NewLimiter returns an empty limiter.
func NewLimiter() *Limiter { return &Limiter{buckets: map[string]*bucket{}} }

func (l *Limiter) get(key string, rl flows.RateLimit, now time.Time) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := rate.Limit(float64(rl.Limit) / rl.Per.Seconds())
	burst := max(rl.Burst, 1)
	b, ok := l.buckets[key]
	switch {
	case !ok:
		b = &bucket{lim: rate.NewLimiter(limit, burst)}
		l.buckets[key] = b
	case b.lim.Limit() != limit || b.lim.Burst() != burst:
		// Limits naming the same key (two flows pacing one ERP) share its
		// tokens, each request checked against its own rate and burst, as
		// in the Redis limiter. A fresh bucket here would hand out a full
		// burst whenever the other limit had been asked last.
		b.lim.SetLimitAt(now, limit)
		b.lim.SetBurstAt(now, burst)
	}
	b.used = now
	if now.Sub(l.sweep) > time.Minute {
		l.sweep = now
		for k, x := range l.buckets {
			if now.Sub(x.used) > time.Minute && x.lim.TokensAt(now) >= float64(x.lim.Burst()) {
				delete(l.buckets, k)
			}
		}
	}
	return b
}

// Allow takes a token for key now, or says how long until one is free.
func (l *Limiter) Allow(_ context.Context, key string, rl flows.RateLimit) (bool, time.Duration, error) {
	now := time.Now()
	b := l.get(key, rl, now)
	// AllowN changes nothing when it refuses. (Reserving and cancelling
	// did: a cancelled reservation gives back fewer tokens when others
	// were reserved after it, so concurrent refusals lost tokens and the
	// limiter granted 5% under its rate.)
	if b.lim.AllowN(now, 1) {
		return true, 0, nil
	}
	missing := 1 - b.lim.TokensAt(now)
	return false, time.Duration(missing / float64(b.lim.Limit()) * float64(time.Second)), nil
}

// Wait blocks until key has a token or ctx ends.
func (l *Limiter) Wait(ctx context.Context, key string, rl flows.RateLimit) error {
	return l.get(key, rl, time.Now()).lim.Wait(ctx)
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one, as
// the Retry-After header wants.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
