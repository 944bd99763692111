package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// A schedule fires on time and never overlaps a run still pending: with
// calls taking 1.5 s and a firing every second, runs are skipped.
func TestScheduleFiresWithoutOverlap(t *testing.T) {
	testenv.SkipShort(t, "waits for several firings")
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(1500 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"nightly": `
trigger: {schedule: {cron: "@every 1s", timezone: Europe/Amsterdam}}
steps:
  - call: {connection: erp, path: /stock-sync, body: '{at: body.scheduled_at}'}
`})
	e := start(t, dir, runtime.Options{})
	time.Sleep(4200 * time.Millisecond)
	msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "nightly"})
	must(t, err)
	if len(msgs) < 2 || len(msgs) > 3 {
		t.Fatalf("%d runs in 4.2 s with 1.5 s calls every 1 s; want 2 or 3 (no overlap)", len(msgs))
	}
	running := 0
	for _, m := range msgs {
		if m.Source != "schedule" {
			t.Errorf("source %q", m.Source)
		}
		if m.Status == store.Running || m.Status == store.Queued {
			running++
		}
	}
	if running > 1 {
		t.Errorf("%d runs pending at once", running)
	}
}
