package runtime

// Stream triggers consume external streams — a Redis Stream with a
// consumer group, or a NATS JetStream stream with a durable pull consumer —
// for every live flow whose trigger is redis_stream or nats. An entry is
// stored as a message first (store.Accept) and acknowledged to the server
// only then, so a crash or a store outage between the two redelivers the
// entry and nothing is lost. The message id derives from the flow, the
// stream and the entry's id (Redis) or sequence (NATS), so a redelivered
// entry stores nothing new and is acknowledged again.
//
// An entry whose payload is not JSON never reaches the flow's steps, and
// is not lost either: it is stored as a dead letter whose body is {"raw":
// <the text>, "error": <why>} ("raw_base64": <the bytes> when they are not
// UTF-8 text), shown in the dead-letter queue, and then acknowledged. So
// is an entry whose dedup key cannot be computed.
//
// Redis: the group is created with MKSTREAM from id 0 (the first time a
// flow consumes a stream it takes the entries already there). Each process
// reads as its own consumer (host-pid, or ?consumer=NAME in the URL for a
// stable name), first its own pending entries, then new ones (XREADGROUP
// BLOCK 2s), and every claim_idle/2 takes over entries that another
// consumer read and left unacknowledged for claim_idle (XAUTOCLAIM; 1m, or
// ?claim_idle=30s in the URL). Consumers of gone processes that have
// nothing pending and were idle for an hour are removed, when the Redis
// user may (XINFO, XGROUP DELCONSUMER); consuming itself takes XGROUP
// CREATE, XREADGROUP, XACK and XAUTOCLAIM on the stream. The publish
// settings of the redis_stream connection (dedup_window, maxlen) are
// ignored, so one URL can serve both.
//
// NATS: a durable pull consumer named by the trigger's group (default the
// flow id) with the trigger's subject as filter, explicit acks, no limit
// on deliveries; batches of up to 64 are fetched, a message is acked once
// stored, or negatively acknowledged with a delay while the store fails.
// The id also covers the stream's creation time, so a stream deleted and
// created again (sequences start over) does not look like old messages.
//
// Both reconnect by themselves, backing off up to 5 s while the server or
// the store is unavailable; a disabled flow consumes nothing until it is
// enabled again.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

func init() { triggerSources = append(triggerSources, newStreamTriggers) }

const (
	streamBatch       = 64
	streamBlock       = 2 * time.Second // longest wait for new entries, and for stop
	streamCallTimeout = 5 * time.Second
	streamMaxBackoff  = 5 * time.Second
	defaultClaimIdle  = time.Minute
	staleConsumer     = time.Hour
	streamNakDelay    = 2 * time.Second // redelivery delay of a message the store refused
	// natsAckWait is how long JetStream waits for the ack of a message it
	// delivered before it delivers it again. A pull answered just as the
	// connection drops is lost on the way: this bounds how late a network
	// blip makes it. Storing a batch takes far less; should a slow store
	// take longer, the redelivered copy has the same message id and is
	// taken as a duplicate.
	natsAckWait = 10 * time.Second
)

// streamTriggers is the triggerSource of redis_stream and nats triggers:
// one consumer goroutine per flow.
type streamTriggers struct {
	e       *Engine
	workers *flowWorkers[streamSpec]
}

// streamSpec is what a consumer is started from; a change restarts it.
type streamSpec struct{ kind, url, stream, subject, group string }

func newStreamTriggers(e *Engine) triggerSource {
	return &streamTriggers{e: e, workers: newFlowWorkers[streamSpec](e)}
}

// sync starts, restarts and stops consumers to match the live flows.
func (s *streamTriggers) sync() {
	s.workers.sync(func() map[string]streamSpec {
		want := map[string]streamSpec{}
		s.e.mu.RLock()
		defer s.e.mu.RUnlock()
		for id, lf := range s.e.flows {
			if f := lf.cur.Load(); f != nil && f.Source != nil && f.Source.Trigger != nil {
				if sp, ok := s.specOf(id, f.Source.Trigger); ok {
					want[id] = sp
				}
			}
		}
		return want
	}, func(id string, sp streamSpec) (func(context.Context), error) {
		return func(ctx context.Context) { s.consume(ctx, id, sp) }, nil
	})
}

func (s *streamTriggers) stop() { s.workers.stop() }

func (s *streamTriggers) specOf(id string, t *dsl.Trigger) (streamSpec, bool) {
	sp := streamSpec{kind: "redis_stream"}
	st := t.RedisStream
	if t.NATS != nil {
		sp.kind, st = "nats", t.NATS
	}
	if st == nil {
		return sp, false
	}
	url, err := st.URL.Resolve(s.e.opts.Getenv)
	if err != nil {
		s.e.log.Error("stream trigger not started: its url cannot be resolved", "flow", id, "error", err)
		return sp, false
	}
	sp.url, sp.stream, sp.subject, sp.group = url, st.Stream, st.Subject, cmp.Or(st.Group, id)
	return sp, true
}

// streamReader is one flow's connection to its stream.
type streamReader interface {
	// poll reads one batch, stores each entry (accept) and acknowledges
	// the ones stored; it returns the first error.
	poll(ctx context.Context) error
	close()
}

// consume runs one flow's consumer until ctx ends.
func (s *streamTriggers) consume(ctx context.Context, id string, sp streamSpec) {
	log := s.e.log.With("flow", id, "trigger", sp.kind, "stream", sp.stream)
	var r streamReader
	var err error
	if sp.kind == "nats" {
		r, err = s.newNATSReader(id, sp)
	} else {
		r, err = s.newRedisReader(ctx, id, sp)
	}
	if err != nil {
		log.Error("stream trigger not started", "error", err)
		return
	}
	defer r.close()
	log.Info("stream trigger consuming", "group", sp.group)
	delay, lastErr := 100*time.Millisecond, ""
	for ctx.Err() == nil {
		if lf, f := s.e.live(id); f == nil || lf.disabled.Load() {
			sleepCtx(ctx, time.Second)
			continue
		}
		err := r.poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			if lastErr != "" {
				log.Info("stream trigger recovered")
			}
			delay, lastErr = 100*time.Millisecond, ""
			continue
		case err.Error() != lastErr:
			log.Warn("stream trigger failing; retrying", "error", err)
		default:
			log.Debug("stream trigger still failing", "error", err)
		}
		lastErr = err.Error()
		sleepCtx(ctx, delay+jitter(delay/2))
		delay = min(2*delay, streamMaxBackoff)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// streamEntry is one entry of an external stream, ready to be stored.
type streamEntry struct {
	id, source string
	body       any
	bad        error // why the payload was not JSON; body is then {raw or raw_base64, error}
	headers    map[string]string
}

// decodePayload decodes an entry's JSON payload (empty: null); a payload
// that is not JSON gives the body a dead letter keeps, and the error. A
// payload that is not even UTF-8 text (gzip, protobuf) is kept in base64:
// as a JSON string its bytes would be replaced, and lost.
func decodePayload(raw []byte) (any, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, nil
	}
	body, err := jsonv.Decode(raw)
	if err != nil {
		err = fmt.Errorf("the payload is not valid JSON: %w", err)
		if !utf8.Valid(raw) {
			return map[string]any{"raw_base64": base64.StdEncoding.EncodeToString(raw), "error": err.Error()}, err
		}
		return map[string]any{"raw": string(raw), "error": err.Error()}, err
	}
	return body, nil
}

// streamMsgID is a message id derived from parts.
func streamMsgID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + "-" + hex.EncodeToString(h[:16])
}

// accept stores en as a message of flow — queued, or dead when its payload
// or dedup key is bad — and returns nil once it is durable (now or
// before), so the caller may acknowledge the entry.
func (s *streamTriggers) accept(flow string, en streamEntry) error {
	e, m := s.e, s.e.metrics
	lf, f := e.live(flow)
	if f == nil {
		return errors.New("the flow is not live")
	}
	now := time.Now().UTC()
	raw, err := jsonv.Marshal(en.body)
	if err != nil {
		return err
	}
	sm := &store.Message{ID: en.id, Flow: flow, Revision: f.Revision, Status: store.Queued, Source: en.source,
		ReceivedAt: now, DueAt: now, Body: raw, Headers: en.headers}
	var ttl time.Duration
	reason, why := "parse", en.bad
	if why == nil && f.Dedup != nil {
		key, err := dedupKeyOf(f, mappings.NewEnv(en.body, en.headers, mappings.Meta{ID: en.id, Flow: flow, Revision: f.Revision, ReceivedAt: now}))
		if err != nil {
			reason, why = "dedup_key", err
		} else {
			sm.DedupKey, ttl = key, f.Dedup.TTL
		}
	}
	if why != nil {
		sm.Status, sm.Error = store.Dead, why.Error()
		sm.Attempts = []store.Attempt{{At: now, Step: "trigger", Class: "permanent", Error: why.Error()}}
	}
	m.received.WithLabelValues(flow).Inc()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	existing, err := e.store.Accept(ctx, sm, ttl)
	switch {
	case err != nil:
		m.rejected.WithLabelValues(flow, "store").Inc()
		return fmt.Errorf("storing the message: %w", err)
	case existing != nil:
		m.duplicates.WithLabelValues(flow).Inc()
	case why != nil:
		m.rejected.WithLabelValues(flow, reason).Inc()
		m.deadLettered.WithLabelValues(flow).Inc()
		e.log.Error("stream entry dead-lettered", "flow", flow, "message", sm.ID, "source", en.source, "error", why)
	default:
		m.accepted.WithLabelValues(flow).Inc()
		lf.pool.wake()
	}
	return nil
}

// consumerName names this process in Redis consumer groups.
func consumerName() string {
	host, _ := os.Hostname()
	return cmp.Or(host, "conveyor") + "-" + strconv.Itoa(os.Getpid())
}

// cleanURLError strips a *url.Error, which repeats the URL and its password.
func cleanURLError(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redisReader consumes one Redis Stream with a consumer group.
type redisReader struct {
	s                       *streamTriggers
	flow                    string
	rdb                     *redis.Client
	stream, group, consumer string
	claimIdle               time.Duration
	lastClaim               time.Time
	grouped                 bool // the group is known to exist
	backlog                 bool // own pending entries to read first
}

func (s *streamTriggers) newRedisReader(ctx context.Context, flow string, sp streamSpec) (*redisReader, error) {
	base, query, _ := strings.Cut(sp.url, "?")
	q, err := neturl.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("url: invalid query: %v", cleanURLError(err))
	}
	r := &redisReader{s: s, flow: flow, stream: sp.stream, group: sp.group,
		consumer: cmp.Or(q.Get("consumer"), consumerName()), claimIdle: defaultClaimIdle}
	if v := q.Get("claim_idle"); v != "" {
		if r.claimIdle, err = time.ParseDuration(v); err != nil || r.claimIdle <= 0 {
			return nil, fmt.Errorf("url: claim_idle %q is not a duration like 1m", v)
		}
	}
	for _, k := range []string{"consumer", "claim_idle", "dedup_window", "maxlen"} {
		q.Del(k)
	}
	if len(q) > 0 {
		base += "?" + q.Encode()
	}
	if u, err := neturl.Parse(base); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, errors.New("url must be a redis:// or rediss:// URL")
	}
	opts, err := redis.ParseURL(base)
	if err != nil {
		return nil, fmt.Errorf("url: %v", cleanURLError(err))
	}
	opts.DialTimeout = cmp.Or(opts.DialTimeout, streamCallTimeout)
	r.rdb = redis.NewClient(opts)
	context.AfterFunc(ctx, func() { r.rdb.Close() }) // ends a blocked read at once
	return r, nil
}

func (r *redisReader) close() { r.rdb.Close() }

func (r *redisReader) poll(ctx context.Context) error {
	if !r.grouped {
		err := r.rdb.XGroupCreateMkStream(ctx, r.stream, r.group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("XGROUP CREATE %s %s: %w", r.stream, r.group, err)
		}
		r.grouped, r.backlog = true, true
	}
	if time.Since(r.lastClaim) >= r.claimIdle/2 {
		if err := r.claim(ctx); err != nil {
			return err
		}
		r.lastClaim = time.Now()
	}
	start, block := ">", streamBlock
	if r.backlog {
		start, block = "0", -1
	}
	res, err := r.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: r.group, Consumer: r.consumer,
		Streams: []string{r.stream, start}, Count: streamBatch, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil // nothing new within the block time
	}
	if err != nil {
		return r.fail("XREADGROUP", err)
	}
	var entries []redis.XMessage
	if len(res) > 0 {
		entries = res[0].Messages
	}
	if r.backlog && len(entries) == 0 {
		r.backlog = false
	}
	return r.handle(ctx, entries)
}

// fail wraps err. The next poll reads this consumer's pending entries
// first: a read whose reply was lost may have delivered entries to it. On
// NOGROUP (the stream or group was deleted) it creates the group again.
func (r *redisReader) fail(cmd string, err error) error {
	r.backlog = true
	if strings.HasPrefix(err.Error(), "NOGROUP") {
		r.grouped = false
	}
	return fmt.Errorf("%s %s: %w", cmd, r.stream, err)
}

// handle stores and acknowledges entries in order, stopping at the first
// failure; what is left stays pending and is read again (backlog).
func (r *redisReader) handle(ctx context.Context, entries []redis.XMessage) error {
	for _, x := range entries {
		if len(x.Values) > 0 { // an entry deleted while pending has no fields: only acknowledge it
			if err := r.s.accept(r.flow, r.entry(x)); err != nil {
				r.backlog = true
				return err
			}
		}
		if err := r.rdb.XAck(ctx, r.stream, r.group, x.ID).Err(); err != nil {
			r.backlog = true
			return r.fail("XACK", err)
		}
	}
	return nil
}

// entry turns a stream entry into a message: its body field decoded as
// JSON, with the other fields as headers, or all fields as the body when
// there is no body field.
func (r *redisReader) entry(x redis.XMessage) streamEntry {
	en := streamEntry{id: streamMsgID("rs", r.flow, r.stream, x.ID), source: "redis_stream:" + r.stream,
		headers: map[string]string{"Redis-Stream-Id": x.ID}}
	raw, ok := x.Values["body"].(string)
	if !ok {
		en.body = x.Values
		return en
	}
	for k, v := range x.Values {
		if s, ok := v.(string); ok && k != "body" {
			en.headers[k] = s
		}
	}
	en.body, en.bad = decodePayload([]byte(raw))
	return en
}

// claim takes over entries left unacknowledged for claimIdle by any
// consumer, stores them, and removes consumers long gone.
func (r *redisReader) claim(ctx context.Context) error {
	start := "0-0"
	for range 16 { // at most 16 batches a pass; the next pass goes on
		msgs, next, err := r.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: r.stream, Group: r.group,
			MinIdle: r.claimIdle, Start: start, Count: streamBatch, Consumer: r.consumer}).Result()
		if err != nil {
			return r.fail("XAUTOCLAIM", err)
		}
		if err := r.handle(ctx, msgs); err != nil {
			return err
		}
		if start = next; next == "0-0" {
			break
		}
	}
	// Removing consumers is housekeeping: a failure (a user not allowed
	// XINFO) must not stop the consuming.
	consumers, err := r.rdb.XInfoConsumers(ctx, r.stream, r.group).Result()
	if err != nil {
		r.s.e.log.Debug("stream trigger: gone consumers not removed", "flow", r.flow, "stream", r.stream, "error", err)
		return nil
	}
	for _, c := range consumers {
		if c.Name != r.consumer && c.Pending == 0 && c.Idle > staleConsumer {
			r.rdb.XGroupDelConsumer(ctx, r.stream, r.group, c.Name)
		}
	}
	return nil
}

// natsReader consumes a JetStream stream with a durable pull consumer.
type natsReader struct {
	s       *streamTriggers
	flow    string
	sp      streamSpec
	nc      *nats.Conn
	js      jetstream.JetStream
	cons    jetstream.Consumer // nil: look the stream up and create it
	created string             // the stream's creation time, part of message ids
}

func (s *streamTriggers) newNATSReader(flow string, sp streamSpec) (*natsReader, error) {
	for u := range strings.SplitSeq(sp.url, ",") {
		if _, err := neturl.Parse(strings.TrimSpace(u)); err != nil {
			return nil, fmt.Errorf("url: %v", cleanURLError(err))
		}
	}
	// RetryOnFailedConnect: a server that is down at start is retried in
	// the background, like a connection lost later.
	nc, err := nats.Connect(sp.url, nats.Name("conveyor flow "+flow), nats.Timeout(streamCallTimeout),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.NoCallbacksAfterClientClose())
	if err != nil {
		return nil, fmt.Errorf("connecting: %v", cleanURLError(err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsReader{s: s, flow: flow, sp: sp, nc: nc, js: js}, nil
}

func (r *natsReader) close() { r.nc.Close() }

func (r *natsReader) poll(ctx context.Context) error {
	if r.cons == nil {
		cctx, cancel := context.WithTimeout(ctx, streamCallTimeout)
		defer cancel()
		st, err := r.js.Stream(cctx, r.sp.stream)
		if err != nil {
			return fmt.Errorf("stream %s: %w", r.sp.stream, err)
		}
		cons, err := st.CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{Durable: r.sp.group, FilterSubject: r.sp.subject,
			AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy, AckWait: natsAckWait,
			MaxDeliver: -1, Description: "conveyor flow " + r.flow})
		if err != nil {
			return fmt.Errorf("consumer %s on stream %s: %w", r.sp.group, r.sp.stream, err)
		}
		r.cons, r.created = cons, st.CachedInfo().Created.UTC().Format(time.RFC3339Nano)
	}
	fctx, cancel := context.WithTimeout(ctx, streamBlock)
	defer cancel()
	batch, err := r.cons.Fetch(streamBatch, jetstream.FetchContext(fctx))
	if err != nil {
		r.cons = nil
		return fmt.Errorf("fetch from %s: %w", r.sp.stream, err)
	}
	var failed error
	for msg := range batch.Messages() {
		if failed == nil {
			failed = r.handle(msg)
		} else {
			_ = msg.NakWithDelay(streamNakDelay) // not tried: the store is failing
		}
	}
	if failed != nil {
		return failed
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		r.cons = nil // the consumer or stream may be gone: look them up again
		return fmt.Errorf("fetch from %s: %w", r.sp.stream, err)
	}
	return nil
}

// handle stores one message, then acknowledges it; while the store fails
// the message is negatively acknowledged, to be redelivered after a delay.
func (r *natsReader) handle(msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.NakWithDelay(streamNakDelay)
		return fmt.Errorf("message metadata: %w", err)
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	en := streamEntry{id: streamMsgID("nats", r.flow, r.sp.stream, r.created, seq), source: "nats:" + msg.Subject(),
		headers: map[string]string{"Nats-Subject": msg.Subject(), "Nats-Stream-Seq": seq}}
	for k, v := range msg.Headers() {
		if len(v) > 0 {
			en.headers[k] = v[0]
		}
	}
	en.body, en.bad = decodePayload(msg.Data())
	if err := r.s.accept(r.flow, en); err != nil {
		_ = msg.NakWithDelay(streamNakDelay)
		return err
	}
	if err := msg.Ack(); err != nil {
		return fmt.Errorf("ack: %w", err) // redelivered after the ack wait; stored already
	}
	return nil
}
