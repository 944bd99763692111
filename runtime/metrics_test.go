package runtime_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// flowCounter sums the series of counter name for flow id in a /metrics
// text.
func flowCounter(text, name, id string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `flow="`+id+`"`) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// While Redis is out of reach, store.fail_open decides per check: by
// default rate limits let requests through and sync dedup refuses them
// (503); flipped, the reverse. Every refusal is counted as a rejection by
// reason, so received = accepted + rejected + duplicates + rate-limited
// holds through the outage.
func TestRedisOutageFailOpenSettings(t *testing.T) {
	for _, tc := range []struct {
		name, failOpen     string
		paced, quote       int
		pacedWhy, quoteWhy string
	}{
		{"defaults", "", 200, 503, "", "dedup_unavailable"},
		{"flipped", ", fail_open: {rate_limit: false, dedup: true}", 503, 200, "rate_limiter_unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, p := storetest.RedisProxy(t)
			dir := workspace(t, nil, map[string]string{
				"paced": "trigger: {http: {path: /paced, mode: sync}}\nrate_limit: {limit: 100, per: 1s}\nsteps: [{respond: {body: '{ok: true}'}}]\n",
				"quote": "trigger: {http: {path: /quote, mode: sync}}\ndedup: {key: 'string(body.id)', ttl: 1h}\nsteps: [{respond: {body: '{ok: true}'}}]\n",
			})
			cfg := fmt.Sprintf("store: {backend: redis, url: %q%s}\n", p.Through(url, "prefix="+storetest.RedisPrefix(t, url)), tc.failOpen)
			must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte(cfg), 0o644))
			e := start(t, dir, runtime.Options{})
			base := "http://" + e.TriggerAddr()
			p.Down()
			for _, c := range []struct {
				path, flow, why string
				want            int
			}{{"/paced", "paced", tc.pacedWhy, tc.paced}, {"/quote", "quote", tc.quoteWhy, tc.quote}} {
				resp, err := http.Post(base+c.path, "application/json", strings.NewReader(`{"id": 1}`))
				must(t, err)
				resp.Body.Close()
				if resp.StatusCode != c.want || (c.want == 503) != (resp.Header.Get("Retry-After") != "") {
					t.Errorf("%s during the outage: %d (Retry-After %q); want %d", c.path, resp.StatusCode, resp.Header.Get("Retry-After"), c.want)
				}
				text := scrapeMetrics(t, e)
				received := flowCounter(text, "conveyor_messages_received_total", c.flow)
				outcomes := flowCounter(text, "conveyor_messages_accepted_total", c.flow) + flowCounter(text, "conveyor_messages_rejected_total", c.flow) +
					flowCounter(text, "conveyor_messages_duplicate_total", c.flow) + flowCounter(text, "conveyor_messages_rate_limited_total", c.flow)
				if received != 1 || outcomes != 1 {
					t.Errorf("%s: received %v, accepted+rejected+duplicates+rate-limited %v; want both 1", c.flow, received, outcomes)
				}
				if c.why != "" && !strings.Contains(text, fmt.Sprintf(`conveyor_messages_rejected_total{flow=%q,reason=%q} 1`, c.flow, c.why)) {
					t.Errorf("%s: no rejection counted as %s", c.flow, c.why)
				}
			}
		})
	}
}

func scrapeMetrics(t *testing.T, e *runtime.Engine) string {
	t.Helper()
	resp, err := http.Get("http://" + e.AdminAddr() + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The validate steps that run at accept time get their latency histogram
// like every other step: the worker's run starts past them, so they were
// never observed.
func TestAcceptTimeStepsHaveLatencyHistograms(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"orders": orderFlow})
	e := start(t, dir, runtime.Options{})
	if c, _ := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`); c != 202 {
		t.Fatalf("post: %d", c)
	}
	eventually(t, 5*time.Second, "the order at the WMS", func() bool { return wms.count() == 1 })
	eventually(t, 2*time.Second, "histograms of the steps that ran", func() bool {
		return strings.Contains(scrapeMetrics(t, e), `conveyor_step_duration_seconds_count{flow="orders",kind="call",step="4"} 1`)
	})
	if want := `conveyor_step_duration_seconds_count{flow="orders",kind="validate",step="1"} 1`; !strings.Contains(scrapeMetrics(t, e), want) {
		t.Errorf("/metrics lacks %s (the validate step ran at accept time)", want)
	}
}
