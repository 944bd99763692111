package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// load describes one run of the load generator: a fixed number of workers
// sharing a deadline (Duration) and/or a request budget (Total). Rate > 0
// paces the run: a pacer hands out send times at Rate per second and
// workers take them, otherwise every worker sends its next request as soon
// as the previous one is answered (closed loop).
type load struct {
	Concurrency int
	Duration    time.Duration // stop issuing after this long (0: no deadline)
	Total       uint64        // stop after issuing this many (0: no budget)
	Rate        float64       // requests per second in all (0: closed loop)
	Method      string        // default POST
	URL         func(seq uint64) string
	Body        func(seq uint64) []byte
	Header      func(h http.Header, seq uint64) // optional extra headers
	OK          func(status int) bool           // default 2xx
	Inspect     func(status int, body []byte)   // optional: sees every answer's body
	Client      *http.Client
}

// loadResult is what a run measured.
type loadResult struct {
	Requests uint64         // answered or failed, all issued requests
	OK       uint64         // answered with a status OK accepts
	Failed   uint64         // answered with another status, or a transport error
	Errors   uint64         // transport errors (part of Failed)
	Status   map[int]uint64 // answers by status code
	ErrLog   []string       // the first transport errors
	Elapsed  time.Duration  // first send to last answer
	Lat      *hist          // send -> answer
	Sched    *hist          // paced runs: planned send time -> answer (no coordinated omission)
}

func (r *loadResult) rps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// seq numbers every request of the whole bench run, so that ids (and
// dedup keys) never repeat.
var seq atomic.Uint64

// newClient is a keep-alive client with an idle pool large enough for the
// workers, so that no request pays for a new connection once warm.
func newClient(concurrency int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// run drives the load and returns what it measured. ctx cancels it early.
func (l load) run(ctx context.Context) *loadResult {
	if l.Method == "" {
		l.Method = http.MethodPost
	}
	if l.OK == nil {
		l.OK = func(s int) bool { return s >= 200 && s < 300 }
	}
	if l.Client == nil {
		l.Client = newClient(l.Concurrency)
	}
	start := time.Now()
	var deadline time.Time
	if l.Duration > 0 {
		deadline = start.Add(l.Duration)
	}
	var issued atomic.Uint64
	take := func() bool { // one more request within budget and deadline?
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return false
		}
		return l.Total == 0 || issued.Add(1) <= l.Total
	}
	var tickets chan time.Time
	if l.Rate > 0 {
		tickets = make(chan time.Time, l.Concurrency)
		go func() { // the pacer: send times at start + i/Rate
			defer close(tickets)
			interval := float64(time.Second) / l.Rate
			for i := 0; ; i++ {
				due := start.Add(time.Duration(float64(i) * interval))
				if !deadline.IsZero() && !due.Before(deadline) {
					return
				}
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				if l.Total > 0 && issued.Add(1) > l.Total {
					return
				}
				select {
				case tickets <- due:
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	workers := make([]*loadResult, l.Concurrency)
	var wg sync.WaitGroup
	for w := range workers {
		res := &loadResult{Status: map[int]uint64{}, Lat: &hist{}, Sched: &hist{}}
		workers[w] = res
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for {
				var planned time.Time
				if tickets != nil {
					t, ok := <-tickets
					if !ok {
						return
					}
					planned = t
				} else if !take() {
					return
				}
				n := seq.Add(1)
				body := l.Body(n)
				req, err := http.NewRequestWithContext(ctx, l.Method, l.URL(n), bytes.NewReader(body))
				if err != nil {
					panic(err) // a bug in the scenario, not a measurement
				}
				req.Header.Set("Content-Type", "application/json")
				if l.Header != nil {
					l.Header(req.Header, n)
				}
				t0 := time.Now()
				resp, err := l.Client.Do(req)
				if err == nil {
					if l.Inspect != nil {
						buf.Reset()
						_, err = buf.ReadFrom(resp.Body)
					} else {
						_, err = io.Copy(io.Discard, resp.Body)
					}
					resp.Body.Close()
				}
				t1 := time.Now()
				res.Requests++
				res.Lat.add(t1.Sub(t0))
				if !planned.IsZero() {
					res.Sched.add(t1.Sub(planned))
				}
				if err != nil {
					if ctx.Err() != nil {
						return // cancelled: not a failure of the target
					}
					res.Failed++
					res.Errors++
					if len(res.ErrLog) < 3 {
						res.ErrLog = append(res.ErrLog, err.Error())
					}
					continue
				}
				res.Status[resp.StatusCode]++
				if l.OK(resp.StatusCode) {
					res.OK++
				} else {
					res.Failed++
				}
				if l.Inspect != nil {
					l.Inspect(resp.StatusCode, buf.Bytes())
				}
			}
		}()
	}
	wg.Wait()
	out := &loadResult{Status: map[int]uint64{}, Lat: &hist{}, Sched: &hist{}, Elapsed: time.Since(start)}
	for _, r := range workers {
		out.Requests += r.Requests
		out.OK += r.OK
		out.Failed += r.Failed
		out.Errors += r.Errors
		for s, n := range r.Status {
			out.Status[s] += n
		}
		if len(out.ErrLog) < 3 {
			out.ErrLog = append(out.ErrLog, r.ErrLog...)
		}
		out.Lat.merge(r.Lat)
		out.Sched.merge(r.Sched)
	}
	if len(out.ErrLog) > 3 {
		out.ErrLog = out.ErrLog[:3]
	}
	l.Client.CloseIdleConnections()
	return out
}

// hist is a log-linear latency histogram in nanoseconds (HDR-like): exact
// below 128 ns, then 64 buckets per power of two, so every recorded value
// is known within 1.6%. Zero value ready; not safe for concurrent use.
type hist struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max time.Duration
}

const (
	histSub     = 64 // buckets per power of two
	histBuckets = 2*histSub + 48*histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	i := 2*histSub + (shift-1)*histSub + int(v>>shift) - histSub
	return min(i, histBuckets-1)
}

// histValue is the middle of bucket i.
func histValue(i int) time.Duration {
	if i < 2*histSub {
		return time.Duration(i)
	}
	shift := (i-2*histSub)/histSub + 1
	top := uint64((i-2*histSub)%histSub + histSub)
	return time.Duration(top<<shift + (1<<shift)/2)
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
}

func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
}

// quantile returns the latency below which a fraction q of the samples lie.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(histValue(i), h.min), h.max)
		}
	}
	return h.max
}

// ms formats a duration as milliseconds with three decimals.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r *loadResult) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f req/s, ok %d, failed %d (transport errors %d), p50 %.3f ms, p99 %.3f ms, max %.3f ms, statuses %v",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.rps(), r.OK, r.Failed, r.Errors,
		ms(r.Lat.quantile(0.50)), ms(r.Lat.quantile(0.99)), ms(r.Lat.max), r.Status)
}
