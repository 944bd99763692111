package runtime

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/runtime/store"
)

var _ RateLimiter = (*RedisLimiter)(nil)

// RedisLimiter shares rate limits between replicas: one GCRA (generic cell
// rate algorithm) state per key in Redis, updated by one Lua script on the
// server's clock (TIME), so replicas with skewed clocks agree and a check
// is one round trip.
//
// Semantics are the in-process Limiter's token bucket: the emission
// interval is Per/Limit; Burst (default Limit, at least 1) is how many
// requests a key idle for Burst intervals may send at once. Over a window
// of d, a key gets at most Burst + d/interval requests.
//
// FailOpen decides what an unreachable Redis means. true (the default from
// NewRedisLimiter) lets traffic through: Allow answers ok together with
// the error, Wait returns nil — an outage never stops traffic, limits are
// just not enforced meanwhile. false refuses: Allow answers not ok (retry
// in a second) with the error, Wait returns the error (a retryLater) so
// the call step fails transiently: a sync run answers 503, a queued
// message waits a few seconds without counting an attempt (postpone).
type RedisLimiter struct {
	s        *store.Redis
	c        redis.UniversalClient
	prefix   string
	timeout  time.Duration
	FailOpen bool
}

// ClaimLimiter is a RateLimiter that also claims sync dedup keys, so that
// the sync accept path takes its token and claims its key in one round
// trip (see AllowClaim). The engine uses it when the limiter implements it.
type ClaimLimiter interface {
	RateLimiter
	AllowClaim(ctx context.Context, key string, rl flows.RateLimit, dedupKey, id string, ttl time.Duration) (ok bool, wait time.Duration, holder string, claimed bool, err error)
}

var _ ClaimLimiter = (*RedisLimiter)(nil)

// NewRedisLimiter returns a fail-open limiter that shares s's client; its
// keys are s's prefix + "gcra:" + the limit key. (Replicas of earlier
// versions, which kept the arrival time alone under rl:, pace apart from
// these during a rolling upgrade rather than fail on them.)
func NewRedisLimiter(s *store.Redis) *RedisLimiter {
	return &RedisLimiter{s: s, c: s.Client(), prefix: s.Prefix(), timeout: time.Second, FailOpen: true}
}

// gcraLua takes a token for KEYS[1] if there is one: ARGV[1] is the
// emission interval and ARGV[2] the burst. It sets allowed (1 or 0) and
// wait (µs until a token is free). The key holds "tat:interval:burst"
// (µs, µs, tokens): a state written under another limit (a hot reload
// changed it, or another flow paces the same key) keeps the tokens it
// left, at most the burst, counted at this limit's rate, as the
// in-process Limiter does. (The theoretical arrival time alone would keep
// the old rate's debt: raising 1/h to 100/s would refuse the key for up
// to an hour.)
//
// go-redis sends a call again when its answer is lost (a read timeout, a
// cut connection) though Redis may have run it: Allow then takes a second
// token. That is left so: marking each call would cost a write per
// request, for a rare token too many. AllowClaim, whose second run would
// refuse the request it had let through and leave its claim behind,
// recognises its own claim (allowClaimScript).
const gcraLua = `
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T, B = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat, pT, pB = now, T, B
local st = redis.call('GET', KEYS[1])
if st then
  local a, b, c = string.match(st, '^(%d+):(%d+):(%d+)$')
  if a then tat, pT, pB = tonumber(a), tonumber(b), tonumber(c) end
end
if tat < now then tat = now end
if pT ~= T or pB ~= B then
  local left = math.min(pB - (tat - now) / pT, B)
  tat = now + (B - left) * T
end
local allowed, wait = 0, math.ceil(tat - T * (B - 1) - now)
if wait <= 0 then
  allowed, wait = 1, 0
  tat = tat + T
  redis.call('SET', KEYS[1], string.format('%.0f:%d:%d', tat, T, B), 'PX', string.format('%d', math.ceil((tat - now) / 1000) + 1))
end
`

var gcraScript = redis.NewScript(gcraLua + `return {allowed, wait}`)

// allowClaimScript is GCRA on KEYS[1] then, when allowed, the store's
// ClaimKey on KEYS[2] (ARGV[3] message id, ARGV[4] ttl ms): the holder is
// returned when the key is taken. A key that message ARGV[3] holds
// already, or took over (KEYS[3], see store.ClaimLua), can only be this
// very call sent again by go-redis after its answer was lost (the id is
// new for every request): it took its token the first time, and answers
// as the claim does, without a second one.
var allowClaimScript = redis.NewScript(`
local ck, cby, cid, cttl = KEYS[2], KEYS[3], ARGV[3], ARGV[4]
if redis.call('GET', ck) ~= cid and redis.call('GET', cby) ~= cid then
` + gcraLua + `
  if allowed == 0 then return {0, wait} end
end
` + store.ClaimLua + `
return {1, 0, claimed, holder}
`)

func gcraArgs(rl flows.RateLimit) (interval int64, burst int) {
	interval = max(int64(rl.Per/time.Microsecond)/int64(rl.Limit), 1)
	return interval, max(rl.Burst, 1)
}

func (l *RedisLimiter) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.timeout)
}

// failed answers Allow when Redis could not be asked.
func (l *RedisLimiter) failed(err error) (bool, time.Duration, error) {
	err = fmt.Errorf("rate limit: %w", err)
	if l.FailOpen {
		return true, 0, err
	}
	return false, time.Second, err
}

// Allow takes a token for key now, or says how long until one is free.
func (l *RedisLimiter) Allow(ctx context.Context, key string, rl flows.RateLimit) (bool, time.Duration, error) {
	if rl.Limit <= 0 || rl.Per <= 0 {
		return true, 0, nil
	}
	ctx, cancel := l.deadline(ctx)
	defer cancel()
	interval, burst := gcraArgs(rl)
	r, err := l.s.Eval(ctx, gcraScript, []string{l.prefix + "gcra:" + key}, interval, burst).Int64Slice()
	if err != nil {
		return l.failed(err)
	}
	return r[0] == 1, time.Duration(r[1]) * time.Microsecond, nil
}

// Wait blocks until key has a token or ctx ends.
func (l *RedisLimiter) Wait(ctx context.Context, key string, rl flows.RateLimit) error {
	for {
		ok, wait, err := l.Allow(ctx, key, rl)
		if err != nil {
			if ctx.Err() != nil {
				// Not Redis out of reach: the caller gave up (shutdown,
				// a lost lease). No token was taken; fail-open must not
				// say one was.
				return ctx.Err()
			}
			if l.FailOpen {
				return nil
			}
			return retryLater{err} // not the target's doing: the message waits, no attempt counted
		}
		if ok {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// AllowClaim is Allow followed, when allowed, by ClaimKey(dedupKey, id,
// ttl) on the store the limiter was made from — one script, one round
// trip, for the sync accept path. claimed is false with the holder's id
// when the key is taken, and true with the id the run is to take (its
// own, or that of the failed run it resumes, see store.ClaimKey); a
// refused request claims nothing. On a Redis
// error nothing is claimed, err is set and FailOpen decides ok.
func (l *RedisLimiter) AllowClaim(ctx context.Context, key string, rl flows.RateLimit, dedupKey, id string, ttl time.Duration) (ok bool, wait time.Duration, holder string, claimed bool, err error) {
	if rl.Limit <= 0 || rl.Per <= 0 {
		holder, claimed, err = l.s.ClaimKey(ctx, dedupKey, id, ttl)
		return true, 0, holder, claimed, err
	}
	ctx, cancel := l.deadline(ctx)
	defer cancel()
	interval, burst := gcraArgs(rl)
	r, err := l.s.Eval(ctx, allowClaimScript, []string{l.prefix + "gcra:" + key, l.s.DedupKeyName(dedupKey), l.s.DedupTakerName(dedupKey)}, interval, burst, id,
		strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)).Slice()
	if err != nil {
		ok, wait, err = l.failed(err)
		return ok, wait, "", false, err
	}
	if len(r) < 2 {
		return l.FailOpen, time.Second, "", false, errors.New("rate limit: unexpected reply from redis")
	}
	if allowed, _ := r[0].(int64); allowed == 0 {
		us, _ := r[1].(int64)
		return false, time.Duration(us) * time.Microsecond, "", false, nil
	}
	holder, claimed, err = store.ClaimResult(r[2:])
	if err != nil {
		return l.FailOpen, time.Second, "", false, fmt.Errorf("rate limit: %w", err)
	}
	return true, 0, holder, claimed, nil
}
