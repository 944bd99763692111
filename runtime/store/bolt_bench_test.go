package store

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkBoltFinish measures what a sync run costs the embedded store:
// one Finish (journal record, body, dedup confirmation) per run, from
// many goroutines at once as under load, so commits are grouped.
func BenchmarkBoltFinish(b *testing.B) {
	s, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"id": 1, "currency": "EUR", "customer": {"name": "Zoë Müller", "email": "zoe@example.com"}, "lines": [` +
		strings.Repeat(`{"sku": "SKU-00042", "qty": 3, "price": "19.99", "title": "Hängematte Deluxe"},`, 11) + `{"sku": "X", "qty": 1}]}`)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.SetParallelism(32)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			now := time.Now()
			m := &Message{ID: uuid.Must(uuid.NewV7()).String(), Flow: "bench-sync", Revision: 1, Source: "http",
				DedupKey: fmt.Sprintf("bench-sync:%d", i), ReceivedAt: now, Attempt: 1, Status: Completed, Body: body,
				Headers:  map[string]string{"Content-Type": "application/json", "User-Agent": "bench"},
				Response: []byte(`{"status":200,"body":{"order_id":"O-1","lines":12}}`)}
			if _, ok, err := s.ClaimKey(ctx, m.DedupKey, m.ID, time.Hour); err != nil || !ok {
				b.Fatal("claim", ok, err)
			}
			if err := s.Finish(ctx, m, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkBoltAccept measures a durable enqueue (an async accept) with
// 32 accepting at once, as the async bench's load generator does.
func BenchmarkBoltAccept(b *testing.B) {
	s, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"id": 1, "currency": "EUR", "customer": {"name": "Zoë Müller", "email": "zoe@example.com"}, "lines": [` +
		strings.Repeat(`{"sku": "SKU-00042", "qty": 3, "price": "19.99", "title": "Hängematte Deluxe"},`, 11) + `{"sku": "X", "qty": 1}]}`)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.SetParallelism(16)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			now := time.Now()
			m := &Message{ID: uuid.Must(uuid.NewV7()).String(), Flow: "bench-async", Revision: 1, Source: "http", Status: Queued,
				DedupKey: fmt.Sprintf("bench-async:%d", i), ReceivedAt: now, DueAt: now, Body: body,
				Headers: map[string]string{"Content-Type": "application/json", "User-Agent": "bench"}}
			if dup, err := s.Accept(ctx, m, time.Hour); err != nil || dup != nil {
				b.Fatal(dup, err)
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user and system CPU time so far: what a
// write costs when many wait together, which ns/op (latency) hides.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
