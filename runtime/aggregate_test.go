package runtime_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// batchFlows are a flow collecting posted lines into batches and a flow
// sending each batch to the ERP's bulk import.
func batchFlows(aggregate string) map[string]string {
	return map[string]string{
		"collect": "trigger: {http: {path: /lines}}\nsteps:\n  - aggregate: " + aggregate + "\n",
		"import":  "trigger: {event: {topic: lines.batch}}\nsteps: [{call: {connection: erp, path: /bulk-imports}}]\n",
	}
}

// batches are the batch bodies the target received, sorted by their
// first item.
func (tg *target) batches() []map[string]any {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []map[string]any
	for _, b := range tg.orders {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]["items"]) < fmt.Sprint(out[j]["items"]) })
	return out
}

func postLines(t *testing.T, e *runtime.Engine, lines ...string) []string {
	t.Helper()
	var ids []string
	for _, l := range lines {
		s, out := post(t, "http://"+e.TriggerAddr()+"/lines", l)
		if s != http.StatusAccepted {
			t.Fatalf("post %s: %d %v", l, s, out)
		}
		ids = append(ids, out["id"].(string))
	}
	return ids
}

func TestAggregateBatchesOfSize(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, batchFlows(`{key: '"all"', item: body.n, size: 3, within: 1h, topic: lines.batch}`))
	e := start(t, dir, runtime.Options{})
	for i := 1; i <= 9; i++ {
		postLines(t, e, fmt.Sprintf(`{"n": %d}`, i))
	}
	eventually(t, 5*time.Second, "three batches", func() bool { return erp.count() == 3 })
	seen := map[string]bool{}
	for _, b := range erp.batches() {
		items := b["items"].([]any)
		if b["count"] != float64(3) || len(items) != 3 || b["key"] != "all" || b["first_at"] == nil || b["flushed_at"] == nil {
			t.Errorf("batch %v", b)
		}
		for _, it := range items {
			seen[fmt.Sprint(it)] = true
		}
	}
	if len(seen) != 9 {
		t.Errorf("items delivered: %v, want 1..9 once each", seen)
	}
	time.Sleep(300 * time.Millisecond)
	if n := erp.calls.Load(); n != 3 {
		t.Errorf("%d bulk imports, want 3", n)
	}
}

func TestAggregateWithinFlushesPartialBatch(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, batchFlows(`{item: body, size: 100, within: 300ms, topic: lines.batch}`))
	e := start(t, dir, runtime.Options{})
	began := time.Now()
	postLines(t, e, `{"sku": "A"}`, `{"sku": "B"}`)
	eventually(t, 5*time.Second, "the partial batch", func() bool { return erp.count() == 1 })
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("flushed after %s, before within", d)
	}
	b := erp.batches()[0]
	if b["count"] != float64(2) || b["key"] != "" || fmt.Sprint(b["items"]) != "[map[sku:A] map[sku:B]]" {
		t.Errorf("batch %v", b)
	}
}

func TestAggregatePerKey(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, batchFlows(`{key: body.wh, item: body.sku, size: 2, topic: lines.batch}`))
	e := start(t, dir, runtime.Options{})
	postLines(t, e, `{"wh": "AMS", "sku": "a1"}`, `{"wh": "RTM", "sku": "r1"}`, `{"wh": "AMS", "sku": "a2"}`, `{"wh": "RTM", "sku": "r2"}`, `{"wh": "ANR", "sku": "x"}`)
	eventually(t, 5*time.Second, "a batch per full key", func() bool { return erp.count() == 2 })
	got := map[string]string{}
	for _, b := range erp.batches() {
		items := fmt.Sprint(b["items"])
		got[b["key"].(string)] = items
	}
	if len(got) != 2 || (got["AMS"] != "[a1 a2]" && got["AMS"] != "[a2 a1]") || (got["RTM"] != "[r1 r2]" && got["RTM"] != "[r2 r1]") {
		t.Errorf("batches by key: %v", got)
	}
}

func TestAggregateBatchSurvivesRestart(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, batchFlows(`{item: body.n, size: 2, within: 1h, topic: lines.batch}`))
	e := start(t, dir, runtime.Options{})
	ids := postLines(t, e, `{"n": 1}`)
	eventually(t, 5*time.Second, "the first item stored", func() bool {
		m, _ := e.Store().Get(context.Background(), ids[0])
		return m != nil && m.Status == store.Completed
	})
	must(t, e.Shutdown(context.Background()))

	e2 := start(t, dir, runtime.Options{})
	postLines(t, e2, `{"n": 2}`)
	eventually(t, 5*time.Second, "the batch of both", func() bool { return erp.count() == 1 })
	if b := erp.batches()[0]; fmt.Sprint(b["items"]) != "[1 2]" {
		t.Errorf("batch %v", b)
	}
}

// A split whose second call fails once runs again from its first item:
// the items it aggregated already are not added twice.
func TestAggregateRetriedAddNotDuplicated(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	var failed atomic.Bool
	wms.status = func(body map[string]any) int {
		if body["sku"] == "b" && failed.CompareAndSwap(false, true) {
			return 503
		}
		return 201
	}
	flows := batchFlows("")
	flows["collect"] = `
trigger: {http: {path: /lines}}
retry: {attempts: 5, initial: 50ms, max: 100ms}
steps:
  - split:
      items: body.lines
      steps:
        - aggregate: {item: item.sku, size: 10, within: 1s, topic: lines.batch}
        - call: {connection: wms, path: /reserve, body: item}
`
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, flows)
	e := start(t, dir, runtime.Options{})
	postLines(t, e, `{"lines": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]}`)
	eventually(t, 5*time.Second, "the batch", func() bool { return erp.count() == 1 })
	if !failed.Load() {
		t.Fatal("the reservation of b never failed: nothing was retried")
	}
	if b := erp.batches()[0]; b["count"] != float64(3) || !strings.Contains(fmt.Sprint(b["items"]), "[a b c]") {
		t.Errorf("batch %v, want the three items once", b)
	}
}

// A batch whose within passes while the engine is down is published soon
// after the next start, without a new item.
func TestAggregateWithinPassesWhileDown(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, batchFlows(`{item: body.n, within: 3s, topic: lines.batch}`))
	e := start(t, dir, runtime.Options{})
	ids := postLines(t, e, `{"n": 1}`, `{"n": 2}`)
	for _, id := range ids {
		eventually(t, 5*time.Second, "the items stored", func() bool {
			m, _ := e.Store().Get(context.Background(), id)
			return m != nil && m.Status == store.Completed
		})
	}
	must(t, e.Shutdown(context.Background()))
	if erp.count() != 0 {
		t.Fatal("the batch was published before the shutdown: the items took longer than within to store")
	}
	time.Sleep(3 * time.Second)
	start(t, dir, runtime.Options{})
	eventually(t, 5*time.Second, "the batch", func() bool { return erp.count() == 1 })
	if b := erp.batches()[0]; fmt.Sprint(b["items"]) != "[1 2]" {
		t.Errorf("batch %v", b)
	}
}
