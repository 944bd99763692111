package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// testRedis returns the URL of the test server (CONVEYOR_TEST_REDIS,
// default redis://127.0.0.1:6379/0), a client, and a fresh stream name
// deleted with its markers when t ends. Without a server the test is
// skipped, unless CI is set.
func testRedis(t *testing.T) (string, *redis.Client, string) {
	t.Helper()
	url := testenv.RedisURL(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	var b [6]byte
	_, _ = rand.Read(b[:])
	stream := "cvtest:" + hex.EncodeToString(b[:]) + ":orders"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, "conveyor:publish:{"+stream+"}:*").Result()
		rdb.Del(ctx, append(keys, stream)...)
		rdb.Close()
	})
	return url, rdb, stream
}

func client(t *testing.T, url string) *Client {
	t.Helper()
	c, err := NewClient(connectors.Config{Name: "bus", Values: map[string]any{"url": url}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPublishIsDedupedByIdempotencyKey(t *testing.T) {
	url, rdb, stream := testRedis(t)
	c := client(t, url)
	ctx := context.Background()
	body := map[string]any{"order": 820982911946154777, "name": "Zoë"}
	req := connectors.Request{Connection: "bus", Method: connectors.MethodPublish, Path: stream, Body: body, IdempotencyKey: "orders:m1:2"}
	first, err := c.Call(ctx, req)
	if err != nil || first.Status != 201 {
		t.Fatalf("first publish: %v %+v", err, first)
	}
	again, err := c.Call(ctx, req) // the step retried after its publish went through
	if err != nil || again.Status != 200 {
		t.Fatalf("retried publish: %v %+v", err, again)
	}
	fb, ab := first.Body.(map[string]any), again.Body.(map[string]any)
	if ab["duplicate"] != true || ab["id"] != fb["id"] || fb["duplicate"] != false {
		t.Errorf("retry answered %v, first %v; want the first entry's id, duplicate", ab, fb)
	}
	req.IdempotencyKey = "orders:m2:2"
	if r, err := c.Call(ctx, req); err != nil || r.Status != 201 {
		t.Fatalf("another message: %v %+v", err, r)
	}
	entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
	if err != nil || len(entries) != 2 {
		t.Fatalf("stream holds %d entries (%v), want 2", len(entries), err)
	}
	x := entries[0]
	if x.ID != fb["id"] || x.Values["idempotency_key"] != "orders:m1:2" {
		t.Errorf("entry %+v", x)
	}
	got, err := jsonv.Decode([]byte(x.Values["body"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	if m := got.(map[string]any); m["order"] != 820982911946154777 || m["name"] != "Zoë" {
		t.Errorf("body field %s lost something", x.Values["body"])
	}
	if ttl := rdb.PTTL(ctx, markerKey(stream, "orders:m1:2")).Val(); ttl <= 23*time.Hour || ttl > DefaultDedupWindow {
		t.Errorf("marker ttl %s, want the 24h window", ttl)
	}
}

func TestPublishWithoutKeyAndTrimmed(t *testing.T) {
	url, rdb, stream := testRedis(t)
	c := client(t, url+"?maxlen=1000&dedup_window=1m&claim_idle=5s") // the trigger's claim_idle is ignored
	ctx := context.Background()
	for range 3 {
		if r, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: stream, Body: "x"}); err != nil || r.Status != 201 {
			t.Fatalf("publish: %v %+v", err, r)
		}
	}
	if n := rdb.XLen(ctx, stream).Val(); n != 3 {
		t.Errorf("%d entries, want 3 (no key, no dedup)", n)
	}
	if _, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: stream, Body: 1, IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, markerKey(stream, "k")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("marker ttl %s, want at most dedup_window=1m", ttl)
	}
}

func TestAnswersThatFailTheStep(t *testing.T) {
	url, rdb, stream := testRedis(t)
	c := client(t, url)
	ctx := context.Background()
	if r, err := c.Call(ctx, connectors.Request{Method: "POST", Path: stream}); err != nil || r.Status != 400 {
		t.Errorf("POST: %v %+v, want 400", err, r)
	}
	if r, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: " "}); err != nil || r.Status != 400 {
		t.Errorf("empty stream: %v %+v, want 400", err, r)
	}
	rdb.Set(ctx, stream, "not a stream", time.Minute)
	r, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: stream, Body: 1, IdempotencyKey: "k"})
	if err != nil || r.Status != 422 || !strings.Contains(r.Body.(map[string]any)["error"].(string), "WRONGTYPE") {
		t.Errorf("a key that is no stream: %v %+v, want 422 WRONGTYPE", err, r)
	}
}

func TestConfigAndErrorsKeepThePasswordOut(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{}, "url is required"},
		{map[string]any{"url": "http://h:1"}, "redis:// or rediss://"},
		{map[string]any{"url": "redis://u:s3cret@h:1/x"}, "invalid database"},
		{map[string]any{"url": "redis://u:s3cret@h:1?dedup_window=soon"}, "dedup_window"},
		{map[string]any{"url": "redis://u:s3cret@h:1?maxlen=-1"}, "maxlen"},
		{map[string]any{"url": "redis://u:s3cret@h:1?bogus=1"}, "unexpected option"},
		{map[string]any{"url": "redis://u:s3cret@h\x7f:1"}, "not a valid"},
		{map[string]any{"url": "redis://h:1", "timeout": "1s"}, "unknown field"},
	} {
		_, err := New(connectors.Config{Name: "bus", Values: tc.values})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %v, want %q without the password", tc.values, err, tc.want)
		}
	}
	c := client(t, "redis://u:s3cret@127.0.0.1:1/0")
	start := time.Now()
	_, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodPublish, Path: "s", Body: 1, IdempotencyKey: "k", Timeout: time.Second})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") || time.Since(start) > 3*time.Second {
		t.Errorf("unreachable server: %v after %s; want a quick error naming the host only", err, time.Since(start))
	}
}

func TestMarkerSharesTheStreamsSlot(t *testing.T) {
	for stream, want := range map[string]string{
		"shop.orders":       "conveyor:publish:{shop.orders}:k",
		"{tenant1}.orders":  "conveyor:publish:{tenant1}:k",
		"odd{}.orders":      "conveyor:publish:{odd{}.orders}:k",
		"{a}b{c}":           "conveyor:publish:{a}:k",
		"half{open.orders":  "conveyor:publish:{half{open.orders}:k",
		"x{tenant2}.orders": "conveyor:publish:{tenant2}:k",
	} {
		if got := markerKey(stream, "k"); got != want {
			t.Errorf("markerKey(%q) = %q, want %q", stream, got, want)
		}
	}
}
