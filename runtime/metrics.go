package runtime

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the engine's Prometheus series, registered on a registry of
// its own so that several engines (tests) can live in one process.
type metrics struct {
	reg          *prometheus.Registry
	received     *prometheus.CounterVec
	accepted     *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	completed    *prometheus.CounterVec
	filtered     *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	stepLatency  *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	revision     *prometheus.GaugeVec
	skipped      *prometheus.CounterVec
}

func newMetrics(e *Engine) *metrics {
	flow := []string{"flow"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "conveyor", Name: name, Help: help}, labels)
	}
	m := &metrics{
		reg:         prometheus.NewRegistry(),
		received:    counter("messages_received_total", "Requests and events that reached a flow's trigger.", flow...),
		accepted:    counter("messages_accepted_total", "Messages stored (async) or run (sync).", flow...),
		rejected:    counter("messages_rejected_total", "Messages refused at accept, by reason.", "flow", "reason"),
		duplicates:  counter("messages_duplicate_total", "Deliveries answered as duplicates.", flow...),
		rateLimited: counter("messages_rate_limited_total", "Requests answered 429.", flow...),
		completed:   counter("messages_completed_total", "Messages that ran every step.", flow...),
		filtered:    counter("messages_filtered_total", "Messages a filter step ended.", flow...),
		failed: counter("messages_failed_total", "Sync runs that failed and answered an error, by class (validation, permanent, transient, timeout, internal); "+
			"the sender's retry resumes them. Async messages retry or are dead-lettered instead.", "flow", "class"),
		retried:      counter("messages_retried_total", "Transient failures scheduled for another attempt.", flow...),
		deadLettered: counter("messages_dead_lettered_total", "Messages moved to the dead-letter queue.", flow...),
		reloads:      counter("reloads_total", "Flow reloads, by result (ok, failed, refused).", "flow", "result"),
		skipped:      counter("schedule_skipped_total", "Schedule firings skipped because the previous run was still pending.", flow...),
		stepLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "conveyor", Name: "step_duration_seconds",
			Help: "Duration of top-level steps.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"flow", "step", "kind"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "conveyor", Name: "flow_revision",
			Help: "The live revision of each flow (0 while it has none)."}, flow),
	}
	m.reg.MustRegister(m.received, m.accepted, m.rejected, m.duplicates, m.rateLimited, m.completed, m.filtered,
		m.failed, m.retried, m.deadLettered, m.stepLatency, m.reloads, m.revision, m.skipped,
		&queueCollector{e: e}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// queueCollector reads queue depth and the oldest message's age from the
// store at scrape time, for the live flows and for the removed ones whose
// queues still hold messages (a removed flow's queue is kept).
type queueCollector struct{ e *Engine }

var (
	depthDesc  = prometheus.NewDesc("conveyor_queue_depth", "Messages waiting for a worker.", []string{"flow"}, nil)
	oldestDesc = prometheus.NewDesc("conveyor_queue_oldest_seconds", "Age of the oldest waiting message.", []string{"flow"}, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc; ch <- oldestDesc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	live, removed := c.e.queueIDs()
	for i, id := range append(live, removed...) {
		n, oldest, err := c.e.store.Depth(ctx, id)
		if err != nil {
			continue
		}
		if i >= len(live) && n == 0 {
			c.e.forgetQueue(id)
			continue
		}
		age := 0.0
		if !oldest.IsZero() {
			age = time.Since(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n), id)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age, id)
	}
}
