package runtime_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
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

// blipStore refuses Accept between from and to, as a Redis failover would.
type blipStore struct {
	store.Store
	from, to time.Time
}

func (s *blipStore) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	if now := time.Now(); now.After(s.from) && now.Before(s.to) {
		return nil, errors.New("store unavailable (test)")
	}
	return s.Store.Accept(ctx, m, ttl)
}

// The store is out for two seconds just as a run is due: the run is
// enqueued once the store is back, not dropped until the next one.
func TestScheduleRunSurvivesAStoreBlip(t *testing.T) {
	testenv.SkipShort(t, "waits for a firing")
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"tick": "trigger: {schedule: {cron: \"@every 5s\"}}\nsteps:\n  - call: {connection: erp, path: /x}\n",
	})
	due := time.Now().Truncate(5 * time.Second).Add(5 * time.Second) // @every fires at multiples of 5 s
	if time.Until(due) < time.Second {
		due = due.Add(5 * time.Second)
	}
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	e := start(t, dir, runtime.Options{Store: &blipStore{Store: b, from: due.Add(-500 * time.Millisecond), to: due.Add(2 * time.Second)}})
	want := due.UTC().Format(time.RFC3339)
	eventually(t, time.Until(due.Add(4500*time.Millisecond)), "the run due at "+want, func() bool {
		msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "tick"})
		must(t, err)
		for _, m := range msgs {
			if strings.Contains(string(m.Body), want) {
				return true
			}
		}
		return false
	})
}
