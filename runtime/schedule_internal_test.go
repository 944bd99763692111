package runtime

import (
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/dsl"
)

// A daily job at 02:30 in a zone with summer time fires once on each of
// the two nights the clocks change: on the spring night, when 02:30 never
// happens, as the clocks pass it; on the autumn night, when 02:30 happens
// twice, once. It fired twice in autumn and not at all in spring.
func TestScheduleAcrossDaylightSaving(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := dsl.ParseCron("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// firings lists the instants the job fires at from start for a span,
	// as run does: the next from just after each firing.
	firings := func(start time.Time, span time.Duration) []time.Time {
		var out []time.Time
		var last time.Time
		now := start
		for {
			at, wall := nextRun(sched, loc, now, last)
			if at.After(start.Add(span)) {
				return out
			}
			out = append(out, at)
			now, last = at.Add(time.Millisecond), wall
		}
	}
	spring := firings(time.Date(2025, 3, 29, 12, 0, 0, 0, loc), 48*time.Hour)
	if len(spring) != 2 || !spring[0].Equal(time.Date(2025, 3, 30, 1, 30, 0, 0, time.UTC)) {
		t.Errorf("spring: %v; want 2025-03-30 03:30 CEST (01:30 UTC), then the next day", spring)
	}
	autumn := firings(time.Date(2025, 10, 25, 12, 0, 0, 0, loc), 48*time.Hour)
	if len(autumn) != 2 || autumn[0].Day() != 26 || autumn[1].Day() != 27 {
		t.Errorf("autumn: %v; want one firing on the 26th and one on the 27th", autumn)
	}
	// The run loop may wake up during the repeated hour after firing.
	at, wall := nextRun(sched, loc, time.Date(2025, 10, 26, 0, 0, 0, 0, time.UTC), time.Time{}) // 02:00 CEST
	if next, _ := nextRun(sched, loc, at.Add(-30*time.Minute), wall); !next.After(at.Add(12 * time.Hour)) {
		t.Errorf("asked again in the repeated hour after firing at %v: %v; want the next day", at, next)
	}
	if normal := firings(time.Date(2025, 6, 1, 0, 0, 0, 0, loc), 72*time.Hour); len(normal) != 3 || normal[0].Hour() != 2 || normal[0].Minute() != 30 {
		t.Errorf("a normal span: %v", normal)
	}
	// Every 30 minutes goes on every 30 minutes through the autumn night,
	// neither pausing for the repeated hour nor doubling.
	if sched, err = dsl.ParseCron("*/30 * * * *"); err != nil {
		t.Fatal(err)
	}
	night := firings(time.Date(2025, 10, 25, 23, 50, 0, 0, time.UTC), 4*time.Hour) // across 01:00 UTC
	if len(night) != 8 {
		t.Errorf("*/30 over 4 hours: %d firings, want 8: %v", len(night), night)
	}
	for i := 1; i < len(night); i++ {
		if d := night[i].Sub(night[i-1]); d != 30*time.Minute {
			t.Errorf("*/30: %v between %v and %v", d, night[i-1], night[i])
		}
	}
}

// West of UTC too, a time the clocks skip fires as they pass it: New
// York goes from 02:00 EST to 03:00 EDT on 2025-03-09, and time.Date
// puts the missing 02:00 at 01:00 EST there, an hour before the gap.
func TestScheduleSkippedTimeWestOfUTC(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := dsl.ParseCron("0 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	at, _ := nextRun(sched, loc, time.Date(2025, 3, 8, 12, 0, 0, 0, loc), time.Time{})
	if want := time.Date(2025, 3, 9, 7, 0, 0, 0, time.UTC); !at.Equal(want) {
		t.Errorf("02:00 on the spring night fires at %v; want %v (03:00 EDT)", at.UTC(), want)
	}
}

// @every fires at the multiples of its interval, whenever the process
// started: replicas and restarts agree on the times (and so on the runs'
// ids). A spec no date matches gives no time.
func TestScheduleEveryAndNever(t *testing.T) {
	sched, err := dsl.ParseCron("@every 2s")
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{time.Date(2025, 1, 1, 0, 0, 0, 300e6, time.UTC), time.Date(2025, 1, 1, 0, 0, 1, 900e6, time.UTC)} {
		if at, _ := nextRun(sched, time.UTC, now, time.Time{}); !at.Equal(time.Date(2025, 1, 1, 0, 0, 2, 0, time.UTC)) {
			t.Errorf("@every 2s after %v: %v; want 00:00:02", now, at)
		}
	}
	sched, err = dsl.ParseCron("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if at, _ := nextRun(sched, time.UTC, time.Now(), time.Time{}); !at.IsZero() {
		t.Errorf("February 30th: %v; want none", at)
	}
	loc, _ := time.LoadLocation("Europe/Amsterdam")
	if sched, err = dsl.ParseCron("0 2 30 2 *"); err != nil {
		t.Fatal(err)
	}
	if at, _ := nextRun(sched, loc, time.Now(), time.Time{}); !at.IsZero() {
		t.Errorf("February 30th at 02:00 in Amsterdam: %v; want none", at)
	}
}
