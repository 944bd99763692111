package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// outcomes sums what the accept path counts for flow id: every received
// request or event ends as exactly one of these.
func outcomes(text, id string) float64 {
	return flowCounter(text, "conveyor_messages_accepted_total", id) + flowCounter(text, "conveyor_messages_rejected_total", id) +
		flowCounter(text, "conveyor_messages_duplicate_total", id) + flowCounter(text, "conveyor_messages_rate_limited_total", id)
}

// A sync run is counted as accepted when it starts; a validate step later
// in the run that fails it answers 422, but the request was accepted and
// run, not refused at accept: it was counted as a rejection too, so
// received = accepted + rejected + duplicates + rate-limited broke.
func TestSyncRunValidationFailureCountedOnce(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"quote": `
trigger: {http: {path: /quote, mode: sync}}
steps:
  - map: {id: body.id}
  - validate:
      - {rule: body.id != nil, message: id is required}
  - respond: {status: 200}
`})
	e := start(t, dir, runtime.Options{})
	if c, _ := post(t, "http://"+e.TriggerAddr()+"/quote", `{}`); c != 422 {
		t.Fatalf("post: %d, want 422", c)
	}
	text := scrapeMetrics(t, e)
	if r, o := flowCounter(text, "conveyor_messages_received_total", "quote"), outcomes(text, "quote"); r != 1 || o != 1 {
		t.Errorf("received %v, accepted+rejected+duplicates+rate-limited %v; want both 1", r, o)
	}
}

// A sync run that a filter step ends is filtered, as the same flow run by
// a worker is: it was counted as completed.
func TestSyncFilteredCountsAsFiltered(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"check": `
trigger: {http: {path: /check, mode: sync}}
steps:
  - filter: body.keep == true
  - respond: {status: 201}
`})
	e := start(t, dir, runtime.Options{})
	if c, _ := post(t, "http://"+e.TriggerAddr()+"/check", `{"keep": false}`); c >= 300 {
		t.Fatalf("post: %d", c)
	}
	text := scrapeMetrics(t, e)
	if c, f := flowCounter(text, "conveyor_messages_completed_total", "check"), flowCounter(text, "conveyor_messages_filtered_total", "check"); c != 0 || f != 1 {
		t.Errorf("completed %v, filtered %v; want 0 and 1", c, f)
	}
	if st := e.Stats(context.Background(), "check"); st.Completed != 0 || st.Filtered != 1 {
		t.Errorf("stats: completed %d, filtered %d; want 0 and 1", st.Completed, st.Filtered)
	}
}

// Removing a flow's file stops the flow and keeps its queue: the queue's
// depth and age stay on /metrics while messages wait in it, or an alert
// on a stuck queue goes quiet the moment the flow is deleted.
func TestRemovedFlowQueueStaysOnMetrics(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { return 503 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
retry: {attempts: 5, initial: 1h, max: 1h}
steps: [{call: {connection: erp, path: /x}}]
`})
	e := start(t, dir, runtime.Options{})
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	id, _ := out["id"].(string)
	eventually(t, 5*time.Second, "the message retrying", func() bool {
		m, err := e.Store().Get(context.Background(), id)
		return err == nil && m.Status == store.Retrying
	})
	const depth = `conveyor_queue_depth{flow="orders"} 1`
	if !strings.Contains(scrapeMetrics(t, e), depth) {
		t.Fatalf("/metrics lacks %s before the removal", depth)
	}
	must(t, os.Remove(filepath.Join(dir, "flows", "orders.yaml")))
	eventually(t, 5*time.Second, "the flow stopped", func() bool {
		return !strings.Contains(scrapeMetrics(t, e), `conveyor_flow_revision{flow="orders"}`)
	})
	text := scrapeMetrics(t, e)
	if !strings.Contains(text, depth) || !strings.Contains(text, `conveyor_queue_oldest_seconds{flow="orders"}`) {
		t.Errorf("/metrics lacks the queue of the removed flow, which still holds its message:\n%s", grepLines(text, "conveyor_queue"))
	}
}

// A flow whose file does not load at start has no live revision: its
// gauge reads 0, as its help says, rather than being absent (absent looks
// like no such flow).
func TestBrokenFlowRevisionIsZero(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"bad":  "trigger: {http: {path: /bad}}\nsteps: [{map: {x: bdy.x}}]\n",
		"good": "trigger: {http: {path: /good}}\nsteps: [{map: {x: body.x}}]\n",
	})
	e := start(t, dir, runtime.Options{})
	text := scrapeMetrics(t, e)
	for _, want := range []string{`conveyor_flow_revision{flow="bad"} 0`, `conveyor_flow_revision{flow="good"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(text, "conveyor_flow_revision"))
		}
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}

// A file taken again after its accepting stopped midway (a store error, a
// restart) finds the records accepted the first time stored already: each
// is received again, and must be counted as a duplicate delivery, as an
// event or stream entry stored by an earlier try is. It was counted as
// received only.
func TestFileRetakeCountsEveryRecord(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"rows": fileFlow("inbox", "csv", "record", "", "  - call: {connection: erp, path: /rows, body: '{row: body.n}'}\n"),
	})
	data := filepath.Join(dir, "data")
	bolt, err := store.OpenBolt(data)
	must(t, err)
	flaky := &flakyStore{Store: bolt}
	flaky.left.Store(2)
	e := start(t, dir, runtime.Options{Store: flaky})
	drop(t, filepath.Join(dir, "inbox"), "rows.csv", "n\n1\n2\n3\n4\n")
	eventually(t, 10*time.Second, "the first rows delivered", func() bool { return erp.count() == 2 })
	must(t, e.Shutdown(context.Background()))

	e = start(t, dir, runtime.Options{DataDir: data})
	eventually(t, 10*time.Second, "the file in done/", func() bool { return exists(filepath.Join(dir, "inbox", "done", "rows.csv")) })
	text := scrapeMetrics(t, e)
	if r, o := flowCounter(text, "conveyor_messages_received_total", "rows"), outcomes(text, "rows"); r != 4 || o != 4 {
		t.Errorf("received %v, accepted+rejected+duplicates+rate-limited %v; want both 4", r, o)
	}
	if a := flowCounter(text, "conveyor_messages_accepted_total", "rows"); a != 2 {
		t.Errorf("accepted %v after the restart, want 2 (the rest were accepted before)", a)
	}
}

// metaDownStore cannot read stored settings (the watermark among them).
type metaDownStore struct{ store.Store }

func (s metaDownStore) GetMeta(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "watermark/") {
		return nil, errors.New("store unavailable")
	}
	return s.Store.GetMeta(ctx, key)
}

// Every log line about a message names it: the line saying a run of a
// watermark flow was postponed (its watermark unreadable) named the flow
// only, so an analyst could not tell which run waited.
func TestWatermarkPostponedLogNamesTheMessage(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"poll": `
trigger: {schedule: {cron: "@every 1s"}}
watermark: {initial: '"start"', next: '"next"'}
steps: [{map: {w: vars.watermark}}]
`})
	bolt, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	logs := &lockedBuffer{}
	start(t, dir, runtime.Options{Store: metaDownStore{bolt}, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	var line map[string]any
	eventually(t, 5*time.Second, "the run postponed", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "cannot read the watermark") {
				must(t, json.Unmarshal([]byte(l), &line))
				return true
			}
		}
		return false
	})
	if id, _ := line["message"].(string); !strings.HasPrefix(id, "sch-") || line["flow"] != "poll" {
		t.Errorf("log line %v: want flow poll and the message's id", line)
	}
}

// A sync run that fails counts as failed, by class: it was accepted and
// is never retried nor dead-lettered by conveyor, so a sync flow failing
// every request showed nothing but accepted requests.
func TestSyncFailureCountsAsFailed(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { return 503 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"price": `
trigger: {http: {path: /price, mode: sync}}
steps:
  - call: {connection: erp, path: /prices, as: p}
  - respond: {status: 200}
`})
	e := start(t, dir, runtime.Options{})
	if c, _ := post(t, "http://"+e.TriggerAddr()+"/price", `{"sku": "A"}`); c != 503 {
		t.Fatalf("post: %d; want 503", c)
	}
	const want = `conveyor_messages_failed_total{class="transient",flow="price"} 1`
	if text := scrapeMetrics(t, e); !strings.Contains(text, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
