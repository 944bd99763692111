package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors/postgres/pgtest"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// adminEcho is a sync flow answering {v: n}, so a request shows which
// revision is live.
func adminEcho(n int) string {
	return fmt.Sprintf("trigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: %d}'}}]\n", n)
}

// adminShip calls the WMS, then the ERP: a dead letter at the ERP has the
// WMS call in its memo.
const adminShip = `
trigger: {http: {path: /ship}}
dedup: {key: 'string(body.id)', ttl: 1h}
retry: {attempts: 1}
steps:
  - call: {connection: wms, path: /allocations, as: wms}
  - call: {connection: erp, path: /sales-orders}
`

func echoV(t *testing.T, e *runtime.Engine) any {
	t.Helper()
	_, out := post(t, "http://"+e.TriggerAddr()+"/echo", `{}`)
	return out["v"]
}

func isErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func TestAdminPutFlowStaleAndInvalid(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": adminEcho(1)})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	src, etag, err := e.FlowSource("echo")
	must(t, err)
	if string(src) != adminEcho(1) || len(etag) != 64 {
		t.Fatalf("source %q etag %q", src, etag)
	}
	info, err := e.PutFlow(ctx, "echo", []byte(adminEcho(2)), "alice", etag)
	must(t, err)
	if info.Revision != 2 || info.Status != runtime.StatusActive {
		t.Fatalf("after put: %+v", info)
	}
	if v := echoV(t, e); v != float64(2) { // live once PutFlow returned
		t.Fatalf("trigger answers v=%v, want 2", v)
	}
	revs, err := e.Revisions(ctx, "echo")
	must(t, err)
	if len(revs) != 2 || revs[1].Author != "alice" || revs[0].Author != "file" {
		t.Fatalf("revisions: %+v", revs)
	}

	// Stale: the edit was based on revision 1's content.
	_, err = e.PutFlow(ctx, "echo", []byte(adminEcho(3)), "bob", etag)
	isErr(t, err, runtime.ErrStale)

	// Invalid: diagnostics, nothing written, revision 2 keeps serving.
	_, etag2, _ := e.FlowSource("echo")
	_, err = e.PutFlow(ctx, "echo", []byte("trigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: bdy.v}'}}]\n"), "bob", etag2)
	var de *runtime.DiagnosticsError
	if !errors.As(err, &de) || !errors.Is(err, runtime.ErrInvalid) {
		t.Fatalf("invalid put: %v", err)
	}
	if d := de.Diagnostics[0]; d.File != "flows/echo.yaml" || d.Line != 2 || d.Col == 0 || !strings.Contains(d.Message, "bdy") {
		t.Errorf("diagnostic: %+v", d)
	}
	if _, etag3, _ := e.FlowSource("echo"); etag3 != etag2 {
		t.Error("an invalid update changed the file")
	}
	if info, _ := e.Flow("echo"); info.Revision != 2 || echoV(t, e) != float64(2) {
		t.Errorf("after an invalid update: %+v", info)
	}
	_, err = e.PutFlow(ctx, "nope", []byte(adminEcho(1)), "bob", "")
	isErr(t, err, runtime.ErrNotFound)

	audit, err := e.Audit(ctx, 10)
	must(t, err)
	if len(audit) != 1 || audit[0].Actor != "alice" || audit[0].Action != "flow.update" || audit[0].Target != "echo" {
		t.Errorf("audit: %+v", audit)
	}
}

func TestAdminCreateValidateDelete(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": adminEcho(1)})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	other := "trigger: {http: {path: /other, mode: sync}}\nsteps: [{respond: {body: '{v: 9}'}}]\n"
	if ds := e.ValidateSource("", []byte("flow: other\n"+other)); len(ds) != 0 {
		t.Errorf("valid source: %v", ds)
	}
	if ds := e.ValidateSource("other", []byte(adminEcho(1))); len(ds) != 1 || !strings.Contains(ds[0].Message, `claimed by flow "echo"`) {
		t.Errorf("route conflict: %v", ds)
	}
	_, err := e.CreateFlow(ctx, "../evil", []byte(other), "ed")
	isErr(t, err, runtime.ErrInvalid)
	_, err = e.CreateFlow(ctx, "echo", []byte(other), "ed")
	isErr(t, err, runtime.ErrConflict)

	info, err := e.CreateFlow(ctx, "other", []byte(other), "ed")
	must(t, err)
	if info.Revision != 1 || info.Trigger != "http POST /other (sync)" {
		t.Fatalf("created: %+v", info)
	}
	if s, out := post(t, "http://"+e.TriggerAddr()+"/other", `{}`); s != 200 || out["v"] != float64(9) {
		t.Fatalf("new flow: %d %v", s, out)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "flows"))
	if len(entries) != 2 {
		t.Errorf("flows/ holds %d entries, want 2 (no temporary files left)", len(entries))
	}

	must(t, e.DeleteFlow(ctx, "other", "ed", ""))
	if _, ok := e.Flow("other"); ok {
		t.Error("deleted flow still listed")
	}
	if s, _ := post(t, "http://"+e.TriggerAddr()+"/other", `{}`); s != 404 {
		t.Errorf("deleted flow answers %d", s)
	}
	isErr(t, e.DeleteFlow(ctx, "other", "ed", ""), runtime.ErrNotFound)
	// Its revisions stay, and a rollback brings it back as a new revision.
	info, err = e.Rollback(ctx, "other", 1, "ed")
	must(t, err)
	if info.Revision != 1 { // byte-identical to revision 1: no new number
		t.Errorf("restored: %+v", info)
	}
}

func TestAdminRollbackAndDiff(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": adminEcho(1)})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	_, err := e.PutFlow(ctx, "echo", []byte(adminEcho(2)), "alice", "")
	must(t, err)
	info, err := e.Rollback(ctx, "echo", 1, "bob")
	must(t, err)
	if info.Revision != 3 || echoV(t, e) != float64(1) {
		t.Fatalf("after rollback: %+v", info)
	}
	r3, err := e.Revision(ctx, "echo", 3)
	must(t, err)
	if r3.Source != adminEcho(1) || r3.Author != "bob" {
		t.Errorf("revision 3: %+v", r3)
	}
	diff, err := e.DiffRevisions(ctx, "echo", 1, 2)
	must(t, err)
	if !strings.Contains(diff, "-steps: [{respond: {body: '{v: 1}'}}]") || !strings.Contains(diff, "+steps: [{respond: {body: '{v: 2}'}}]") ||
		!strings.Contains(diff, "--- flows/echo.yaml (revision 1)") {
		t.Errorf("diff:\n%s", diff)
	}
	_, err = e.Rollback(ctx, "echo", 9, "bob")
	isErr(t, err, runtime.ErrNotFound)
	audit, _ := e.Audit(ctx, 1)
	if audit[0].Action != "flow.rollback" || audit[0].Detail != "rollback to 1: revision 3" {
		t.Errorf("audit: %+v", audit[0])
	}
}

func TestAdminDisablePausesAndPersists(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"echo": adminEcho(1),
		"sink": "trigger: {event: {topic: t}}\nsteps: [{call: {connection: erp, path: /x}}]\n",
	})
	data := filepath.Join(t.TempDir(), "data")
	e := start(t, dir, runtime.Options{DataDir: data})
	ctx := context.Background()
	for _, id := range []string{"echo", "sink"} {
		info, err := e.SetEnabled(ctx, id, false, "op")
		must(t, err)
		if info.Status != runtime.StatusDisabled {
			t.Fatalf("%s: %+v", id, info)
		}
	}
	if s, _ := post(t, "http://"+e.TriggerAddr()+"/echo", `{}`); s != 503 {
		t.Errorf("disabled trigger answers %d", s)
	}
	must(t, e.Publish(ctx, "t", map[string]any{"n": 1}, "k1"))
	time.Sleep(500 * time.Millisecond)
	if n := erp.calls.Load(); n != 0 {
		t.Fatalf("a disabled flow's worker delivered %d", n)
	}
	_, err := e.SetEnabled(ctx, "sink", true, "op")
	must(t, err)
	eventually(t, 5*time.Second, "the queued event delivered once enabled", func() bool { return erp.count() == 1 })
	_, err = e.SetEnabled(ctx, "nope", true, "op")
	isErr(t, err, runtime.ErrNotFound)

	t.Run("restart", func(t *testing.T) {
		must(t, e.Shutdown(ctx))
		e2 := start(t, dir, runtime.Options{DataDir: data})
		if info, _ := e2.Flow("echo"); info.Status != runtime.StatusDisabled {
			t.Errorf("after restart: %+v", info)
		}
		if info, _ := e2.Flow("sink"); info.Status != runtime.StatusActive {
			t.Errorf("after restart: %+v", info)
		}
	})
}

// deadShipment posts a shipment that the ERP rejects and waits for its
// dead letter.
func deadShipment(t *testing.T, e *runtime.Engine, id int) *store.Message {
	t.Helper()
	s, out := post(t, "http://"+e.TriggerAddr()+"/ship", fmt.Sprintf(`{"id": %d}`, id))
	if s != 202 {
		t.Fatalf("accept: %d %v", s, out)
	}
	var m *store.Message
	eventually(t, 5*time.Second, "the dead letter", func() bool {
		m, _ = e.Store().Get(context.Background(), out["id"].(string))
		return m != nil && m.Status == store.Dead
	})
	return m
}

func TestAdminReplayDeliversOnce(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	m := deadShipment(t, e, 1)
	if m.FailedStep != "2" || len(m.Memo) != 1 {
		t.Fatalf("dead letter: step %q memo %v", m.FailedStep, m.Memo)
	}
	_, err := e.Replay(ctx, m.ID, runtime.ReplayOptions{From: "middle"}, "op")
	isErr(t, err, runtime.ErrInvalid)

	erp.status = nil // the ERP is fixed
	r, err := e.Replay(ctx, m.ID, runtime.ReplayOptions{}, "op")
	must(t, err)
	if r.Status != store.Queued {
		t.Fatalf("replayed: %+v", r)
	}
	_, err = e.Replay(ctx, m.ID, runtime.ReplayOptions{}, "op")
	isErr(t, err, runtime.ErrConflict) // queued, running or completed: never twice
	eventually(t, 5*time.Second, "the replay completes", func() bool {
		m, _ = e.Message(ctx, m.ID)
		return m.Status == store.Completed
	})
	if erp.count() != 1 || wms.calls.Load() != 1 {
		t.Errorf("erp orders %d, wms calls %d; want 1 and 1 (the WMS call succeeded before)", erp.count(), wms.calls.Load())
	}
	_, err = e.Replay(ctx, m.ID, runtime.ReplayOptions{}, "op")
	isErr(t, err, runtime.ErrConflict)

	// Bulk: three dead letters, one discarded first.
	erp.status = func(map[string]any) int { return 422 }
	var ids []string
	for i := 2; i <= 4; i++ {
		ids = append(ids, deadShipment(t, e, i).ID)
	}
	d, err := e.Discard(ctx, ids[0], "duplicate order", "op")
	must(t, err)
	if d.Status != store.Discarded || d.Reason != "duplicate order" {
		t.Errorf("discarded: %+v", d)
	}
	_, err = e.Discard(ctx, ids[0], "again", "op")
	isErr(t, err, runtime.ErrConflict)
	erp.status = nil
	n, errs, err := e.ReplayMany(ctx, store.Filter{Flow: "ship"}, runtime.ReplayOptions{}, "op")
	must(t, err)
	if n != 2 || len(errs) != 0 {
		t.Fatalf("bulk replay: %d %v", n, errs)
	}
	eventually(t, 5*time.Second, "the bulk replay delivers", func() bool { return erp.count() == 3 })
	if n, _, _ := e.ReplayMany(ctx, store.Filter{Flow: "ship"}, runtime.ReplayOptions{}, "op"); n != 0 {
		t.Errorf("a second bulk replay replayed %d", n)
	}
	audit, _ := e.Audit(ctx, 100)
	replays := 0
	for _, a := range audit {
		if a.Action == "message.replay" {
			replays++
		}
	}
	if replays != 3 {
		t.Errorf("%d replays audited, want 3", replays)
	}
}

// A replayed message's retry budget starts afresh, though its history
// keeps the attempts of the first life: the step gets all its attempts
// again.
func TestAdminReplayStartsTheRetryBudgetAfresh(t *testing.T) {
	erp := newTarget(t)
	erp.status = func(map[string]any) int { return 503 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
steps:
  - call: {connection: erp, path: /sales-orders, retry: {attempts: 2, initial: 10ms, max: 10ms}}
`})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	_, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	id, _ := out["id"].(string)
	var m *store.Message
	dead := func() bool {
		m, _ = e.Message(ctx, id)
		return m != nil && m.Status == store.Dead
	}
	eventually(t, 5*time.Second, "the dead letter", dead)
	if n := erp.calls.Load(); n != 2 {
		t.Fatalf("%d ERP calls before the dead letter; want 2", n)
	}
	_, err := e.Replay(ctx, id, runtime.ReplayOptions{}, "op")
	must(t, err)
	eventually(t, 5*time.Second, "the replay's dead letter", func() bool { return dead() && erp.calls.Load() >= 4 })
	if n := erp.calls.Load(); n != 4 || len(m.Attempts) != 4 || m.Attempt != 2 {
		t.Errorf("%d ERP calls, %d attempts in the history, message attempt %d; want 4, 4 and 2", n, len(m.Attempts), m.Attempt)
	}
}

func TestAdminReplayOnANewRevision(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	m := deadShipment(t, e, 1)
	// The fix inserts a step before the WMS call: its step path moves from 1 to 2.
	fixed := strings.Replace(adminShip, "steps:\n", "steps:\n  - set: {vars.fixed: 'true'}\n", 1)
	_, err := e.PutFlow(ctx, "ship", []byte(fixed), "alice", "")
	must(t, err)
	erp.status = nil
	_, err = e.Replay(ctx, m.ID, runtime.ReplayOptions{From: runtime.FromFailedStep}, "op")
	isErr(t, err, runtime.ErrConflict) // the checkpoint indexes revision 1's steps
	r, err := e.Replay(ctx, m.ID, runtime.ReplayOptions{From: runtime.FromStart, Revision: runtime.RevCurrent}, "op")
	must(t, err)
	// Under step 2's key of the second generation: the ERP refused the
	// call at step 2 of revision 1, so step 2's key was renewed.
	if r.Revision != 2 || len(r.Memo) != 1 || r.Memo["ship:"+m.ID+":2#2"] == nil {
		t.Fatalf("replayed on revision %d with memo %v", r.Revision, r.Memo)
	}
	eventually(t, 5*time.Second, "the replay completes", func() bool { return erp.count() == 1 })
	if n := wms.calls.Load(); n != 1 {
		t.Errorf("the WMS was called %d times; its call succeeded before the replay", n)
	}
}

func TestAdminMessagesByBusinessKey(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	for _, id := range []int{1041, 1042} {
		post(t, "http://"+e.TriggerAddr()+"/ship", fmt.Sprintf(`{"id": %d}`, id))
	}
	for _, f := range []store.Filter{{Key: "1042"}, {Key: "ship:1042"}, {Flow: "ship", Key: "1042"}} {
		ms, err := e.Messages(ctx, f)
		must(t, err)
		if len(ms) != 1 || ms[0].DedupKey != "ship:1042" {
			t.Errorf("%+v: %d messages", f, len(ms))
		}
	}
	if ms, _ := e.Messages(ctx, store.Filter{Flow: "ship"}); len(ms) != 2 {
		t.Errorf("by flow: %d messages", len(ms))
	}
	if _, err := e.Message(ctx, "nope"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("unknown message: %v", err)
	}
}

func TestAdminTestFlow(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	rep, ds, err := e.TestFlow(ctx, "ship", nil, flowtest.Input{Body: map[string]any{"id": 1}}, nil)
	if err != nil || len(ds) > 0 || rep.Outcome != flows.Completed || len(rep.Calls) != 2 {
		t.Fatalf("saved flow: %v %v %+v", err, ds, rep)
	}
	if erp.calls.Load()+wms.calls.Load() != 0 {
		t.Error("a dry run reached a target")
	}
	src := []byte("trigger: {http: {path: /t}}\nsteps: [{map: {x: body.id + 1}}]\n")
	rep, _, err = e.TestFlow(ctx, "draft", src, flowtest.Input{Body: map[string]any{"id": 1}}, nil)
	if err != nil || rep.Body.(map[string]any)["x"] != 2 {
		t.Fatalf("unsaved source: %v %+v", err, rep)
	}
	_, ds, _ = e.TestFlow(ctx, "draft", []byte("steps: [{map: {x: bdy}}]\n"), flowtest.Input{}, nil)
	if len(ds) == 0 {
		t.Error("a broken source ran")
	}
	_, _, err = e.TestFlow(ctx, "nope", nil, flowtest.Input{}, nil)
	isErr(t, err, runtime.ErrNotFound)
	if s := e.Stats(ctx, "ship"); s.Received != 0 || s.Queued != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// elsewhere is a store shared with another replica that, once armed,
// replays the next dead letter this replica reads right after the read.
type elsewhere struct {
	store.Store
	armed    atomic.Bool
	replayed atomic.Int64
}

func (s *elsewhere) Get(ctx context.Context, id string) (*store.Message, error) {
	m, err := s.Store.Get(ctx, id)
	if err == nil && m.Status == store.Dead && s.armed.CompareAndSwap(true, false) {
		other := *m
		other.Status, other.DueAt = store.Queued, time.Now()
		if s.Store.Save(ctx, &other) == nil {
			s.replayed.Add(1)
		}
	}
	return m, err
}

// A dead letter another replica replays (or discards) between this
// replica's read and its write is not queued a second time: the replay
// here is a conflict.
func TestAdminReplayRacingAnotherReplica(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	bolt, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	s := &elsewhere{Store: bolt}
	e := start(t, dir, runtime.Options{Store: s})
	ctx := context.Background()
	m := deadShipment(t, e, 1)
	erp.status = nil
	s.armed.Store(true)
	_, err = e.Replay(ctx, m.ID, runtime.ReplayOptions{}, "op")
	isErr(t, err, runtime.ErrConflict)
	if s.replayed.Load() != 1 {
		t.Fatalf("the other replica replayed %d times", s.replayed.Load())
	}
	eventually(t, 5*time.Second, "the other replica's replay completes", func() bool {
		m, _ = e.Message(ctx, m.ID)
		return m.Status == store.Completed
	})
	time.Sleep(200 * time.Millisecond)
	if erp.count() != 1 {
		t.Errorf("erp orders %d; want 1", erp.count())
	}
}

// TestAdminBulkReplayPages replays more dead letters than one page holds,
// up to a limit: each once, and the rest at the next bulk replay.
func TestAdminBulkReplayPages(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{"ship": adminShip})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	const dead = 205
	for i := range dead {
		if s, out := post(t, "http://"+e.TriggerAddr()+"/ship", fmt.Sprintf(`{"id": %d}`, i)); s != 202 {
			t.Fatalf("accept: %d %v", s, out)
		}
	}
	eventually(t, 20*time.Second, "every order dead", func() bool {
		ms, err := e.Messages(ctx, store.Filter{Flow: "ship", Status: store.Dead, Limit: 1000})
		return err == nil && len(ms) == dead
	})
	erp.mu.Lock()
	erp.status = nil
	erp.mu.Unlock()
	n, errs, err := e.ReplayMany(ctx, store.Filter{Flow: "ship", Limit: 203}, runtime.ReplayOptions{}, "op")
	must(t, err)
	if n != 203 || len(errs) != 0 {
		t.Fatalf("bulk replay of 203: %d %v", n, errs)
	}
	if n, errs, err := e.ReplayMany(ctx, store.Filter{Flow: "ship"}, runtime.ReplayOptions{}, "op"); err != nil || n != dead-203 || len(errs) != 0 {
		t.Fatalf("bulk replay of the rest: %d %v %v, want %d", n, errs, err, dead-203)
	}
	eventually(t, 20*time.Second, "every order delivered", func() bool { return erp.count() == dead })
	if n, _, _ := e.ReplayMany(ctx, store.Filter{Flow: "ship"}, runtime.ReplayOptions{}, "op"); n != 0 {
		t.Errorf("a third bulk replay replayed %d", n)
	}
}

// A replay from the start on a new revision keeps the memo of an
// aggregate step that is still there: its item is in a batch already.
// The memo kept calls and publications only, so the replay added the
// item again, and once the first batch had gone out the item went out a
// second time in the next one.
func TestAdminReplayOnANewRevisionAddsNoItemTwice(t *testing.T) {
	erp, wms := newTarget(t), newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	const collect = `
trigger: {http: {path: /collect}}
retry: {attempts: 1}
steps:
  - aggregate: {topic: lines, size: 1}
  - call: {connection: erp, path: /lines}
`
	dir := workspace(t, map[string]*target{"erp": erp, "wms": wms}, map[string]string{
		"collect": collect,
		"batches": "trigger: {event: {topic: lines}}\nsteps: [{call: {connection: wms, path: /batches}}]\n",
	})
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	_, out := post(t, "http://"+e.TriggerAddr()+"/collect", `{"sku": "A"}`)
	id, _ := out["id"].(string)
	eventually(t, 5*time.Second, "the dead letter and the batch", func() bool {
		m, _ := e.Store().Get(ctx, id)
		return m != nil && m.Status == store.Dead && wms.count() == 1
	})
	_, err := e.PutFlow(ctx, "collect", []byte(strings.Replace(collect, "/lines", "/v2/lines", 1)), "alice", "")
	must(t, err)
	erp.status = nil
	r, err := e.Replay(ctx, id, runtime.ReplayOptions{}, "op")
	must(t, err)
	if r.Revision != 2 || r.Memo["collect:"+id+":1"] == nil {
		t.Errorf("replayed on revision %d with memo %v; want the aggregate step's entry kept", r.Revision, r.Memo)
	}
	eventually(t, 5*time.Second, "the replay completes", func() bool { return erp.count() == 1 })
	time.Sleep(300 * time.Millisecond) // a second batch would be published by now
	if n := wms.calls.Load(); n != 1 {
		t.Errorf("%d batches published for one item; want 1", n)
	}
}

// A replay from the start on a new revision runs a statement the new
// revision changed: the memo of an sql call is kept only for the same
// statement. Every sql call of a connection counted as the same effect
// ("call pg POST "), so the memo of the old statement answered for the
// new one and the new statement never ran.
func TestAdminReplayOnANewRevisionRunsAChangedStatement(t *testing.T) {
	_, url, conn := pgtest.Schema(t)
	_, err := conn.Exec(context.Background(), `CREATE TABLE audit (note text NOT NULL)`)
	must(t, err)
	erp := newTarget(t)
	erp.status = func(map[string]any) int { return 422 }
	const record = `
trigger: {http: {path: /record}}
retry: {attempts: 1}
steps:
  - call: {connection: db, sql: "INSERT INTO audit (note) VALUES ('v1')"}
  - call: {connection: erp, path: /orders}
`
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"record": record})
	addConnections(t, dir, fmt.Sprintf("db: {postgres: {url: %q}}", url))
	e := start(t, dir, runtime.Options{})
	ctx := context.Background()
	_, out := post(t, "http://"+e.TriggerAddr()+"/record", `{"id": 1}`)
	id, _ := out["id"].(string)
	eventually(t, 5*time.Second, "the dead letter", func() bool {
		m, _ := e.Store().Get(ctx, id)
		return m != nil && m.Status == store.Dead
	})
	_, err = e.PutFlow(ctx, "record", []byte(strings.Replace(record, "VALUES ('v1')", "VALUES ('v2')", 1)), "alice", "")
	must(t, err)
	erp.status = nil
	_, err = e.Replay(ctx, id, runtime.ReplayOptions{}, "op")
	must(t, err)
	eventually(t, 5*time.Second, "the replay completes", func() bool { return erp.count() == 1 })
	var notes []string
	rows, err := conn.Query(ctx, `SELECT note FROM audit ORDER BY note`)
	must(t, err)
	for rows.Next() {
		var n string
		must(t, rows.Scan(&n))
		notes = append(notes, n)
	}
	must(t, rows.Err())
	if strings.Join(notes, ",") != "v1,v2" {
		t.Errorf("audit notes %q; want v1 from the first run and v2 from the replay", notes)
	}
}
