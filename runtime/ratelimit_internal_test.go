package runtime

import (
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/flows"
)

// The embedded limiter forgets a key only once its bucket is full again,
// when a new bucket would be the same: a bucket still refilling, or one
// that waiting calls have reserved ahead, is kept.
func TestLimiterForgetsOnlyFullBuckets(t *testing.T) {
	t0 := time.Now()
	t.Run("refilling", func(t *testing.T) {
		l := NewLimiter()
		rl := flows.RateLimit{Limit: 1, Per: time.Second, Burst: 120}
		if !l.get("k", rl, t0).lim.AllowN(t0, 120) {
			t.Fatal("burst refused")
		}
		t1 := t0.Add(61 * time.Second)
		l.get("other", rl, t1) // sweeps
		// Over 0..61 s the key may have Burst + 61 = 181 tokens.
		if got := l.get("k", rl, t1).lim.TokensAt(t1); got > 61.5 {
			t.Errorf("61 s after a burst of 120 at 1/s the key has %.0f tokens, want 61", got)
		}
	})
	t.Run("reserved", func(t *testing.T) {
		l := NewLimiter()
		rl := flows.RateLimit{Limit: 1, Per: time.Minute, Burst: 1}
		b := l.get("k", rl, t0)
		for range 12 { // twelve calls waiting, the last for eleven minutes
			b.lim.ReserveN(t0, 1)
		}
		t1 := t0.Add(11 * time.Minute)
		l.get("other", rl, t1) // sweeps
		if got := l.get("k", rl, t1).lim.TokensAt(t1); got >= 1 {
			t.Errorf("a key with a call still waiting for its token has %.0f free", got)
		}
	})
}
