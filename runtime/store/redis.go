package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the store for several replicas sharing one Redis (standalone,
// Sentinel or Cluster). Every replica is a consumer of one consumer group
// per flow; a message is leased to one consumer at a time, and the leases
// of a consumer that stops renewing them (a replica that died) are taken
// over by the others after LeaseTimeout (XAUTOCLAIM).
//
// Every operation that changes more than one key is one Lua script, so it
// is atomic and one round trip. Status, flow and receive time are kept
// beside the message record (binary, codec.go) so that scripts never
// parse it.
//
// Key layout (P is the prefix, default "conveyor:"; in Cluster mode the
// prefix is a hash tag, "{conveyor}:", so every key lives in one slot and
// scripts may touch several of them):
//
//	P m:<id>               hash: j (message record), st (status), f (flow), r (received, µs),
//	                       s (stream entry id while queued or leased), dv (leases since the
//	                       last Save), tk (accept token), sv (token of the last save), k (dedup key),
//	                       why (set when dead-lettered by Lease)
//	P q:<flow>             stream, consumer group "conveyor": entries {id: <message id>}
//	                       of messages due now; leased = pending in the group (PEL)
//	P due:<flow>           zset: message id -> due time (µs), messages due later
//	P ac:<flow>            string: where the next takeover scan (XAUTOCLAIM) of q:<flow> starts
//	P lt:<token>           string: what the Lease call with this token leased (MessagePack: stream
//	                       entries and ids, ids dead-lettered), for a few seconds (see callToken)
//	P st:<flow>:<status>   zset: message id -> received (µs); Depth and List by status
//	                       (P st:<flow>:dead is the dead-letter queue)
//	P jr, P jr:<flow>      zset: message id -> received (µs); the journal, newest first
//	                       (received within JournalTTL; older messages that do not expire
//	                       are listed from P st:<flow>:<status>)
//	P kx:<dedup key>       zset: message id -> received (µs); List by key, PX = JournalTTL
//	P kl:<dedup key>       zset: message id -> received (µs), of the key's dead letters and
//	                       retrying messages (which do not expire); List by key
//	P dd:<dedup key>       string: id of the message holding the key, PX = dedup TTL;
//	                       ~id: released by the failed sync run id to the sender's retry
//	P ddby:<dedup key>     string: the claimant that took a released key for its run, PX = claim TTL
//	P flows                set of flow ids that have messages
//	P rev:<flow>           hash: revision number -> Revision JSON
//	P revlast:<flow>       string: the highest revision number
//	P audit                list of AuditEntry JSON, newest first, capped at AuditMax
//	P meta                 hash: settings
//	P gcra:<key>           string: "tat:interval:burst", the GCRA theoretical arrival time (µs)
//	                       and the emission interval (µs) and burst that set it; used by
//	                       runtime.RedisLimiter
//
// go-redis sends a command again when its answer is lost after Redis may
// have run it (a read timeout, a cut connection; up to MaxRetries times).
// Scripts are therefore idempotent: those that would not be by themselves
// (Accept, Save, Lease) carry a token for the call (see callToken) and
// answer the same call sent again as they did the first time, instead of
// applying it twice. (runtime.RedisLimiter's Allow does not: see its
// gcraLua.)
//
// Messages with a final status expire after JournalTTL (dead letters
// never do); their journal entries are trimmed by receive time by later
// saves, and index entries are skipped when missing.
//
// Durability is the Redis operator's choice: a 202 means the message is in
// Redis memory and, with appendonly yes and appendfsync everysec (or
// always), on disk within a second (or before the reply). Without AOF a
// Redis restart loses what it held.
type Redis struct {
	c      redis.UniversalClient
	opts   RedisOptions
	prefix string
	trips  *roundTrips
	calls  chan *scriptCall // to the pipeliners (see Eval)
	quit   chan struct{}
	closed sync.Once
}

// scriptCall is one script call waiting for a pipeliner.
type scriptCall struct {
	ctx    context.Context // the caller's: a call it gave up on is not sent
	script *redis.Script
	keys   []string
	args   []any
	done   chan *redis.Cmd // buffered: a pipeliner never blocks on it
}

// pipeliners is how many pipelines of script calls may be under way at once.
const pipeliners = 4

// roundTrips counts the client's round trips: a command, a script call or
// a pipeline is one. It also keeps when the last one found Redis out of
// reach (unix ns; see Lease).
type roundTrips struct{ n, unreachable atomic.Int64 }

// saw notes err, the outcome of a round trip, when it finds Redis out of
// reach (outOfReach).
func (h *roundTrips) saw(err error) {
	if outOfReach(err) {
		h.unreachable.Store(time.Now().UnixNano())
	}
}

// outOfReach reports whether err, the outcome of a call to Redis, says
// that Redis is out of reach: no answer, or a server that cannot serve
// yet (loading its data after a restart, no master, a script that hogs
// it, no client slot left). Other error replies (a wrong password, a
// missing permission) are answers: retrying does not change them.
func outOfReach(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	_, answered := errors.AsType[redis.Error](err)
	return !answered || slices.ContainsFunc(notServing, func(p string) bool { return redis.HasErrorPrefix(err, p) })
}

var notServing = []string{"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "max number of clients reached"}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		err := next(ctx, cmd)
		h.saw(err)
		return err
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		err := next(ctx, cmds)
		h.saw(err)
		return err
	}
}

// RoundTrips is the number of round trips to Redis so far (every user of
// Client counts: the store, the rate limiter, aggregates, watermarks).
func (s *Redis) RoundTrips() int64 { return s.trips.n.Load() }

// RedisOptions tune the Redis store. Zero fields take the defaults.
type RedisOptions struct {
	// Prefix starts every key (default "conveyor:"). In Cluster mode a
	// prefix without a hash tag is wrapped in one ("{conveyor}:").
	Prefix string
	// Consumer names this replica in the consumer groups (default
	// host-pid-random). A stable name (e.g. the pod name) lets a restarted
	// replica take back its own leases at once in Recover; otherwise other
	// replicas take them over after LeaseTimeout.
	Consumer string
	// LeaseTimeout is how long a leased message may go without Touch
	// before another replica may take it over (default 30s).
	LeaseTimeout time.Duration
	// JournalTTL is how long messages with a final status stay (default 7
	// days). Dead letters stay until discarded or replayed.
	JournalTTL time.Duration
	// MaxDeliveries dead-letters a message leased this many times without
	// an outcome being saved: its worker died each time (default 10).
	MaxDeliveries int
	// CallTimeout bounds a call whose context has no deadline (default 3s).
	CallTimeout time.Duration
	// AuditMax caps the audit log (default 10000 entries).
	AuditMax int
}

const group = "conveyor"

// ErrLeaseLost is returned by Touch when the message is no longer leased
// to this replica: another took it over, or it was saved.
var ErrLeaseLost = errors.New("lease lost")

var _ Store = (*Redis)(nil)

// OpenRedis connects to the Redis at url. A Redis out of reach (see
// outOfReach) is no error: the store works once it answers, and Ping
// tells when it does. A Redis that answers and refuses the connection
// (a wrong user or password, NOAUTH) is: that is the configuration, and
// waiting does not mend it. Accepted URL forms:
//
//	redis://[user:password@]host:6379[/db][?options]       one server
//	rediss://...                                            the same over TLS
//	redis://h1:7000,h2:7001,h3:7002[?options]               Cluster, seed nodes
//	redis://host:7000?cluster=true                          Cluster, one seed node
//	redis-sentinel://[user:password@]s1:26379,s2:26379/mymaster[/db][?options]
//	redis://s1:26379?master_name=mymaster&addr=s2:26379     Sentinel (go-redis form)
//	rediss-sentinel://...                                   Sentinel, TLS
//
// Options are go-redis's URL options (dial_timeout, read_timeout,
// max_retries, pool_size, ...). Unless the URL sets them: dial, read and
// write timeouts 2s, pool timeout 2s, 2 retries, context deadlines honoured.
func OpenRedis(ctx context.Context, url string, opts RedisOptions) (*Redis, error) {
	if opts.Prefix == "" {
		opts.Prefix = "conveyor:"
	}
	if opts.Consumer == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if opts.LeaseTimeout <= 0 {
		opts.LeaseTimeout = 30 * time.Second
	}
	if opts.JournalTTL <= 0 {
		opts.JournalTTL = 7 * 24 * time.Hour
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 10
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 3 * time.Second
	}
	if opts.AuditMax <= 0 {
		opts.AuditMax = 10000
	}
	c, cluster, err := newRedisClient(url, "conveyor:"+opts.Consumer)
	if err != nil {
		return nil, fmt.Errorf("store: redis url: %w", err)
	}
	if cluster {
		opts.Prefix = hashTagged(opts.Prefix)
	}
	s := &Redis{c: c, opts: opts, prefix: opts.Prefix, trips: &roundTrips{}, calls: make(chan *scriptCall, 1024), quit: make(chan struct{})}
	c.AddHook(s.trips)
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	// A replica may start before its Redis (a host that boots, a failover
	// during a rollout): out of reach is waited for by the engine, which
	// stays not ready meanwhile; a refusal fails the start.
	switch err := c.Ping(ctx).Err(); {
	case err == nil:
		for _, sc := range []*redis.Script{acceptScript, leaseScript, saveScript} {
			_ = sc.Load(ctx, c).Err() // so the first calls are one round trip (else loaded by the first call)
		}
	case !outOfReach(err):
		c.Close()
		hint := ""
		if redis.IsAuthError(err) || redis.HasErrorPrefix(err, "invalid password") || redis.HasErrorPrefix(err, "AUTH") ||
			redis.HasErrorPrefix(err, "Client sent AUTH") {
			hint = " (check the user and password in the URL: Redis refused them)"
		}
		return nil, fmt.Errorf("store: redis %s: %w%s", redactURL(url), err, hint)
	}
	for range pipeliners {
		go s.pipeliner()
	}
	return s, nil
}

// Client is the underlying client (the Redis rate limiter shares it).
func (s *Redis) Client() redis.UniversalClient { return s.c }

// Prefix is the key prefix in use.
func (s *Redis) Prefix() string { return s.prefix }

// Consumer is this replica's consumer name.
func (s *Redis) Consumer() string { return s.opts.Consumer }

// LeaseTimeout is how long a lease lasts without Touch.
func (s *Redis) LeaseTimeout() time.Duration { return s.opts.LeaseTimeout }

// DedupKeyName is the Redis key holding dedup key k.
func (s *Redis) DedupKeyName(k string) string { return s.prefix + "dd:" + k }

// DedupTakerName is the Redis key naming who took dedup key k when it was
// released to a failed run (see ClaimLua).
func (s *Redis) DedupTakerName(k string) string { return s.prefix + "ddby:" + k }

// Ping checks that Redis answers (readiness).
func (s *Redis) Ping(ctx context.Context) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	return s.c.Ping(ctx).Err()
}

// Close closes the connections.
func (s *Redis) Close() error {
	s.closed.Do(func() { close(s.quit) })
	return s.c.Close()
}

// deadline gives ctx the store's call timeout when it has no deadline.
func (s *Redis) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.CallTimeout)
}

func us(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

func ms(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// callToken is a fresh token for one call of a script that is not
// idempotent by itself. go-redis sends a command again when its answer is
// lost, although Redis may have run it: the script keeps the token with
// what it changed (Lease for resendWindow; Save and Accept in the
// message's hash) and answers the call when it comes again as it did the
// first time.
func callToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// resendWindow is how long after Redis ran a script call made under ctx
// (which has a deadline, see deadline) go-redis may still send it again:
// the time left to the deadline, and a second more for a command still
// on its way.
func resendWindow(ctx context.Context) time.Duration {
	dl, _ := ctx.Deadline()
	return max(time.Until(dl), 0) + time.Second
}

// releasedLua tells a dedup key's value ~id, released by the failed sync
// run id to the sender's retry and held by none, from the id of its
// holder. The scripts that read dedup keys share it.
const releasedLua = `
local function released(h) return h and string.sub(h, 1, 1) == '~' end
`

// luaPrelude is shared by the scripts: ARGV[1] is always the prefix.
const luaPrelude = releasedLua + `
local P = ARGV[1]
local G = 'conveyor'
local function ensure(q)
  if redis.call('EXISTS', q) == 0 then redis.call('XGROUP', 'CREATE', q, G, '0', 'MKSTREAM') end
end
local function pending(st) return st == 'queued' or st == 'retrying' or st == 'running' end
local function move(id, flow, old, new, recv)
  if old and old ~= new then redis.call('ZREM', P..'st:'..flow..':'..old, id) end
  redis.call('ZADD', P..'st:'..flow..':'..new, recv, id)
end
local function push(id, flow)
  local q = P..'q:'..flow
  ensure(q)
  redis.call('HSET', P..'m:'..id, 's', redis.call('XADD', q, '*', 'id', id))
end
local function enqueue(id, flow, due, now)
  if tonumber(due) <= tonumber(now) then push(id, flow) else redis.call('ZADD', P..'due:'..flow, due, id) end
end
local function journal(id, flow, recv, dk, ttl)
  redis.call('ZADD', P..'jr', recv, id)
  redis.call('ZADD', P..'jr:'..flow, recv, id)
  redis.call('SADD', P..'flows', flow)
  if dk ~= '' then
    redis.call('ZADD', P..'kx:'..dk, recv, id)
    redis.call('PEXPIRE', P..'kx:'..dk, ttl)
  end
end
-- kl:<dedup key> lists the key's dead letters and retrying messages,
-- which do not expire and which kx:<dedup key> outlives by no more than
-- JournalTTL. Saves keep it (an accept adds nothing: a key per accepted
-- message cost the accept path a fifth of its rate).
local function keyLive(id, dk, st, recv)
  if dk == '' then return end
  if st == 'dead' or st == 'retrying' then redis.call('ZADD', P..'kl:'..dk, recv, id)
  elseif not pending(st) then redis.call('ZREM', P..'kl:'..dk, id) end
end
`

// acceptScript: 2 id, 3 flow, 4 json, 5 status, 6 due, 7 now, 8 received,
// 9 dedup key, 10 dedup ttl ms, 11 token, 12 journal ttl ms.
// Returns {'ok'} or {'dup', json, status}.
var acceptScript = redis.NewScript(luaPrelude + `
local id, flow, dk = ARGV[2], ARGV[3], ARGV[9]
local mk = P..'m:'..id
local r = redis.call('HMGET', mk, 'tk', 'j', 'st')
if r[2] then
  if r[1] == ARGV[11] then return {'ok'} end -- our own call, retried
  return {'dup', r[2], r[3]}
end
if dk ~= '' then
  local dd = P..'dd:'..dk
  local h = redis.call('GET', dd)
  if h and not released(h) then
    local x = redis.call('HMGET', P..'m:'..h, 'j', 'st')
    if x[1] then return {'dup', x[1], x[2]} end
  end
  if tonumber(ARGV[10]) > 0 then redis.call('SET', dd, id, 'PX', ARGV[10]) end
end
redis.call('HSET', mk, 'j', ARGV[4], 'st', ARGV[5], 'f', flow, 'r', ARGV[8], 'tk', ARGV[11], 'dv', 0, 'k', dk)
journal(id, flow, ARGV[8], dk, ARGV[12])
move(id, flow, false, ARGV[5], ARGV[8])
enqueue(id, flow, ARGV[6], ARGV[7])
return {'ok'}
`)

// Accept implements Store: one script checks the id and the dedup key,
// stores the record, claims the key and XADDs (or schedules) the message.
func (s *Redis) Accept(ctx context.Context, m *Message, ttl time.Duration) (*Message, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	now := time.Now()
	if m.Status == "" {
		m.Status = Queued
	}
	if m.DueAt.IsZero() {
		m.DueAt = now
	}
	b := encodeMessage(m)
	res, err := s.Eval(ctx, acceptScript, []string{s.prefix + "m:" + m.ID}, s.prefix, m.ID, m.Flow, b, string(m.Status),
		us(m.DueAt), us(now), us(m.ReceivedAt), m.DedupKey, strconv.FormatInt(ttl.Milliseconds(), 10),
		callToken(), ms(s.opts.JournalTTL)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("store: accept: %w", err)
	}
	if res[0] == "dup" {
		return decodeRecord(res[1], res[2], "")
	}
	return nil, nil
}

// leaseScript: 2 flow, 3 now, 4 n, 5 consumer, 6 lease timeout ms, 7 max
// deliveries, 8 1 to take over idle leases (0: not now), 9 call token, 10
// how long to keep it (ms). Returns {{stream entry, record} of each leased
// message, the ids of the messages it dead-lettered}.
var leaseScript = redis.NewScript(luaPrelude + `
local flow, n, C = ARGV[2], tonumber(ARGV[4]), ARGV[5]
local q, dz = P..'q:'..flow, P..'due:'..flow
local lt = P..'lt:'..ARGV[9]
local sent = redis.call('GET', lt)
if sent then
  -- This very call, sent again after its answer was lost: the messages
  -- its first run leased, which no one else runs, not the next ones.
  local got, dead = cmsgpack.unpack(sent)
  local out = {}
  for i = 1, #got, 2 do
    local j = redis.call('HGET', P..'m:'..got[i + 1], 'j')
    if j then
      out[#out + 1] = got[i]
      out[#out + 1] = j
    end
  end
  return {out, dead}
end
ensure(q)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', dz, '-inf', ARGV[3], 'LIMIT', 0, 100)) do
  redis.call('ZREM', dz, id)
  if redis.call('HEXISTS', P..'m:'..id, 'j') == 1 then push(id, flow) end
end
-- The takeover scan goes on where the last one stopped: from the start
-- each time, it would see only the first entries of the PEL (XAUTOCLAIM
-- looks at ten per COUNT), and a long head of live leases would hide a
-- dead replica's entries behind it.
local got = {}
if ARGV[8] == '1' then
  local ac = redis.call('XAUTOCLAIM', q, G, C, ARGV[6], redis.call('GET', P..'ac:'..flow) or '0-0', 'COUNT', n)
  redis.call('SET', P..'ac:'..flow, ac[1])
  got = ac[2]
end
if #got < n then
  local r = redis.call('XREADGROUP', 'GROUP', G, C, 'COUNT', n - #got, 'STREAMS', q, '>')
  if r then for _, e in ipairs(r[1][2]) do got[#got + 1] = e end end
end
local out, dead, ids = {}, {}, {}
for _, e in ipairs(got) do
  local sid, id = e[1], e[2] and e[2][2]
  local mk = P..'m:'..(id or '')
  local r = redis.call('HMGET', mk, 'j', 'st', 's', 'r', 'dv')
  if not id or not r[1] or r[3] ~= sid or not pending(r[2]) then
    redis.call('XACK', q, G, sid)
    redis.call('XDEL', q, sid)
  else
    local dv = tonumber(r[5] or '0') + 1
    if dv > tonumber(ARGV[7]) then
      redis.call('XACK', q, G, sid)
      redis.call('XDEL', q, sid)
      redis.call('HDEL', mk, 's')
      redis.call('HSET', mk, 'st', 'dead', 'why', 'leased ' .. (dv - 1) .. ' times without an outcome: its worker was lost each time')
      move(id, flow, r[2], 'dead', r[4])
      keyLive(id, redis.call('HGET', mk, 'k') or '', 'dead', r[4])
      dead[#dead + 1] = id
    else
      redis.call('HSET', mk, 'st', 'running', 'dv', dv)
      move(id, flow, r[2], 'running', r[4])
      out[#out + 1] = sid
      out[#out + 1] = r[1]
      ids[#ids + 1] = sid
      ids[#ids + 1] = id
    end
  end
end
if #ids > 0 or #dead > 0 then redis.call('SET', lt, cmsgpack.pack(ids, dead), 'PX', ARGV[10]) end
return {out, dead}
`)

var _ DeadLetteringLeaser = (*Redis)(nil)

// Lease implements Store: due retries move into the flow's stream, leases
// of lost consumers idle longer than LeaseTimeout are claimed, then new
// entries are read for this consumer — one script. A message leased
// MaxDeliveries times without an outcome is dead-lettered instead (see
// LeaseDeadLettering).
//
// Within LeaseTimeout of a call that found Redis out of reach, no lease is
// taken over: Redis was likely out of reach for the other replicas too,
// so a lease that looks idle may be a live replica's that could not renew
// it, or whose outcome waits to be stored. They get a lease timeout, from
// when Redis answers again, to do so; a replica that did die meanwhile is
// taken over that much later.
func (s *Redis) Lease(ctx context.Context, flow string, now time.Time, n int) ([]*Message, error) {
	out, _, err := s.LeaseDeadLettering(ctx, flow, now, n)
	return out, err
}

// LeaseDeadLettering implements DeadLetteringLeaser: it is Lease, and
// also returns the ids of the messages it dead-lettered.
func (s *Redis) LeaseDeadLettering(ctx context.Context, flow string, now time.Time, n int) ([]*Message, []string, error) {
	if n <= 0 {
		return nil, nil, nil
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	takeover := "1"
	if time.Since(time.Unix(0, s.trips.unreachable.Load())) < s.opts.LeaseTimeout {
		takeover = "0"
	}
	res, err := leaseScript.Run(ctx, s.c, []string{s.prefix + "q:" + flow}, s.prefix, flow, us(now), n, s.opts.Consumer,
		ms(s.opts.LeaseTimeout), s.opts.MaxDeliveries, takeover, callToken(), ms(resendWindow(ctx))).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("store: lease: %w", err)
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("store: lease: unexpected reply %v", res)
	}
	leased, dead := stringsOf(res[0]), stringsOf(res[1])
	out := make([]*Message, 0, len(leased)/2)
	for i := 0; i+1 < len(leased); i += 2 {
		m, err := decodeRecord(leased[i+1], string(Running), "")
		if err != nil {
			return out, dead, err
		}
		m.UpdatedAt, m.lease = now, leased[i]
		out = append(out, m)
	}
	return out, dead, nil
}

// stringsOf reads a script's array of strings.
func stringsOf(v any) []string {
	vs, _ := v.([]any)
	out := make([]string, 0, len(vs))
	for _, x := range vs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// touchScript: 2 id, 3 consumer. Returns 1 when the lease was renewed.
var touchScript = redis.NewScript(luaPrelude + `
local r = redis.call('HMGET', P..'m:'..ARGV[2], 'f', 's')
if not r[2] then return 0 end
local q = P..'q:'..r[1]
local p = redis.call('XPENDING', q, G, r[2], r[2], 1)[1]
if not p or p[2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', q, G, ARGV[3], 0, r[2], 'JUSTID')
return 1
`)

// Touch renews the lease of message id held by this replica, so no other
// replica takes it over while it runs. A worker calls it every
// LeaseTimeout/3 while it processes a message; ErrLeaseLost means another
// replica has taken the message over (or it was saved).
func (s *Redis) Touch(ctx context.Context, id string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	n, err := touchScript.Run(ctx, s.c, []string{s.prefix + "m:" + id}, s.prefix, id, s.opts.Consumer).Int()
	if err != nil {
		return fmt.Errorf("store: touch %s: %w", id, err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// saveScript: 2 id, 3 flow, 4 json, 5 status, 6 due, 7 now, 8 received,
// 9 dedup key, 10 journal ttl ms, 11 journal cutoff µs, 12 dedup op
// (empty, confirm or release), 13 dedup ttl ms, 14 the stream entry the
// message was leased as (a worker's save; empty: not checked), 15 this
// consumer, 16 the status the stored message must have (empty: any),
// 17 with 16, the SHA-1 of the record it must still hold (empty: any),
// 18 the call token.
// It returns 1, 0 when the lease is another consumer's, -1 when the
// message is not as expected.
var saveScript = redis.NewScript(luaPrelude + `
local id, flow, st, dk = ARGV[2], ARGV[3], ARGV[5], ARGV[9]
local mk = P..'m:'..id
local r = redis.call('HMGET', mk, 'st', 's', 'f', 'sv')
-- This very save, sent again after its answer was lost: it landed. (Run
-- again, it would find the lease it acknowledged gone, or the status it
-- expected changed, by itself.) No other save of a leased message comes
-- between: only its lease holder saves it.
if r[4] == ARGV[18] then return 1 end
local of = r[3] or flow
if ARGV[16] ~= '' and r[1] ~= ARGV[16] then return -1 end
if ARGV[17] ~= '' and redis.sha1hex(redis.call('HGET', mk, 'j') or '') ~= ARGV[17] then return -1 end
if ARGV[14] ~= '' then
  -- a worker's save: only while the lease it got is still its own
  local p = r[2] == ARGV[14] and redis.call('XPENDING', P..'q:'..of, G, r[2], r[2], 1)[1]
  if not p or p[2] ~= ARGV[15] then return 0 end
end
if r[2] and st ~= 'running' then
  local q = P..'q:'..of
  redis.call('XACK', q, G, r[2])
  redis.call('XDEL', q, r[2])
  redis.call('HDEL', mk, 's')
end
redis.call('ZREM', P..'due:'..of, id)
if r[1] and (r[1] ~= st or of ~= flow) then redis.call('ZREM', P..'st:'..of..':'..r[1], id) end
redis.call('HSET', mk, 'j', ARGV[4], 'st', st, 'f', flow, 'r', ARGV[8], 'sv', ARGV[18])
if st ~= 'running' then redis.call('HSET', mk, 'dv', 0) end -- a checkpoint is no outcome
redis.call('HDEL', mk, 'why')
if not r[1] then journal(id, flow, ARGV[8], dk, ARGV[10]) end
if r[1] ~= st then keyLive(id, dk, st, ARGV[8]) end
move(id, flow, false, st, ARGV[8])
if st == 'queued' or st == 'retrying' then
  redis.call('PERSIST', mk)
  enqueue(id, flow, ARGV[6], ARGV[7])
elseif st == 'dead' or st == 'running' then
  redis.call('PERSIST', mk)
else
  -- kept while its dedup key is: a duplicate must find what it repeats
  local keep = tonumber(ARGV[10])
  if dk ~= '' and (ARGV[12] == 'confirm' or ARGV[12] == 'release') then
    keep = math.max(keep, tonumber(ARGV[13]))
  elseif dk ~= '' and redis.call('GET', P..'dd:'..dk) == id then
    keep = math.max(keep, redis.call('PTTL', P..'dd:'..dk))
  end
  redis.call('PEXPIRE', mk, keep)
  for _, k in ipairs({P..'jr', P..'jr:'..flow, P..'st:'..flow..':'..st}) do
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. ARGV[11])
  end
end
if ARGV[12] ~= '' and dk ~= '' then
  local dd = P..'dd:'..dk
  local h = redis.call('GET', dd)
  local free = not h or h == id or released(h)
  if ARGV[12] == 'confirm' and free then redis.call('SET', dd, id, 'PX', ARGV[13])
  elseif ARGV[12] == 'release' and free then redis.call('SET', dd, '~'..id, 'PX', ARGV[13]) end
end
return 1
`)

// Save implements Store. Queued and Retrying go back to the stream (due
// now) or the due set (later) and the lease is acknowledged; final
// statuses are acknowledged and expire after JournalTTL, dead letters do
// not expire.
func (s *Redis) Save(ctx context.Context, m *Message) error {
	return s.save(ctx, m, "", 0)
}

// Finish journals a sync run and, in the same round trip, confirms its
// dedup key for ttl (completed or filtered: a duplicate gets the cached
// response) or releases it (any other status: the sender's retry runs).
// It is Save followed by ConfirmKey or ReleaseKey, in one script.
func (s *Redis) Finish(ctx context.Context, m *Message, ttl time.Duration) error {
	op := "release"
	if m.Status == Completed || m.Status == Filtered {
		op = "confirm"
	}
	return s.save(ctx, m, op, ttl)
}

func (s *Redis) save(ctx context.Context, m *Message, op string, ttl time.Duration) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	now := time.Now()
	m.UpdatedAt = now
	if m.DueAt.IsZero() {
		m.DueAt = now
	}
	n, err := s.Eval(ctx, saveScript, []string{s.prefix + "m:" + m.ID}, s.prefix, m.ID, m.Flow, encodeMessage(m), string(m.Status),
		us(m.DueAt), us(now), us(m.ReceivedAt), m.DedupKey, ms(s.opts.JournalTTL), us(now.Add(-s.opts.JournalTTL)), op, ms(ttl),
		m.lease, s.opts.Consumer, string(m.Expect), expectedRecord(m), callToken()).Int()
	switch {
	case err != nil:
		return fmt.Errorf("store: save %s: %w", m.ID, err)
	case n == 0:
		return fmt.Errorf("store: save %s: %w", m.ID, ErrLeaseLost)
	case n < 0:
		return fmt.Errorf("store: save %s: %w", m.ID, ErrChanged)
	}
	return nil
}

// expectedRecord is the SHA-1 (hex, as redis.sha1hex gives it) that a
// conditional save (Message.Expect) requires the stored record to still
// have; "" for none. It is taken here, not in Get, which most often
// reads for nothing else.
func expectedRecord(m *Message) string {
	if m.Expect == "" || m.read == "" {
		return ""
	}
	h := sha1.Sum([]byte(m.read))
	return hex.EncodeToString(h[:])
}

// Eval runs a script like script.Run, through the pipeliners: calls that
// wait together go out as one pipeline, one round trip and one read and
// write on each side instead of one each. Nothing waits to fill a batch:
// a lone call goes at once, and the calls that arrive while a pipeline is
// under way make up the next. Accepts, saves and the rate limiter's
// claims come from many requests and workers at once, so under load the
// batches are large.
func (s *Redis) Eval(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	c := &scriptCall{ctx: ctx, script: script, keys: keys, args: args, done: make(chan *redis.Cmd, 1)}
	select {
	case s.calls <- c:
	case <-ctx.Done():
		return failedCmd(ctx, ctx.Err())
	case <-s.quit:
		return failedCmd(ctx, redis.ErrClosed)
	}
	select {
	case cmd := <-c.done:
		return cmd
	case <-ctx.Done():
		return failedCmd(ctx, ctx.Err()) // the call may still land, as with any timed-out call
	case <-s.quit:
		return failedCmd(ctx, redis.ErrClosed)
	}
}

// failedCmd is the answer to a script call that was not sent.
func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// pipeliner sends what waits in s.calls, as one pipeline when it is more
// than one call.
func (s *Redis) pipeliner() {
	batch := make([]*scriptCall, 0, 256)
	for {
		select {
		case <-s.quit:
			return
		case c := <-s.calls:
			batch = takeReady(append(batch[:0], c), s.calls)
		}
		s.send(batch)
	}
}

func (s *Redis) send(batch []*scriptCall) {
	// A call whose caller gave up while it waited is answered, not sent:
	// the caller may be retrying it already, and the stale one must not
	// land after the retry.
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.done <- failedCmd(c.ctx, err)
			continue
		}
		live = append(live, c)
	}
	if batch = live; len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CallTimeout)
	defer cancel()
	if len(batch) == 1 {
		c := batch[0]
		c.done <- c.script.Run(ctx, s.c, c.keys, c.args...)
		return
	}
	cmds := make([]*redis.Cmd, len(batch))
	_, _ = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	for i, c := range batch {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			cmds[i] = c.script.Run(ctx, s.c, c.keys, c.args...) // the server lost its scripts: loads it again
		}
		c.done <- cmds[i]
	}
}

// decodeRecord builds a message from its stored record and status; why
// is set when Lease dead-lettered it.
func decodeRecord(j, st, why string) (*Message, error) {
	m, err := decodeMessage([]byte(j))
	if err != nil {
		return nil, fmt.Errorf("store: message record: %w", err)
	}
	if st != "" {
		m.Status = Status(st)
	}
	if why != "" && m.Status == Dead {
		m.Error = why
		m.Attempts = append(m.Attempts, Attempt{At: m.UpdatedAt, Step: m.FailedStep, Class: "lost", Error: why})
	}
	return m, nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, id string) (*Message, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	r, err := s.c.HMGet(ctx, s.prefix+"m:"+id, "j", "st", "why").Result()
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	j, _ := r[0].(string)
	if j == "" {
		return nil, ErrNotFound
	}
	st, _ := r[1].(string)
	why, _ := r[2].(string)
	m, err := decodeRecord(j, st, why)
	if err == nil {
		m.read = j
	}
	return m, err
}

// List implements Store: it reads the most selective index (status per
// flow, dedup key, flow, all) newest first and filters the rest.
func (s *Redis) List(ctx context.Context, f Filter) ([]*Message, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var indexes []string
	switch {
	case f.Status != "":
		flows, err := s.listFlows(ctx, f.Flow)
		if err != nil {
			return nil, err
		}
		for _, fl := range flows {
			indexes = append(indexes, s.prefix+"st:"+fl+":"+string(f.Status))
		}
	case f.Key != "":
		indexes = []string{s.prefix + "kx:" + f.Key, s.prefix + "kl:" + f.Key}
	case f.Flow != "":
		indexes = []string{s.prefix + "jr:" + f.Flow}
	default:
		indexes = []string{s.prefix + "jr"}
	}
	var out []*Message
	seen := map[string]bool{} // a message may be in two of the indexes read
	add := func(index string, before time.Time) error {
		ms, err := s.scan(ctx, index, before, f)
		for _, m := range ms {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m)
			}
		}
		return err
	}
	for _, idx := range indexes {
		if err := add(idx, time.Time{}); err != nil {
			return nil, err
		}
	}
	// Saves trim the journal of what was received before JournalTTL (a
	// minute's leeway for replicas' clocks), dead letters and pending
	// messages too: those, which do not expire, are listed from their
	// status indexes, which are not trimmed.
	cutoff := time.Now().Add(time.Minute - s.opts.JournalTTL)
	if f.Status == "" && f.Key == "" && (len(out) < f.Limit || out[len(out)-1].ReceivedAt.Before(cutoff)) {
		flows, err := s.listFlows(ctx, f.Flow)
		if err != nil {
			return nil, err
		}
		for _, fl := range flows {
			for _, st := range []Status{Dead, Queued, Retrying, Running} {
				if err := add(s.prefix+"st:"+fl+":"+string(st), cutoff); err != nil {
					return nil, err
				}
			}
		}
	}
	slices.SortStableFunc(out, ListOrder)
	return out[:min(len(out), f.Limit)], nil
}

// listFlows is flow, or every flow the store has seen when it is "".
func (s *Redis) listFlows(ctx context.Context, flow string) ([]string, error) {
	if flow != "" {
		return []string{flow}, nil
	}
	flows, err := s.c.SMembers(ctx, s.prefix+"flows").Result()
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return flows, nil
}

// scan pages through one index newest first, keeping what matches f.
// The index orders by microsecond, then by id; a listing orders by the
// receive time's nanoseconds. So the scan reads on past the last match
// it needs while the microsecond stays the same, and sorts: what it
// returns is in listing order, and a page never ends inside a
// microsecond whose rest comes in another order. A non-zero before
// bounds the scan to what was received before it.
func (s *Redis) scan(ctx context.Context, index string, before time.Time, f Filter) ([]*Message, error) {
	lo, hi := "-inf", "+inf"
	if !f.Since.IsZero() {
		lo = us(f.Since)
	}
	if f.After != nil {
		hi = us(f.After.At)
	}
	if !before.IsZero() && (f.After == nil || before.Before(f.After.At)) {
		hi = "(" + us(before)
	}
	page := int64(max(f.Limit, 50))
	var out []*Message
	var stale []any
	full := math.NaN() // the score at which out was full
scan:
	for off := int64(0); ; off += page {
		zs, err := s.c.ZRevRangeByScoreWithScores(ctx, index, &redis.ZRangeBy{Min: lo, Max: hi, Offset: off, Count: page}).Result()
		if err != nil {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, z := range zs {
				p.HMGet(ctx, s.prefix+"m:"+z.Member.(string), "j", "st", "why")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("store: list: %w", err)
		}
		for i, c := range cmds {
			if zs[i].Score != full && !math.IsNaN(full) {
				break scan
			}
			r := c.(*redis.SliceCmd).Val()
			j, _ := r[0].(string)
			if j == "" {
				stale = append(stale, zs[i].Member)
				continue
			}
			st, _ := r[1].(string)
			why, _ := r[2].(string)
			m, err := decodeRecord(j, st, why)
			if err != nil {
				continue
			}
			if (f.Flow != "" && m.Flow != f.Flow) || (f.Status != "" && m.Status != f.Status) || (f.Key != "" && m.DedupKey != f.Key) || !f.After.Precedes(m) {
				continue
			}
			if out = append(out, m); len(out) == f.Limit {
				full = zs[i].Score
			}
		}
		if int64(len(zs)) < page {
			break
		}
	}
	if len(stale) > 0 {
		s.c.ZRem(ctx, index, stale...) // expired records; best effort
	}
	slices.SortStableFunc(out, ListOrder)
	return out[:min(len(out), f.Limit)], nil
}

// recoverScript: 2 flow, 3 consumer, 4 idle ms after which a consumer
// holding nothing is forgotten. Requeues this consumer's leases.
var recoverScript = redis.NewScript(luaPrelude + `
local flow, C = ARGV[2], ARGV[3]
local q = P..'q:'..flow
if redis.call('EXISTS', q) == 0 then return 0 end
local n = 0
for _, p in ipairs(redis.call('XPENDING', q, G, '-', '+', 10000, C)) do
  local sid = p[1]
  local e = redis.call('XRANGE', q, sid, sid)[1]
  redis.call('XACK', q, G, sid)
  redis.call('XDEL', q, sid)
  local id = e and e[2][2]
  if id then
    local mk = P..'m:'..id
    local r = redis.call('HMGET', mk, 'st', 's', 'r')
    if r[2] == sid and pending(r[1]) then
      redis.call('HSET', mk, 'st', 'queued')
      move(id, flow, r[1], 'queued', r[3])
      push(id, flow)
      n = n + 1
    end
  end
end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', q, G)) do
  if c[2] ~= C and c[4] == 0 and c[6] > tonumber(ARGV[4]) then redis.call('XGROUP', 'DELCONSUMER', q, G, c[2]) end
end
return n
`)

// Recover implements Store: this consumer's leases (a restart with a
// stable Consumer name) go back to the queue at once. Leases of other
// consumers are left alone — they may be alive; Lease takes them over
// once idle for LeaseTimeout. Consumers that hold nothing and were idle
// for a day are removed from the groups.
func (s *Redis) Recover(ctx context.Context) (int, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	flows, err := s.c.SMembers(ctx, s.prefix+"flows").Result()
	if err != nil {
		return 0, fmt.Errorf("store: recover: %w", err)
	}
	n := 0
	for _, fl := range flows {
		k, err := recoverScript.Run(ctx, s.c, []string{s.prefix + "q:" + fl}, s.prefix, fl, s.opts.Consumer, ms(24*time.Hour)).Int()
		if err != nil {
			return n, fmt.Errorf("store: recover %s: %w", fl, err)
		}
		n += k
	}
	return n, nil
}

// Depth implements Store: queued and retrying messages of flow (not those
// leased), and the receive time of the oldest.
func (s *Redis) Depth(ctx context.Context, flow string) (int, time.Time, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var counts [2]*redis.IntCmd
	var firsts [2]*redis.ZSliceCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range []Status{Queued, Retrying} {
			k := s.prefix + "st:" + flow + ":" + string(st)
			counts[i] = p.ZCard(ctx, k)
			firsts[i] = p.ZRangeWithScores(ctx, k, 0, 0)
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: depth: %w", err)
	}
	n := 0
	var oldest time.Time
	for i := range counts {
		n += int(counts[i].Val())
		if z := firsts[i].Val(); len(z) > 0 {
			if t := time.UnixMicro(int64(z[0].Score)).UTC(); oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	return n, oldest, nil
}

// ClaimLua claims the key named ck for the message cid for cttl ms, SET
// NX PX, or for the run the key was released to (its value ~id, see
// saveScript): it sets claimed to 1, and holder to who holds the key now.
// Who took a released key is kept in the key named cby, so that the same
// claim sent again after a lost answer is still this claimant's. The
// scripts that run it set ck, cby, cid and cttl first.
const ClaimLua = releasedLua + `
local claimed, holder = 0, redis.call('GET', ck)
if not holder or released(holder) then
  claimed, holder = 1, holder and string.sub(holder, 2) or cid
  redis.call('SET', ck, holder, 'PX', cttl)
  if holder ~= cid then redis.call('SET', cby, cid, 'PX', cttl) end
elseif holder ~= cid and redis.call('GET', cby) == cid then
  claimed = 1
end
`

var claimScript = redis.NewScript(`local ck, cby, cid, cttl = KEYS[1], KEYS[2], ARGV[1], ARGV[2]` + ClaimLua + `return {claimed, holder}`)

// ClaimKey implements Store: SET NX PX holding the message id, one script
// that also answers the holder.
func (s *Redis) ClaimKey(ctx context.Context, key, id string, ttl time.Duration) (string, bool, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	r, err := claimScript.Run(ctx, s.c, []string{s.DedupKeyName(key), s.DedupTakerName(key)}, id, ms(ttl)).Slice()
	if err != nil {
		return "", false, fmt.Errorf("store: claim %q: %w", key, err)
	}
	return ClaimResult(r)
}

// ClaimResult reads what ClaimLua leaves, answered as {claimed, holder}.
func ClaimResult(r []any) (holder string, ok bool, err error) {
	if len(r) != 2 {
		return "", false, fmt.Errorf("store: claim: unexpected answer %v", r)
	}
	claimed, _ := r[0].(int64)
	holder, _ = r[1].(string)
	return holder, claimed == 1, nil
}

var confirmScript = redis.NewScript(releasedLua + `
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] and not released(h) then return redis.error_reply('held by ' .. h) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// ConfirmKey implements Store: the key is (re)set for ttl unless another
// message holds it.
func (s *Redis) ConfirmKey(ctx context.Context, key, id string, ttl time.Duration) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := confirmScript.Run(ctx, s.c, []string{s.DedupKeyName(key)}, id, ms(ttl)).Err(); err != nil {
		return fmt.Errorf("store: confirm dedup key %q: %w", key, err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] then return redis.call('DEL', KEYS[1]) end
if h and redis.call('GET', KEYS[2]) == ARGV[1] then
  -- taken by this claimant for the failed run h: released to h again
  redis.call('SET', KEYS[1], '~'..h, 'KEEPTTL')
  return redis.call('DEL', KEYS[2])
end
return 0
`)

// ReleaseKey implements Store: compare-and-delete, so only the holder
// frees the key.
func (s *Redis) ReleaseKey(ctx context.Context, key, id string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, s.c, []string{s.DedupKeyName(key), s.DedupTakerName(key)}, id).Err(); err != nil {
		return fmt.Errorf("store: release dedup key %q: %w", key, err)
	}
	return nil
}

// AddRevision implements Store.
func (s *Redis) AddRevision(ctx context.Context, r Revision) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = addRevisionScript.Run(ctx, s.c, []string{s.prefix + "rev:" + r.Flow, s.prefix + "revlast:" + r.Flow}, r.Number, b).Err()
	if err != nil {
		return fmt.Errorf("store: add revision: %w", err)
	}
	return nil
}

// addRevisionScript stores revision ARGV[1] in the flow's hash and keeps
// the highest number in revlast, so that the latest is found without
// reading every revision.
var addRevisionScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
end
return 1`)

// Revision implements Store.
func (s *Redis) Revision(ctx context.Context, flow string, n int) (*Revision, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if n <= 0 {
		last, err := s.c.Get(ctx, s.prefix+"revlast:"+flow).Int()
		if errors.Is(err, redis.Nil) {
			// Revisions stored before revlast existed: read them all once.
			revs, err := s.Revisions(ctx, flow)
			if err != nil || len(revs) == 0 {
				return nil, cmp.Or(err, ErrNotFound)
			}
			return &revs[len(revs)-1], nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: revision: %w", err)
		}
		n = last
	}
	v, err := s.c.HGet(ctx, s.prefix+"rev:"+flow, strconv.Itoa(n)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: revision: %w", err)
	}
	var r Revision
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("store: revision %d of %s: %w", n, flow, err)
	}
	return &r, nil
}

// Revisions implements Store.
func (s *Redis) Revisions(ctx context.Context, flow string) ([]Revision, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	vals, err := s.c.HVals(ctx, s.prefix+"rev:"+flow).Result()
	if err != nil {
		return nil, fmt.Errorf("store: revisions: %w", err)
	}
	out := make([]Revision, 0, len(vals))
	for _, v := range vals {
		var r Revision
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("store: revision of %s: %w", flow, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Revision) int { return a.Number - b.Number })
	return out, nil
}

// AppendAudit implements Store.
func (s *Redis) AppendAudit(ctx context.Context, a AuditEntry) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, s.prefix+"audit", b)
		p.LTrim(ctx, s.prefix+"audit", 0, int64(s.opts.AuditMax-1))
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// Audit implements Store.
func (s *Redis) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	if limit <= 0 {
		limit = 100
	}
	vals, err := s.c.LRange(ctx, s.prefix+"audit", 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	out := make([]AuditEntry, 0, len(vals))
	for _, v := range vals {
		var a AuditEntry
		if err := json.Unmarshal([]byte(v), &a); err != nil {
			return nil, fmt.Errorf("store: audit entry: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// PutMeta implements Store.
func (s *Redis) PutMeta(ctx context.Context, key string, value []byte) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var err error
	if value == nil {
		err = s.c.HDel(ctx, s.prefix+"meta", key).Err()
	} else {
		err = s.c.HSet(ctx, s.prefix+"meta", key, value).Err()
	}
	if err != nil {
		return fmt.Errorf("store: meta %s: %w", key, err)
	}
	return nil
}

// swapMetaScript writes field ARGV[1] of the meta hash (ARGV[4], or
// deletes it when ARGV[3] is 1) only while it holds ARGV[2] (is absent
// when ARGV[2] is empty: stored values are never empty).
var swapMetaScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur or '') ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) end
return 1
`)

// SwapMeta implements Store.
func (s *Redis) SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	del := "0"
	if value == nil {
		del = "1"
	}
	n, err := swapMetaScript.Run(ctx, s.c, []string{s.prefix + "meta"}, key, old, del, value).Int()
	if err != nil {
		return false, fmt.Errorf("store: meta %s: %w", key, err)
	}
	return n == 1, nil
}

// GetMeta implements Store.
func (s *Redis) GetMeta(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	v, err := s.c.HGet(ctx, s.prefix+"meta", key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: meta %s: %w", key, err)
	}
	return v, nil
}
