package runtime_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// refusingStore is a store whose Accept fails while refuse is set, as a
// store that is down would.
type refusingStore struct {
	store.Store
	refuse atomic.Bool
	tries  atomic.Int64
}

func (s *refusingStore) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	s.tries.Add(1)
	if s.refuse.Load() {
		return nil, errors.New("store unavailable (test)")
	}
	return s.Store.Accept(ctx, m, ttl)
}

func refusing(t *testing.T) *refusingStore {
	s, err := store.OpenBolt(t.TempDir())
	must(t, err)
	rs := &refusingStore{Store: s}
	rs.refuse.Store(true)
	return rs
}

// addConnections appends connections to a workspace's conveyor.yaml.
func addConnections(t *testing.T, dir string, lines ...string) {
	f, err := os.OpenFile(filepath.Join(dir, "conveyor.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	for _, l := range lines {
		_, err := fmt.Fprintf(f, "  %s\n", l)
		must(t, err)
	}
}

// testStream returns a Redis URL, a client and a fresh stream key, deleted
// with every key under its prefix and its publish markers when t ends.
func testStream(t *testing.T) (string, *redis.Client, string) {
	url := storetest.RedisURL(t)
	stream := storetest.RedisPrefix(t, url) + "orders"
	opts, err := redis.ParseURL(url)
	must(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), "conveyor:publish:{"+stream+"}:*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
		rdb.Close()
	})
	return url, rdb, stream
}

func xadd(t *testing.T, rdb *redis.Client, stream string, fields ...any) string {
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Result()
	must(t, err)
	return id
}

func pending(rdb *redis.Client, stream, group string) int64 {
	p, err := rdb.XPending(context.Background(), stream, group).Result()
	if err != nil {
		return -1
	}
	return p.Count
}

// streamBodies lists the bodies tg received.
func streamBodies(tg *target) []map[string]any {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []map[string]any
	for _, b := range tg.orders {
		out = append(out, b)
	}
	return out
}

// storedBodyHas reports whether a stored message of flow has a body
// containing text.
func storedBodyHas(t *testing.T, e *runtime.Engine, flow, text string) bool {
	ms, err := e.Store().List(context.Background(), store.Filter{Flow: flow})
	must(t, err)
	for _, m := range ms {
		if strings.Contains(string(m.Body), text) {
			return true
		}
	}
	return false
}

func deadLetters(t *testing.T, e *runtime.Engine, flow string) []*store.Message {
	ms, err := e.Store().List(context.Background(), store.Filter{Flow: flow, Status: store.Dead})
	must(t, err)
	return ms
}

// Entries reach the target once, with either store: the embedded one and
// the Redis one (whose dead letters and dedup keys live in Redis too).
func TestRedisStreamTriggerDeliversEveryEntryOnce(t *testing.T) {
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) { testRedisStreamDelivery(t, backend) })
	}
}

func testRedisStreamDelivery(t *testing.T, backend string) {
	url, rdb, stream := testStream(t)
	opts := runtime.Options{}
	if backend == "redis" {
		opts.Store = redisStore(t, url, storetest.RedisPrefix(t, url), store.RedisOptions{})
	}
	erp := newTarget(t)
	// An entry written before the flow went live is taken too (group from 0).
	xadd(t, rdb, stream, "body", `{"id": 1, "qty": 820982911946154777}`, "source", "shop")
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(`
trigger: {redis_stream: {url: %q, stream: %q}}
dedup: {key: 'string(body.id ?? body.sku)', ttl: 1h}
steps:
  - call: {connection: erp, path: /orders, body: '{id: body.id, sku: body.sku, qty: body.qty, source: header("source")}'}
`, url, stream)})
	e := start(t, dir, opts)
	xadd(t, rdb, stream, "sku", "A-1", "qty", "2")         // no body field: the fields are the body
	xadd(t, rdb, stream, "body", `{"id": 1, "qty": 3}`)    // the flow's dedup drops it
	bad := xadd(t, rdb, stream, "body", `{"id": 2, "qty"`) // not JSON: a dead letter
	eventually(t, 5*time.Second, "two orders and a dead letter", func() bool {
		return erp.count() == 2 && len(deadLetters(t, e, "in")) == 1
	})
	eventually(t, 2*time.Second, "every entry acknowledged", func() bool { return pending(rdb, stream, "in") == 0 })
	got := map[string]bool{}
	for _, b := range streamBodies(erp) {
		got[fmt.Sprintf("%v %v %v %v", b["id"], b["sku"], b["qty"] != nil, b["source"])] = true
	}
	if !got["1 <nil> true shop"] || !got["<nil> A-1 true "] {
		t.Errorf("erp got %v", streamBodies(erp))
	}
	if !storedBodyHas(t, e, "in", `"qty":820982911946154777`) {
		t.Error("the stored body lost digits of qty")
	}
	dl := deadLetters(t, e, "in")[0]
	if !strings.Contains(string(dl.Body), `"raw":"{\"id\": 2, \"qty\"`) || !strings.Contains(dl.Error, "not valid JSON") ||
		dl.Source != "redis_stream:"+stream || dl.Headers["Redis-Stream-Id"] != bad {
		t.Errorf("dead letter: body %s, error %q, source %q, headers %v", dl.Body, dl.Error, dl.Source, dl.Headers)
	}
	// The entry delivered again (another group member, a restart) is
	// recognised by its id: nothing new is stored.
	before := erp.calls.Load()
	_, err := rdb.XGroupSetID(context.Background(), stream, "in", "0").Result()
	must(t, err)
	time.Sleep(2500 * time.Millisecond)
	if erp.calls.Load() != before || len(deadLetters(t, e, "in")) != 1 || pending(rdb, stream, "in") != 0 {
		t.Errorf("redelivered entries stored again: erp calls %d -> %d", before, erp.calls.Load())
	}
}

func TestRedisStreamEntryAcknowledgedOnlyOnceStored(t *testing.T) {
	url, rdb, stream := testStream(t)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {redis_stream: {url: %q, stream: %q, group: billing}}\nsteps: [{call: {connection: erp, path: /x}}]\n", url, stream)})
	st := refusing(t)
	start(t, dir, runtime.Options{Store: st})
	xadd(t, rdb, stream, "body", `{"id": 1}`)
	eventually(t, 5*time.Second, "the entry read while the store refuses", func() bool { return st.tries.Load() >= 2 })
	if n := pending(rdb, stream, "billing"); n != 1 || erp.calls.Load() != 0 {
		t.Fatalf("while the store refuses: %d pending (want 1: read, not acknowledged), %d calls", n, erp.calls.Load())
	}
	st.refuse.Store(false)
	eventually(t, 10*time.Second, "the order after the store recovered", func() bool { return erp.count() == 1 })
	eventually(t, 2*time.Second, "the entry acknowledged", func() bool { return pending(rdb, stream, "billing") == 0 })
}

// An entry whose dedup key is longer than the embedded store's keys may
// be (a key on a whole body, a runaway id) is stored and deduplicated like
// any other: it does not fail for good, redelivered for ever, and hold up
// every entry behind it.
func TestRedisStreamLongDedupKeyDoesNotStallTheStream(t *testing.T) {
	url, rdb, stream := testStream(t)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {redis_stream: {url: %q, stream: %q}}\ndedup: {key: 'body.id', ttl: 1h}\nsteps: [{call: {connection: erp, path: /x}}]\n", url, stream)})
	start(t, dir, runtime.Options{})
	long := `{"id": "` + strings.Repeat("x", 40000) + `"}`
	xadd(t, rdb, stream, "body", long)
	xadd(t, rdb, stream, "body", long) // a duplicate of the first
	xadd(t, rdb, stream, "body", `{"id": "after"}`)
	eventually(t, 8*time.Second, "the entries after the long key delivered", func() bool { return erp.count() == 2 })
	eventually(t, 2*time.Second, "every entry acknowledged", func() bool { return pending(rdb, stream, "in") == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := erp.calls.Load(); n != 2 {
		t.Errorf("erp got %d calls, want 2 (the duplicate dropped)", n)
	}
}

func TestRedisStreamClaimsEntriesOfDeadConsumers(t *testing.T) {
	url, rdb, stream := testStream(t)
	ctx := context.Background()
	must(t, rdb.XGroupCreateMkStream(ctx, stream, "in", "0").Err())
	xadd(t, rdb, stream, "body", `{"id": 7}`)
	// A replica read the entry and died before storing it.
	_, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "in", Consumer: "dead-replica", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
	must(t, err)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {redis_stream: {url: %q, stream: %q}}\nsteps: [{call: {connection: erp, path: /x}}]\n", url+"?claim_idle=300ms&consumer=replica-2", stream)})
	start(t, dir, runtime.Options{})
	eventually(t, 8*time.Second, "the claimed entry delivered", func() bool { return erp.count() == 1 })
	eventually(t, 2*time.Second, "the claimed entry acknowledged", func() bool { return pending(rdb, stream, "in") == 0 })
}

// A Redis user allowed only what consuming takes (create the group, read,
// acknowledge, take over) consumes: the removal of long-gone consumers,
// housekeeping that needs XINFO and XGROUP DELCONSUMER, does not stop it.
func TestRedisStreamConsumesWithoutHousekeepingPermissions(t *testing.T) {
	url, rdb, stream := testStream(t)
	ctx := context.Background()
	user := "cvtest-" + strings.Split(stream, ":")[1] // the stream's random part
	must(t, rdb.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">secret", "~"+stream, "+@connection",
		"+xgroup|create", "+xreadgroup", "+xack", "+xautoclaim").Err())
	t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	opts, _ := redis.ParseURL(url)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {redis_stream: {url: %q, stream: %q}}\nsteps: [{call: {connection: erp, path: /x}}]\n",
		fmt.Sprintf("redis://%s:secret@%s/%d", user, opts.Addr, opts.DB), stream)})
	start(t, dir, runtime.Options{})
	xadd(t, rdb, stream, "body", `{"id": 1}`)
	eventually(t, 5*time.Second, "the entry delivered", func() bool { return erp.count() == 1 })
	eventually(t, 2*time.Second, "the entry acknowledged", func() bool { return pending(rdb, stream, "in") == 0 })
}

func TestRedisStreamTriggerReconnects(t *testing.T) {
	url, rdb, stream := testStream(t)
	opts, _ := redis.ParseURL(url)
	proxy := storetest.NewProxy(t, opts.Addr)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {redis_stream: {url: %q, stream: %q}}\nsteps: [{call: {connection: erp, path: /x}}]\n",
		fmt.Sprintf("redis://%s/%d", proxy.Addr, opts.DB), stream)})
	start(t, dir, runtime.Options{})
	xadd(t, rdb, stream, "body", `{"id": 1}`)
	eventually(t, 5*time.Second, "the first entry", func() bool { return erp.count() == 1 })
	proxy.Down()
	xadd(t, rdb, stream, "body", `{"id": 2}`)
	time.Sleep(time.Second)
	proxy.Up()
	eventually(t, 10*time.Second, "the entry written while the server was unreachable", func() bool { return erp.count() == 2 })
}

// A flow publishes to a stream another flow consumes; the publish step
// appends once although the step after it fails and is retried.
func TestPublishToRedisStreamAndConsume(t *testing.T) {
	url, rdb, stream := testStream(t)
	erp, wms := newTarget(t), newTarget(t)
	var fails atomic.Int64
	erp.status = func(map[string]any) int {
		if fails.Add(1) <= 2 {
			return 503
		}
		return 201
	}
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"out": fmt.Sprintf(`
trigger: {http: {path: /out}}
retry: {attempts: 5, initial: 100ms, max: 200ms}
steps:
  - publish: {connection: bus, topic: %q, body: '{order: body.id}'}
  - call: {connection: erp, path: /after}
`, stream),
		"in": fmt.Sprintf("trigger: {redis_stream: {url: %q, stream: %q}}\nsteps: [{call: {connection: wms, path: /in}}]\n", url, stream),
	})
	addConnections(t, dir, fmt.Sprintf("bus: {redis_stream: {url: %q}}", url))
	e := start(t, dir, runtime.Options{})
	s, out := post(t, "http://"+e.TriggerAddr()+"/out", `{"id": 820982911946154777}`)
	if s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	eventually(t, 5*time.Second, "the ERP call after two failures", func() bool { return erp.count() == 1 })
	eventually(t, 5*time.Second, "the published entry consumed", func() bool { return wms.count() == 1 })
	entries, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	must(t, err)
	if len(entries) != 1 || entries[0].Values["idempotency_key"] != "out:"+out["id"].(string)+":1" {
		t.Fatalf("stream entries %v, want one with the step's idempotency key", entries)
	}
	if !storedBodyHas(t, e, "in", `{"order":820982911946154777}`) {
		t.Error("the consumed body lost digits of the order id")
	}
}

// natsStream creates a fresh JetStream stream capturing "<prefix>.>",
// deleted when t ends, on $CONVEYOR_TEST_NATS (default
// nats://127.0.0.1:4222); without a server the test is skipped, unless CI
// is set.
func natsStream(t *testing.T) (url string, js jetstream.JetStream, name, prefix string) {
	url, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	must(t, err)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name, prefix = "CVTEST_"+strings.ToUpper(hex.EncodeToString(b[:])), "cvtest."+hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("creating a stream (is JetStream enabled? nats-server -js): %v", err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return url, js, name, prefix
}

func natsPublish(t *testing.T, js jetstream.JetStream, subject, data string) {
	_, err := js.Publish(context.Background(), subject, []byte(data))
	must(t, err)
}

// unacked is what the durable consumer has not yet been acknowledged for:
// messages delivered and not acked, plus messages not yet delivered.
func unacked(js jetstream.JetStream, stream, durable string) int {
	c, err := js.Consumer(context.Background(), stream, durable)
	if err != nil {
		return -1
	}
	info, err := c.Info(context.Background())
	if err != nil {
		return -1
	}
	return info.NumAckPending + int(info.NumPending)
}

func TestNATSTriggerDeliversEveryMessageOnce(t *testing.T) {
	url, js, name, prefix := natsStream(t)
	erp := newTarget(t)
	natsPublish(t, js, prefix+".orders.created", `{"id": 1}`) // before the flow: taken too
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {nats: {url: %q, stream: %q, subject: %q}}\nsteps: [{call: {connection: erp, path: /orders, body: '{id: body.id, subject: header(\"Nats-Subject\")}'}}]\n",
		url, name, prefix+".orders.>")})
	e := start(t, dir, runtime.Options{})
	natsPublish(t, js, prefix+".orders.created", `{"id": 2}`)
	natsPublish(t, js, prefix+".orders.created", `{"id": 3`) // not JSON: a dead letter
	natsPublish(t, js, prefix+".stock.changed", `{"id": 4}`) // outside the subject filter
	eventually(t, 5*time.Second, "two orders and a dead letter", func() bool {
		return erp.count() == 2 && len(deadLetters(t, e, "in")) == 1
	})
	eventually(t, 3*time.Second, "every message acknowledged", func() bool { return unacked(js, name, "in") == 0 })
	for _, b := range streamBodies(erp) {
		if b["subject"] != prefix+".orders.created" {
			t.Errorf("erp got %v", b)
		}
	}
	dl := deadLetters(t, e, "in")[0]
	if !strings.Contains(string(dl.Body), `"raw":"{\"id\": 3"`) || dl.Source != "nats:"+prefix+".orders.created" || dl.Headers["Nats-Stream-Seq"] != "3" {
		t.Errorf("dead letter: body %s, source %q, headers %v", dl.Body, dl.Source, dl.Headers)
	}
	// Redelivered messages (the consumer recreated from the start) keep
	// their ids: nothing new is stored.
	must(t, js.DeleteConsumer(context.Background(), name, "in"))
	time.Sleep(3 * time.Second)
	if erp.calls.Load() != 2 || len(deadLetters(t, e, "in")) != 1 {
		t.Errorf("redelivered messages stored again: %d erp calls", erp.calls.Load())
	}
	eventually(t, 3*time.Second, "the redelivered messages acknowledged", func() bool { return unacked(js, name, "in") == 0 })
}

func TestNATSMessageAcknowledgedOnlyOnceStored(t *testing.T) {
	url, js, name, prefix := natsStream(t)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {nats: {url: %q, stream: %q, subject: %q, group: billing}}\nsteps: [{call: {connection: erp, path: /x}}]\n", url, name, prefix+".>")})
	st := refusing(t)
	start(t, dir, runtime.Options{Store: st})
	natsPublish(t, js, prefix+".orders", `{"id": 1}`)
	eventually(t, 5*time.Second, "the message read while the store refuses", func() bool { return st.tries.Load() >= 1 })
	if n := unacked(js, name, "billing"); n != 1 || erp.calls.Load() != 0 {
		t.Fatalf("while the store refuses: %d unacknowledged (want 1), %d calls", n, erp.calls.Load())
	}
	st.refuse.Store(false)
	eventually(t, 15*time.Second, "the order after the store recovered", func() bool { return erp.count() == 1 })
	eventually(t, 3*time.Second, "the message acknowledged", func() bool { return unacked(js, name, "billing") == 0 })
}

// A payload that is not text (here gzip) is dead-lettered with its bytes
// intact, so it can be recovered; as a JSON string they were replaced.
func TestNATSBinaryPayloadDeadLetteredIntact(t *testing.T) {
	url, js, name, prefix := natsStream(t)
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {nats: {url: %q, stream: %q}}\nsteps: [{call: {connection: erp, path: /x}}]\n", url, name)})
	e := start(t, dir, runtime.Options{})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"id": 1}`))
	must(t, zw.Close())
	_, err := js.Publish(context.Background(), prefix+".orders", gz.Bytes())
	must(t, err)
	eventually(t, 5*time.Second, "the dead letter", func() bool { return len(deadLetters(t, e, "in")) == 1 })
	var body struct {
		Raw    []byte `json:"raw_base64"`
		Reason string `json:"error"`
	}
	dl := deadLetters(t, e, "in")[0]
	must(t, json.Unmarshal(dl.Body, &body))
	if !bytes.Equal(body.Raw, gz.Bytes()) || !strings.Contains(body.Reason, "not valid JSON") {
		t.Errorf("dead letter body %s: the payload's bytes are not recoverable", dl.Body)
	}
	eventually(t, 3*time.Second, "the message acknowledged", func() bool { return unacked(js, name, "in") == 0 })
}

func TestNATSTriggerReconnects(t *testing.T) {
	url, js, name, prefix := natsStream(t)
	proxy := storetest.NewProxy(t, strings.TrimPrefix(url, "nats://"))
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"in": fmt.Sprintf(
		"trigger: {nats: {url: %q, stream: %q}}\nsteps: [{call: {connection: erp, path: /x}}]\n", "nats://"+proxy.Addr, name)})
	start(t, dir, runtime.Options{})
	natsPublish(t, js, prefix+".a", `{"id": 1}`)
	eventually(t, 5*time.Second, "the first message", func() bool { return erp.count() == 1 })
	proxy.Down()
	natsPublish(t, js, prefix+".a", `{"id": 2}`)
	time.Sleep(time.Second)
	proxy.Up()
	// Published as the connection dropped, it may have gone to the lost
	// connection's pull: JetStream then sends it again after the ack wait.
	eventually(t, 20*time.Second, "the message published while the server was unreachable", func() bool { return erp.count() == 2 })
}

// A flow publishes to a subject another flow consumes; a second publish
// with the same idempotency key is dropped by JetStream.
func TestPublishToNATSAndConsume(t *testing.T) {
	url, js, name, prefix := natsStream(t)
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"out": fmt.Sprintf(`
trigger: {http: {path: /out}}
steps:
  - publish: {connection: events, topic: %q, body: '{sku: body.sku, available: body.available}'}
  - call: {connection: erp, path: /after}
`, prefix+".stock.changed"),
		"in": fmt.Sprintf("trigger: {nats: {url: %q, stream: %q, subject: %q}}\nsteps: [{call: {connection: wms, path: /in}}]\n", url, name, prefix+".stock.*"),
	})
	addConnections(t, dir, fmt.Sprintf("events: {nats: {url: %q}}", url))
	e := start(t, dir, runtime.Options{})
	for _, sku := range []string{"A", "B"} {
		if s, out := post(t, "http://"+e.TriggerAddr()+"/out", `{"sku": "`+sku+`", "available": 5}`); s != 202 {
			t.Fatalf("accept: %d %v", s, out)
		}
	}
	eventually(t, 5*time.Second, "both stock changes consumed", func() bool { return wms.count() == 2 && erp.count() == 2 })
	// The same publication again, as a retried step sends it: dropped.
	msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "out"})
	must(t, err)
	m := nats.NewMsg(prefix + ".stock.changed")
	m.Data = []byte(`{"sku": "A", "available": 5}`)
	ack, err := js.PublishMsg(context.Background(), m, jetstream.WithMsgID("out:"+msgs[0].ID+":1"))
	must(t, err)
	if !ack.Duplicate {
		t.Errorf("a publish repeating the step's idempotency key was stored again: %+v", ack)
	}
	time.Sleep(500 * time.Millisecond)
	if wms.count() != 2 {
		t.Errorf("wms got %d, want 2", wms.count())
	}
}
