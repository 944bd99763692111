package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
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

// failingAccept is a store whose Accept of a scheduled run hangs for hang
// and fails when fails says so, given the time and the run's
// scheduled_at: a Redis failover, whose commands time out. It records
// the runs it was asked to store and when each was stored.
type failingAccept struct {
	store.Store
	fails  func(now time.Time, scheduledAt string) bool
	hang   time.Duration
	mu     sync.Mutex
	asked  map[string]bool      // scheduled_at
	stored map[string]time.Time // message id -> when
}

func newFailingAccept(s store.Store, hang time.Duration, fails func(now time.Time, scheduledAt string) bool) *failingAccept {
	return &failingAccept{Store: s, fails: fails, hang: hang, asked: map[string]bool{}, stored: map[string]time.Time{}}
}

// during fails the Accepts that start between from and to.
func during(from, to time.Time) func(time.Time, string) bool {
	return func(now time.Time, _ string) bool { return now.After(from) && now.Before(to) }
}

func (s *failingAccept) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	var body struct {
		At string `json:"scheduled_at"`
	}
	_ = json.Unmarshal(m.Body, &body)
	s.mu.Lock()
	s.asked[body.At] = true
	s.mu.Unlock()
	if s.fails(time.Now(), body.At) {
		time.Sleep(s.hang)
		return nil, errors.New("store unavailable (test)")
	}
	ex, err := s.Store.Accept(ctx, m, ttl)
	if err == nil && ex == nil {
		s.mu.Lock()
		s.stored[m.ID] = time.Now()
		s.mu.Unlock()
	}
	return ex, err
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
	e := start(t, dir, runtime.Options{Store: newFailingAccept(b, 0, during(due.Add(-500*time.Millisecond), due.Add(2*time.Second)))})
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

// After an outage in which each try hangs 3 s, '@every 1s' goes on with
// the current runs; the runs it missed are not fired in a burst later.
func TestScheduleGoesOnFromNowAfterASlowStore(t *testing.T) {
	testenv.SkipShort(t, "waits out an outage")
	dir := workspace(t, nil, map[string]string{"tick": "trigger: {schedule: {cron: \"@every 1s\"}}\nsteps:\n  - log: '\"x\"'\n"})
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	s := newFailingAccept(b, 3*time.Second, during(time.Now().Add(500*time.Millisecond), time.Now().Add(4500*time.Millisecond)))
	e := start(t, dir, runtime.Options{Store: s})
	time.Sleep(10 * time.Second)
	msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "tick", Limit: 1000})
	must(t, err)
	for _, m := range msgs {
		var body struct {
			At time.Time `json:"scheduled_at"`
		}
		must(t, json.Unmarshal(m.Body, &body))
		s.mu.Lock()
		at := s.stored[m.ID]
		s.mu.Unlock()
		if lag := at.Sub(body.At); lag > 2500*time.Millisecond {
			t.Errorf("the run due at %s was stored %s later", body.At.Format("15:04:05"), lag.Round(100*time.Millisecond))
		}
	}
}

// otherReplica stores each scheduled run just before this replica does,
// as the other replica firing the same @every time does.
type otherReplica struct{ store.Store }

func (s *otherReplica) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	c := *m
	if _, err := s.Store.Accept(ctx, &c, ttl); err != nil {
		return nil, err
	}
	return s.Store.Accept(ctx, m, ttl)
}

// A run another replica stored first is a duplicate here, not a run this
// replica received.
func TestScheduleCountsAnotherReplicasRunAsADuplicate(t *testing.T) {
	testenv.SkipShort(t, "waits for firings")
	dir := workspace(t, nil, map[string]string{"tick": "trigger: {schedule: {cron: \"@every 1s\"}}\nsteps:\n  - log: '\"x\"'\n"})
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	e := start(t, dir, runtime.Options{Store: &otherReplica{b}})
	time.Sleep(2500 * time.Millisecond)
	if st := e.Stats(context.Background(), "tick"); st.Accepted != 0 || st.Received != 0 || st.Duplicates < 2 {
		t.Errorf("received %d, accepted %d, duplicates %d; want 0, 0 and one per firing", st.Received, st.Accepted, st.Duplicates)
	}
}

// @every 2s: the one try of the run at S hangs 2.4 s and fails. The run
// at S+2s, due while that try was in flight, is still fired (late), not
// dropped with it.
func TestScheduleFiresTheRunDueDuringASlowFiring(t *testing.T) {
	testenv.SkipShort(t, "waits for firings")
	dir := workspace(t, nil, map[string]string{"tick": "trigger: {schedule: {cron: \"@every 2s\"}}\nsteps:\n  - log: '\"x\"'\n"})
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	S := time.Now().Truncate(2 * time.Second).Add(4 * time.Second)
	slow := S.UTC().Format(time.RFC3339)
	s := newFailingAccept(b, 2400*time.Millisecond, func(_ time.Time, at string) bool { return at == slow })
	start(t, dir, runtime.Options{Store: s})
	next := S.Add(2 * time.Second).UTC().Format(time.RFC3339)
	eventually(t, time.Until(S.Add(5*time.Second)), "the run due at "+next+" tried", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.asked[next]
	})
}

// A run that fell due while no process ran the flow (a restart, an
// outage) fires once at the next start, unless catch_up is 0s. A new
// flow starts with its next run, not with the one before it.
func TestScheduleCatchesUpARunMissedDuringARestart(t *testing.T) {
	testenv.SkipShort(t, "waits for firings across a restart")
	const every = 3 * time.Second
	for _, tc := range []struct {
		name, catchUp string
		fires         bool
	}{{"default", "", true}, {"off", ", catch_up: 0s", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var at []string // scheduled_at of each call
			erp := newTarget(t)
			erp.status = func(body map[string]any) int {
				mu.Lock()
				defer mu.Unlock()
				at = append(at, fmt.Sprint(body["at"]))
				return 201
			}
			runs := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(at) }
			dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"nightly": `
trigger: {schedule: {cron: "@every 3s"` + tc.catchUp + `}}
steps:
  - call: {connection: erp, path: /stock-sync, body: '{at: body.scheduled_at}'}
`})
			data := filepath.Join(dir, "data")
			started := time.Now()
			e := start(t, dir, runtime.Options{DataDir: data})
			eventually(t, every+2*time.Second, "the first run", func() bool { return len(runs()) == 1 })
			if first, _ := time.Parse(time.RFC3339, runs()[0]); first.Before(started.Truncate(time.Second)) {
				t.Fatalf("the first run was due at %s, before the flow started at %s", first, started)
			}
			must(t, e.Shutdown(context.Background()))
			missed := time.Now().Truncate(every).Add(every) // falls due while no engine runs
			time.Sleep(time.Until(missed) + 100*time.Millisecond)

			start(t, dir, runtime.Options{DataDir: data}) // the next run is due in ~2.9 s
			want := missed.UTC().Format(time.RFC3339)
			if !tc.fires {
				eventually(t, 2*every, "the next run after the restart", func() bool { return len(runs()) >= 2 })
				if slices.Contains(runs(), want) {
					t.Fatalf("runs %v with catch_up: 0s; want the missed %s not fired", runs(), want)
				}
				return
			}
			eventually(t, 2*every, "the missed run", func() bool { return slices.Contains(runs(), want) })
			if got := runs()[1]; got != want {
				t.Errorf("runs %v: the first after the restart was due at %s; want the missed %s, fired at start", runs(), got, want)
			}
		})
	}
}

// scheduleRuns makes erp record the scheduled_at of each call and returns
// what it recorded so far.
func scheduleRuns(erp *target) func() []string {
	var mu sync.Mutex
	var at []string
	erp.status = func(body map[string]any) int {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, fmt.Sprint(body["at"]))
		return 201
	}
	return func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(at) }
}

const everyTwoSeconds = `
trigger: {schedule: {cron: "%s"}}
steps:
  - call: {connection: erp, path: /stock-sync, body: '{at: body.scheduled_at}'}
`

// A flow deleted and made again, or whose cron changed and changed back,
// starts with its next run: a run that fell due while it was gone (or
// ran on the other cron) is not its to catch up. The mark of its first
// life was trusted, and the recreated flow fired at once.
func TestScheduleCatchUpStartsAfreshForANewSpec(t *testing.T) {
	testenv.SkipShort(t, "waits for firings across edits")
	const every = 2 * time.Second
	for _, tc := range []struct{ name, between string }{{"deleted", ""}, {"changed back", "@every 1h"}} {
		t.Run(tc.name, func(t *testing.T) {
			erp := newTarget(t)
			runs := scheduleRuns(erp)
			src := fmt.Sprintf(everyTwoSeconds, "@every 2s")
			dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"nightly": src})
			file := filepath.Join(dir, "flows", "nightly.yaml")
			e := start(t, dir, runtime.Options{})
			eventually(t, every+2*time.Second, "the first run", func() bool { return len(runs()) == 1 })
			if tc.between == "" {
				must(t, os.Remove(file))
			} else {
				must(t, os.WriteFile(file, []byte(fmt.Sprintf(everyTwoSeconds, tc.between)), 0o644))
			}
			e.Reload()
			passed := time.Now().Truncate(every).Add(every) // due while the 2 s schedule does not run
			time.Sleep(time.Until(passed) + 150*time.Millisecond)
			back := time.Now()
			must(t, os.WriteFile(file, []byte(src), 0o644))
			e.Reload()
			eventually(t, 2*every, "the next run", func() bool { return len(runs()) >= 2 })
			if slices.Contains(runs(), passed.UTC().Format(time.RFC3339)) {
				t.Errorf("runs %v: the run due at %s, while the schedule was away, fired when it came back at %s",
					runs(), passed.UTC().Format(time.RFC3339), back.Format(time.RFC3339Nano))
			}
		})
	}
}

// slowReplica is a replica whose store answers its Accepts of scheduled
// runs late (a slow link to Redis, a long pause): it marks each run after
// the other replica has marked the next.
type slowReplica struct {
	store.Store
	delay time.Duration
}

func (s *slowReplica) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	time.Sleep(s.delay)
	return s.Store.Accept(ctx, m, ttl)
}

// scheduleMark reads the last run the store marks as handled for flow.
func scheduleMark(t *testing.T, s store.Store, flow string) time.Time {
	t.Helper()
	raw, err := s.GetMeta(context.Background(), "schedule:"+flow)
	must(t, err)
	var mk struct {
		Last time.Time `json:"last"`
	}
	if raw != nil {
		must(t, json.Unmarshal(raw, &mk))
	}
	return mk.Last
}

// Two replicas share a Redis store; one of them stores and marks each run
// 3 s late, with @every 2s. The mark of the last handled run, which a
// start catches up from, never moves back. It did: the slow replica put
// it back a run, and a replica starting then fired that run again, which
// the journal no longer holds once it is past the retention (shorter than
// catch_up), so the nightly sync ran twice.
func TestScheduleMarkNeverMovesBackAcrossReplicas(t *testing.T) {
	testenv.SkipShort(t, "waits for firings on two replicas")
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	dir := workspace(t, nil, map[string]string{"tick": "trigger: {schedule: {cron: \"@every 2s\"}}\nsteps:\n  - log: '\"x\"'\n"})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start(t, dir, runtime.Options{Store: redisStore(t, url, prefix, store.RedisOptions{Consumer: "a"}), Logger: quiet})
	slow := &slowReplica{Store: redisStore(t, url, prefix, store.RedisOptions{Consumer: "b"}), delay: 3 * time.Second}
	start(t, dir, runtime.Options{Store: slow, Logger: quiet})
	watch := redisStore(t, url, prefix, store.RedisOptions{Consumer: "watch"})
	var high time.Time
	for end := time.Now().Add(9 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		mark := scheduleMark(t, watch, "tick")
		if mark.Before(high) {
			t.Fatalf("the schedule's mark moved back from the run at %s to the one at %s", high.Format(time.TimeOnly), mark.Format(time.TimeOnly))
		}
		high = mark
	}
}

// failingMarks is a store that cannot write schedule marks while fails
// says so.
type failingMarks struct {
	store.Store
	fails func() bool
}

func (s *failingMarks) PutMeta(ctx context.Context, key string, value []byte) error {
	if strings.HasPrefix(key, "schedule:") && s.fails() {
		return errors.New("store unavailable (test)")
	}
	return s.Store.PutMeta(ctx, key, value)
}

func (s *failingMarks) SwapMeta(ctx context.Context, key string, old, value []byte) (bool, error) {
	if strings.HasPrefix(key, "schedule:") && s.fails() {
		return false, errors.New("store unavailable (test)")
	}
	return s.Store.SwapMeta(ctx, key, old, value)
}

// The store stores a run but cannot mark it handled for a second: the
// mark is tried again, and holds the run well before the next is due. It
// was written once: a restart before the next run (a whole day for a
// nightly job) fired the run again from the mark left behind.
func TestScheduleMarkIsTriedAgain(t *testing.T) {
	testenv.SkipShort(t, "waits for a firing")
	dir := workspace(t, nil, map[string]string{"tick": "trigger: {schedule: {cron: \"@every 5s\"}}\nsteps:\n  - log: '\"x\"'\n"})
	due := time.Now().Truncate(5 * time.Second).Add(5 * time.Second)
	if time.Until(due) < time.Second {
		due = due.Add(5 * time.Second)
	}
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	s := &failingMarks{Store: b, fails: func() bool {
		return time.Now().After(due.Add(-500*time.Millisecond)) && time.Now().Before(due.Add(time.Second))
	}}
	start(t, dir, runtime.Options{Store: s})
	time.Sleep(time.Until(due.Add(3500 * time.Millisecond)))
	if mark := scheduleMark(t, b, "tick"); !mark.Equal(due) {
		t.Errorf("1.5 s after the store took marks again the mark holds %s; want the run at %s", mark.Format(time.TimeOnly), due.Format(time.TimeOnly))
	}
}
