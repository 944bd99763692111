package runtime_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/conveyor-run/conveyor/runtime"
)

// BenchmarkSyncAccept profiles the sync request path in process: validate,
// dedup on a unique key, rate limit, map, respond.
func BenchmarkSyncAccept(b *testing.B) {
	benchAccept(b, "sync", `
trigger: {http: {path: /s, mode: sync}}
dedup: {key: 'string(body.id)', ttl: 1h}
rate_limit: {limit: 1000000, per: 1s}
steps:
  - validate:
      - {rule: body.id != nil, message: id}
      - {rule: 'all(body.lines ?? [], .qty > 0)', message: qty}
  - map: {order_id: '"O-" + string(body.id)', lines: 'map(body.lines, {sku: .sku, qty: .qty})'}
  - respond: {body: '{order_id: body.order_id, lines: len(body.lines)}'}
`)
}

// BenchmarkAsyncAccept profiles the async accept path (durable enqueue).
func BenchmarkAsyncAccept(b *testing.B) {
	benchAccept(b, "async", `
trigger: {http: {path: /s}}
dedup: {key: 'string(body.id)', ttl: 1h}
concurrency: 1
steps:
  - validate: [{rule: body.id != nil, message: id}]
  - filter: 'false'
`)
}

func benchAccept(b *testing.B, name, flow string) {
	t := &testing.T{}
	dir := workspace(t, nil, map[string]string{name: flow})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/s"
	var n atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := n.Add(1)
			body := fmt.Sprintf(`{"id": %d, "currency": "EUR", "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}`, id)
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
