package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// triggerSource is a kind of trigger that runs inside the engine (files,
// external streams): sync starts, restarts and stops its listeners to
// match the live flows (called after every reload), stop ends them all.
type triggerSource interface {
	sync()
	stop()
}

// triggerSources are the constructors of the trigger sources compiled
// in; each registers itself from an init function in its own file.
var triggerSources []func(*Engine) triggerSource

// scheduler fires schedule triggers. A firing enqueues a message whose id
// derives from the flow and the scheduled time, so it is stored once; a
// firing while the previous run is still pending is skipped, so runs
// never overlap.
type scheduler struct {
	e       *Engine
	mu      sync.Mutex
	jobs    map[string]*job // flow id -> job
	stopped bool            // by Shutdown: a reload during the drain starts no job
}

type job struct {
	spec, tz string
	catchUp  time.Duration // how old a missed run may be to fire at start (0: never)
	stop     chan struct{}
	last     string    // id of the last message it enqueued
	marked   time.Time // the latest run this job recorded as handled (see mark)
}

// defaultCatchUp is catch_up when a flow does not set it: a nightly job
// whose time passed during a restart or an outage still runs that night.
const defaultCatchUp = 24 * time.Hour

func catchUpOf(t *dsl.ScheduleTrigger) time.Duration {
	if t.CatchUp == nil {
		return defaultCatchUp
	}
	return max(t.CatchUp.D, 0)
}

func newScheduler(e *Engine) *scheduler { return &scheduler{e: e, jobs: map[string]*job{}} }

// sync starts, restarts and stops jobs to match the live flows.
func (s *scheduler) sync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	want := map[string]*dsl.ScheduleTrigger{}
	s.e.mu.RLock()
	for id, lf := range s.e.flows {
		if f := lf.cur.Load(); f != nil && f.Trigger.Schedule != nil {
			want[id] = f.Trigger.Schedule
		}
	}
	s.e.mu.RUnlock()
	for id, j := range s.jobs {
		if w, ok := want[id]; !ok || w.Cron != j.spec || w.Timezone != j.tz || catchUpOf(w) != j.catchUp {
			close(j.stop)
			delete(s.jobs, id)
			if !ok {
				// Gone (deleted, or no longer on a schedule): a flow of
				// that name made later starts with its next run.
				s.forget(id)
			}
		}
	}
	for id, t := range want {
		if _, running := s.jobs[id]; running {
			continue
		}
		sched, err := dsl.ParseCron(t.Cron)
		if err != nil {
			continue // lint reported it; the flow never went live
		}
		loc := time.UTC
		if t.Timezone != "" {
			if l, err := time.LoadLocation(t.Timezone); err == nil {
				loc = l
			}
		}
		j := &job{spec: t.Cron, tz: t.Timezone, catchUp: catchUpOf(t), stop: make(chan struct{})}
		s.jobs[id] = j
		s.e.goLoop(func() { s.run(id, j, sched, loc) })
	}
}

// stop stops every job; later syncs start none.
func (s *scheduler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for id, j := range s.jobs {
		close(j.stop)
		delete(s.jobs, id)
	}
}

func (s *scheduler) run(id string, j *job, sched cron.Schedule, loc *time.Location) {
	var last time.Time // the wall clock of the last firing
	now := time.Now()
	next, wall := nextRun(sched, loc, now, last)
	if missed := s.missed(id, j, sched, loc, now); !missed.IsZero() {
		s.e.log.Info("schedule fires a run that fell due while it was not running", "flow", id, "scheduled_at", missed)
		s.fire(id, j, missed, next)
	}
	for {
		if next.IsZero() { // lint refuses such a spec; a stored revision may still hold one
			s.e.log.Error("schedule never fires: no time matches it", "flow", id, "cron", j.spec)
			return
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-j.stop:
			timer.Stop()
			return
		case <-s.e.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		at := next
		last = wall
		next, wall = nextRun(sched, loc, at, last)
		s.fire(id, j, at, next)
		if now := time.Now(); now.After(next) {
			// The firing took past the next run (a store that hung, a
			// paused process): fire the latest run due by now, once, and
			// skip the older ones rather than fire them in a burst.
			if latest, w, skipped := lastDue(sched, loc, next, wall, now); skipped > 0 {
				next, wall = latest, w
				s.e.metrics.skipped.WithLabelValues(id).Add(float64(skipped))
				s.e.log.Warn("schedule skipped runs: the firing before took past them", "flow", id, "skipped", skipped, "next", next)
			}
		}
	}
}

// nextRun returns when sched fires next after now, reckoned on loc's wall
// clock so that each wall-clock time fires once: cron.Schedule reckons in
// instants, and a job at 02:30 fired twice on the night the clocks go
// back and not at all on the night they go forward. A time the clocks
// skip fires as they pass it (02:30 at 03:30 summer time); a time they
// pass twice fires once. after is the wall clock of the previous firing
// (zero: none); wall is this firing's, to pass as after next time.
//
// A schedule that fires every hour (or every interval) goes by the clock
// of the world instead, as cron does: */15 fires every 15 minutes through
// both nights, rather than pausing for the repeated hour.
//
// An @every schedule fires at fixed multiples of its interval (counted
// from year 1, as time.Truncate does), not at intervals from the
// process's start: replicas (and a restarted process) then agree on the
// times, and each run is stored once. A schedule that matches no time
// returns zero.
func nextRun(sched cron.Schedule, loc *time.Location, now, after time.Time) (at, wall time.Time) {
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		return now.Truncate(every.Delay).Add(every.Delay), time.Time{}
	}
	if spec, ok := sched.(*cron.SpecSchedule); !ok || spec.Hour&allHours == allHours {
		return sched.Next(now.In(loc)), time.Time{}
	}
	w := wallClock(now.In(loc))
	if w.Before(after) {
		w = after // the hour the clocks went back, passed a second time
	}
	if wall = sched.Next(w); wall.IsZero() {
		return time.Time{}, time.Time{}
	}
	at = time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	if d := wall.Sub(wallClock(at)); d > 0 {
		// A skipped time: west of UTC time.Date goes back to before the
		// gap (02:00 -> 01:00 standard time); fire as the clocks pass it.
		at = at.Add(d)
	}
	return at, wall
}

const allHours = 1<<24 - 1

// wallClock is t's wall-clock reading as a UTC time, where no hour is
// skipped or repeated.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// fire enqueues the run due at and marks it handled. A store that cannot
// take it is asked again, with backoff, until the next run is due
// (until): the run's id derives from at, so however often it is sent,
// and by however many replicas, it is stored once. The mark is asked
// for again the same way: a start catches up from it (see missed), and
// left behind it would fire this run again.
func (s *scheduler) fire(id string, j *job, at, until time.Time) {
	e := s.e
	wait := 500 * time.Millisecond
	enqueued := false
	for {
		var err error
		what := "cannot enqueue a scheduled run"
		if !enqueued {
			err = s.enqueue(id, j, at)
			enqueued = err == nil
		}
		if enqueued {
			if err = s.mark(id, j, at); err == nil {
				return
			}
			what = "cannot record a scheduled run as handled"
		}
		if !until.IsZero() && time.Now().Add(wait).After(until) {
			e.log.Error(what+"; the next one is due", "flow", id, "scheduled_at", at, "error", err)
			return
		}
		e.log.Warn(what+"; trying again", "flow", id, "scheduled_at", at, "retry_in", wait.String(), "error", err)
		select {
		case <-j.stop:
			return
		case <-e.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// scheduleMark is what the store keeps of a schedule (meta key
// "schedule:<flow>"): the latest run that was handled, that is stored or
// deliberately skipped, by any replica, under this spec.
type scheduleMark struct {
	Cron     string    `json:"cron"`
	Timezone string    `json:"timezone"`
	Last     time.Time `json:"last"`
}

func markKey(flow string) string { return "schedule:" + flow }

// mark records at as the latest handled run of flow id. The stored mark
// only moves forward under one spec: replicas mark the same runs, and
// one that marks late (its store slow, its firing tried again) must not
// take back a later run another replica marked. A start would fire that
// run again, and once the journal no longer holds its message (a
// retention shorter than catch_up) it would run twice. The store
// compares and writes in one step (SwapMeta). An error is the store's.
func (s *scheduler) mark(id string, j *job, at time.Time) error {
	select {
	case <-j.stop: // the flow was removed meanwhile, and its mark with it
		return nil
	default:
	}
	if !at.After(j.marked) {
		return nil
	}
	raw, _ := json.Marshal(scheduleMark{Cron: j.spec, Timezone: j.tz, Last: at.UTC()})
	ctx, cancel := context.WithTimeout(s.e.ctx, 10*time.Second)
	defer cancel()
	for range 10 {
		cur, err := s.e.store.GetMeta(ctx, markKey(id))
		if err != nil {
			return err
		}
		var mk scheduleMark
		if cur != nil && json.Unmarshal(cur, &mk) == nil && mk.Cron == j.spec && mk.Timezone == j.tz && !mk.Last.Before(at) {
			j.marked = mk.Last // marked already, by another replica
			return nil
		}
		ok, err := s.e.store.SwapMeta(ctx, markKey(id), cur, raw)
		if err != nil {
			return err
		}
		if ok {
			j.marked = at
			return nil
		}
		// Another replica wrote meanwhile: look again, a few times; then
		// fire tries again later, with backoff.
	}
	return errors.New("the mark kept changing while it was written")
}

// forget deletes the mark of flow id, which no longer runs on a schedule.
func (s *scheduler) forget(id string) {
	ctx, cancel := context.WithTimeout(s.e.ctx, 10*time.Second)
	defer cancel()
	if err := s.e.store.PutMeta(ctx, markKey(id), nil); err != nil {
		s.e.log.Warn("cannot forget when a removed schedule last ran", "flow", id, "error", err)
	}
}

// missed returns the latest run of the job that fell due after the last
// run the store marks as handled (see mark) and no longer ago than its
// catch_up, or zero when there is none. Nothing is missed before the job
// first ran under its spec: a new flow, or a changed cron or time zone,
// is marked as starting now, and starts with its next run.
func (s *scheduler) missed(id string, j *job, sched cron.Schedule, loc *time.Location, now time.Time) time.Time {
	if j.catchUp <= 0 {
		return time.Time{}
	}
	ctx, cancel := context.WithTimeout(s.e.ctx, 10*time.Second)
	defer cancel()
	raw, err := s.e.store.GetMeta(ctx, markKey(id))
	if err != nil {
		s.e.log.Error("cannot read when the schedule last ran; a run missed meanwhile does not fire", "flow", id, "error", err)
		return time.Time{}
	}
	var mk scheduleMark
	if raw == nil || json.Unmarshal(raw, &mk) != nil || mk.Cron != j.spec || mk.Timezone != j.tz {
		// A new flow, or a new cron or time zone: it starts now, and a run
		// that falls due while it does not run is its to catch up. The
		// mark of a spec it had before must not count if it comes back.
		if err := s.mark(id, j, now); err != nil {
			s.e.log.Warn("cannot record when the schedule started", "flow", id, "error", err)
		}
		return time.Time{}
	}
	j.marked = mk.Last
	from := mk.Last
	if oldest := now.Add(-j.catchUp); from.Before(oldest) {
		from = oldest.Add(-time.Nanosecond) // a run due exactly catch_up ago still fires
	}
	due, _, _ := lastDue(sched, loc, from, time.Time{}, now)
	return due
}

// lastDue returns the latest run of sched after from (whose wall clock is
// after, see nextRun) that is due by now, and how many runs there are
// after from up to it; zero and 0 when none is due.
func lastDue(sched cron.Schedule, loc *time.Location, from, after, now time.Time) (at, wall time.Time, n int) {
	for {
		next, w := nextRun(sched, loc, from, after)
		if next.IsZero() || next.After(now) {
			return at, wall, n
		}
		at, wall, n = next, w, n+1
		from, after = next, w
	}
}

// enqueue stores the run of flow id due at, unless the flow is not live,
// is disabled or its previous run is still pending (then it is skipped).
// An error is the store's.
func (s *scheduler) enqueue(id string, j *job, at time.Time) error {
	e := s.e
	lf, f := e.live(id)
	if f == nil || lf.disabled.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	body, _ := jsonv.Marshal(map[string]any{"scheduled_at": at.UTC().Format(time.RFC3339), "timezone": at.Location().String()})
	h := sha256.Sum256([]byte(id + "\x00" + at.UTC().Format(time.RFC3339Nano)))
	m := &store.Message{ID: "sch-" + hex.EncodeToString(h[:16]), Flow: id, Revision: f.Revision, Status: store.Queued, Source: "schedule",
		ReceivedAt: time.Now().UTC(), DueAt: time.Now(), Body: body}
	pending, err := s.pendingRun(ctx, id, j.last)
	if err != nil {
		return err
	}
	if pending != "" && pending != m.ID {
		e.metrics.skipped.WithLabelValues(id).Inc()
		e.log.Warn("schedule skipped: the previous run is still pending", "flow", id, "previous", pending)
		return nil
	}
	existing, err := e.store.Accept(ctx, m, 0)
	if err != nil {
		return err
	}
	j.last = m.ID
	if existing != nil {
		// Stored already: by another replica, or by an earlier try whose
		// answer was lost. Its count is that one's.
		e.metrics.duplicates.WithLabelValues(id).Inc()
		return nil
	}
	e.metrics.received.WithLabelValues(id).Inc()
	e.metrics.accepted.WithLabelValues(id).Inc()
	lf.pool.wake()
	return nil
}

// pendingRun names a run of flow id that has not finished: the last one
// this job enqueued, or after a restart any scheduled run still queued.
// An error is the store's: whether a run is pending is not known.
func (s *scheduler) pendingRun(ctx context.Context, id, last string) (string, error) {
	if last != "" {
		prev, err := s.e.store.Get(ctx, last)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return "", nil
		case err != nil:
			return "", err
		case prev.Status.Pending():
			return prev.ID, nil
		}
		return "", nil
	}
	for _, st := range []store.Status{store.Running, store.Queued, store.Retrying} {
		msgs, err := s.e.store.List(ctx, store.Filter{Flow: id, Status: st, Limit: 1})
		if err != nil {
			return "", err
		}
		if len(msgs) > 0 {
			return msgs[0].ID, nil
		}
	}
	return "", nil
}
