package natsconn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// testStream returns the URL of the test server (CONVEYOR_TEST_NATS,
// default nats://127.0.0.1:4222), a JetStream context and a fresh stream
// capturing "<prefix>.>", deleted when t ends. Without a server the test
// is skipped, unless CI is set.
func testStream(t *testing.T) (string, jetstream.JetStream, jetstream.Stream, string) {
	t.Helper()
	url, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "CVTEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
	prefix := "cvtest." + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatalf("creating a stream (is JetStream enabled? nats-server -js): %v", err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return url, js, st, prefix
}

func client(t *testing.T, url string) *Client {
	t.Helper()
	c, err := NewClient(connectors.Config{Name: "events", Values: map[string]any{"url": url}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPublishIsDedupedByTheStream(t *testing.T) {
	url, _, st, prefix := testStream(t)
	c := client(t, url)
	ctx := context.Background()
	subject := prefix + ".stock.changed"
	req := connectors.Request{Connection: "events", Method: connectors.MethodPublish, Path: subject,
		Body: map[string]any{"sku": "SKU-1", "available": 820982911946154777}, IdempotencyKey: "stock:m1:3"}
	first, err := c.Call(ctx, req)
	if err != nil || first.Status != 201 {
		t.Fatalf("publish: %v %+v", err, first)
	}
	again, err := c.Call(ctx, req) // the step retried after its publish went through
	if err != nil || again.Status != 200 {
		t.Fatalf("retried publish: %v %+v", err, again)
	}
	fb, ab := first.Body.(map[string]any), again.Body.(map[string]any)
	if fb["stream"] != st.CachedInfo().Config.Name || fb["seq"] != int64(1) || fb["duplicate"] != false || ab["duplicate"] != true || ab["seq"] != int64(1) {
		t.Errorf("answers %v then %v; want seq 1 then a duplicate of seq 1", fb, ab)
	}
	req.IdempotencyKey = "stock:m2:3"
	if r, err := c.Call(ctx, req); err != nil || r.Body.(map[string]any)["seq"] != int64(2) {
		t.Fatalf("another message: %v %+v", err, r)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages (%v), want 2", info.State.Msgs, err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := jsonv.Decode(m.Data)
	if err != nil || body.(map[string]any)["available"] != 820982911946154777 || m.Header.Get("Nats-Msg-Id") != "stock:m1:3" || m.Header.Get("Content-Type") != "application/json" {
		t.Errorf("stored message %s %v (%v)", m.Data, m.Header, err)
	}
}

func TestAnswersThatFailTheStep(t *testing.T) {
	url, _, _, prefix := testStream(t)
	c := client(t, url)
	ctx := context.Background()
	for _, subject := range []string{"", "a..b", prefix + ".*", prefix + ".>", "has space"} {
		if r, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: subject}); err != nil || r.Status != 400 {
			t.Errorf("subject %q: %v %+v, want 400", subject, err, r)
		}
	}
	if r, err := c.Call(ctx, connectors.Request{Method: "POST", Path: prefix + ".x"}); err != nil || r.Status != 400 {
		t.Errorf("POST: %v %+v, want 400", err, r)
	}
	// A subject no stream captures: an error, so the step retries (the
	// stream may be being created) and ends in the dead-letter queue.
	_, err := c.Call(ctx, connectors.Request{Method: connectors.MethodPublish, Path: "cvtest.nostream." + prefix, Body: 1, Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "publish to cvtest.nostream") {
		t.Errorf("no stream: %v", err)
	}
}

func TestConfigAndErrorsKeepThePasswordOut(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{}, "url is required"},
		{map[string]any{"url": "http://h:1"}, "nats://"},
		{map[string]any{"url": "nats://u:s3cret@h\x7f:1"}, "not a valid"},
		{map[string]any{"url": "nats://u:s3cret@h:1, redis://x"}, "nats://"},
		{map[string]any{"url": "nats://h:1", "stream": "X"}, "unknown field"},
	} {
		_, err := New(connectors.Config{Name: "events", Values: tc.values})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %v, want %q without the password", tc.values, err, tc.want)
		}
	}
	// Nothing is dialled until the first publish, which fails quickly.
	c := client(t, "nats://u:s3cret@127.0.0.1:1,nats://127.0.0.1:2")
	start := time.Now()
	_, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodPublish, Path: "a.b", Body: 1, Timeout: time.Second})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1,127.0.0.1:2") || time.Since(start) > 3*time.Second {
		t.Errorf("unreachable server: %v after %s; want a quick error naming the hosts only", err, time.Since(start))
	}
	c.Close()
	if _, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodPublish, Path: "a.b"}); err == nil {
		t.Error("a closed client published")
	}
}

// Calls to a server that accepts connections but never answers each give
// up at their own deadline, together: one connect serves them all. They
// connected one after the other under a lock, the k-th waiting k
// connect timeouts.
func TestCallsWaitForOneConnectUpToTheirDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and say nothing
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c, err := NewClient(connectors.Config{Name: "mute", Values: map[string]any{"url": "nats://" + ln.Addr().String()}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodPublish, Path: "orders.in", Body: map[string]any{}, Timeout: 300 * time.Millisecond}); err == nil {
				t.Error("a call to a mute server succeeded")
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("4 calls with a 300 ms timeout took %v", d)
	}
}
