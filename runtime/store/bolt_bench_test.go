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
	benchWrites(b, 32, func(s *Bolt, i int64, m *Message) error {
		m.Flow, m.Status, m.DedupKey = "bench-sync", Completed, fmt.Sprintf("bench-sync:%d", i)
		m.Response = []byte(`{"status":200,"body":{"order_id":"O-1","lines":12}}`)
		if _, ok, err := s.ClaimKey(context.Background(), m.DedupKey, m.ID, time.Hour); err != nil || !ok {
			return fmt.Errorf("claim: %v %v", ok, err)
		}
		return s.Finish(context.Background(), m, time.Hour)
	})
}

// BenchmarkBoltAccept measures a durable enqueue (an async accept) with
// 32 accepting at once, as the async bench's load generator does.
func BenchmarkBoltAccept(b *testing.B) {
	benchWrites(b, 16, func(s *Bolt, i int64, m *Message) error {
		m.Flow, m.Status, m.DedupKey, m.DueAt = "bench-async", Queued, fmt.Sprintf("bench-async:%d", i), m.ReceivedAt
		dup, err := s.Accept(context.Background(), m, time.Hour)
		if dup != nil {
			return fmt.Errorf("a duplicate of %s", dup.ID)
		}
		return err
	})
}

// benchWrites runs write for messages of a 1.6 KB order body from
// parallelism×GOMAXPROCS goroutines and reports the CPU time per write
// (cpu-µs/op): ns/op is latency, bound by fsync, and hides the cost.
func benchWrites(b *testing.B, parallelism int, write func(s *Bolt, i int64, m *Message) error) {
	s, err := OpenBolt(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"id": 1, "currency": "EUR", "customer": {"name": "Zoë Müller", "email": "zoe@example.com"}, "lines": [` +
		strings.Repeat(`{"sku": "SKU-00042", "qty": 3, "price": "19.99", "title": "Hängematte Deluxe"},`, 11) + `{"sku": "X", "qty": 1}]}`)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
	b.SetParallelism(parallelism)
	cpu0, writes0 := cpuTime(), pageWrites(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := &Message{ID: uuid.Must(uuid.NewV7()).String(), Revision: 1, Source: "http", ReceivedAt: time.Now(), Attempt: 1, Body: body,
				Headers: map[string]string{"Content-Type": "application/json", "User-Agent": "bench"}}
			if err := write(s, n.Add(1), m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(pageWrites(s)-writes0)/float64(b.N), "pagewrites/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pageWrites is how many page writes the store's commits made so far.
func pageWrites(s *Bolt) int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

// BenchmarkBoltAcceptDerived is BenchmarkBoltAccept with ids that arrive
// in no order, as the derived ids of file, stream, event and schedule
// messages do (the messages and bodies buckets are filled to 95 % for
// the ascending ids of HTTP messages; see denseBucket).
func BenchmarkBoltAcceptDerived(b *testing.B) {
	benchWrites(b, 16, func(s *Bolt, i int64, m *Message) error {
		m.ID = uuid.NewString()
		m.Flow, m.Status, m.DedupKey, m.DueAt = "bench-async", Queued, fmt.Sprintf("bench-async:%d", i), m.ReceivedAt
		dup, err := s.Accept(context.Background(), m, time.Hour)
		if dup != nil {
			return fmt.Errorf("a duplicate of %s", dup.ID)
		}
		return err
	})
}
