package runtime

// This file is the engine's administrative surface, used by the editor API
// (and the CLI through it): reading, validating, testing, writing and
// rolling back flow files; enabling and disabling flows; listing messages;
// replaying and discarding dead letters; the audit log. Every method is
// safe for concurrent use and every change is audited.
//
// Lock order: flowWrites -> e.reloadM -> e.mu; messageOps is taken alone.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// The kinds of error the administrative methods return; match them with
// errors.Is. The error's text is a sentence for the user.
var (
	ErrNotFound = store.ErrNotFound                 // no such flow, revision or message
	ErrConflict = errors.New("conflict")            // the state does not allow it (exists, not dead, ...)
	ErrStale    = errors.New("precondition failed") // If-Match does not match the file
	ErrInvalid  = errors.New("invalid request")     // a malformed argument
	// ErrNotLive: a flow write landed (the file is written, its revision
	// recorded) but the revision did not go live within the wait; for a
	// delete, the file is removed but the flow had not stopped yet.
	ErrNotLive = errors.New("written, not live yet")
)

type adminError struct {
	kind error
	msg  string
}

func (e *adminError) Error() string { return e.msg }
func (e *adminError) Unwrap() error { return e.kind }

func adminErr(kind error, format string, args ...any) error {
	return &adminError{kind, fmt.Sprintf(format, args...)}
}

// DiagnosticsError is returned when a flow source does not load: nothing
// was written and the live revision is untouched. It matches ErrInvalid.
type DiagnosticsError struct {
	Diagnostics dsl.Diagnostics
}

// Error lists every diagnostic.
func (e *DiagnosticsError) Error() string {
	return fmt.Sprintf("the flow has %d error(s):\n%s", len(e.Diagnostics), e.Diagnostics.Error())
}

// Unwrap makes a DiagnosticsError match ErrInvalid.
func (e *DiagnosticsError) Unwrap() error { return ErrInvalid }

var (
	// flowWrites serializes writes of flow files, so that an If-Match check
	// and the write it guards are one step, and a writer waits for its own
	// revision to go live before the next writer starts.
	flowWrites sync.Mutex
	// messageOps serializes state changes of dead letters (replay, discard),
	// so that two replays of one message cannot both see it dead. (A store
	// shared by several processes needs a compare-and-set instead.)
	messageOps sync.Mutex
)

var flowIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_\-]*$`)

// maxFlowIDLen keeps flows/<id>.yaml, and the temporary file a write
// renames over it (.<id>.yaml.<random>.tmp), within the 255 bytes a file
// name may have: a longer id failed in the file system, as a 500.
const maxFlowIDLen = 200

func checkID(id string) error {
	if !flowIDRE.MatchString(id) {
		return adminErr(ErrInvalid, "flow id %q may only hold letters, digits, - and _", id)
	}
	if len(id) > maxFlowIDLen {
		return adminErr(ErrInvalid, "flow id %.20q... has %d characters; a flow id has at most %d (it names the file)", id, len(id), maxFlowIDLen)
	}
	return nil
}

// liveTimeout bounds how long a write waits for its revision to go live
// when the caller's context has no deadline.
const liveTimeout = 15 * time.Second

// Config returns the workspace configuration in force (conveyor.yaml).
// It holds secrets as ${env:...} references: never serve it as is.
func (e *Engine) Config() *dsl.Config {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.ws.Config
}

// WorkspaceDir is the workspace directory the engine runs.
func (e *Engine) WorkspaceDir() string { return e.opts.Workspace }

// Functions is the expression function catalogue of the workspace,
// including lookup(), for editor completion.
func (e *Engine) Functions() []mappings.Function {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return mappings.Catalogue(e.ws.Lookups)
}

// FlowStats are a flow's counters since the engine started, and its queue.
type FlowStats struct {
	Queued       int        `json:"queued"`
	OldestQueued *time.Time `json:"oldest_queued,omitempty"`
	Received     int64      `json:"received"`
	Accepted     int64      `json:"accepted"`
	Duplicates   int64      `json:"duplicates"`
	Completed    int64      `json:"completed"`
	Filtered     int64      `json:"filtered"`
	Retried      int64      `json:"retried"`
	DeadLettered int64      `json:"dead_lettered"`
}

// Stats returns the counters and queue depth of flow id.
func (e *Engine) Stats(ctx context.Context, id string) FlowStats {
	m := e.metrics
	st := FlowStats{Received: counterValue(m.received, id), Accepted: counterValue(m.accepted, id), Duplicates: counterValue(m.duplicates, id),
		Completed: counterValue(m.completed, id), Filtered: counterValue(m.filtered, id), Retried: counterValue(m.retried, id),
		DeadLettered: counterValue(m.deadLettered, id)}
	if n, oldest, err := e.store.Depth(ctx, id); err == nil {
		st.Queued = n
		if !oldest.IsZero() {
			st.OldestQueued = &oldest
		}
	}
	return st
}

func counterValue(v *prometheus.CounterVec, id string) int64 {
	var m dto.Metric
	if c, err := v.GetMetricWithLabelValues(id); err == nil && c.Write(&m) == nil {
		return int64(m.GetCounter().GetValue())
	}
	return 0
}

// flowFile returns the file of a flow the registry knows.
func (e *Engine) flowFile(id string) (string, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if lf := e.flows[id]; lf != nil {
		return lf.file, true
	}
	return "", false
}

// FlowSource returns the current content of a flow's file and its ETag,
// the hex SHA-256 of the content (the same hash as its revisions). The
// file is the source of truth: it may hold an edit that did not go live.
func (e *Engine) FlowSource(id string) ([]byte, string, error) {
	file, ok := e.flowFile(id)
	if !ok {
		return nil, "", adminErr(ErrNotFound, "flow %s does not exist", id)
	}
	src, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", adminErr(ErrNotFound, "flow %s does not exist", id)
	} else if err != nil {
		return nil, "", fmt.Errorf("flow %s: %w", id, err)
	}
	return src, hashOf(src), nil
}

// ValidateSource parses and compiles src as flow id against the live
// workspace (its connections, mappings and lookups) without saving it,
// and checks that its trigger claims no route another live flow serves
// and, as the API writes flows, reads no files outside the workspace and
// sends no secret of the server to a host the file names.
// Diagnostics name the file flows/<id>.yaml, as the analyst sees it. An
// empty id takes the flow: key of src, or "untitled".
func (e *Engine) ValidateSource(id string, src []byte) dsl.Diagnostics {
	if id == "" {
		id = "untitled"
		if df, _ := dsl.ParseFlow("flows/untitled.yaml", src); df != nil && flowIDRE.MatchString(df.Flow) {
			id = df.Flow
		}
	}
	f, ds := e.compileSource(id, src)
	if len(ds) > 0 {
		return ds
	}
	if ds := e.outsideWorkspace(f); len(ds) > 0 {
		return ds
	}
	if ds := secretsElsewhere(f); len(ds) > 0 {
		return ds
	}
	return e.routeConflicts(f)
}

// wholeEnvRefRE is a configuration value that is one environment
// reference and nothing else: ${env:NAME} or ${env:NAME:-default}.
var wholeEnvRefRE = regexp.MustCompile(`^\$\{env:[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$`)

// secretsElsewhere reports a stream trigger URL of f that mixes
// environment references into text the flow writes: a flow written
// through the API may not choose where a server secret is sent. The
// runtime connects to that URL, so an editor token could otherwise write
// redis://:${env:ANY}@a-host-of-theirs and receive any variable of the
// server's environment (the API's admin token among them) in the AUTH
// command. A URL wholly from the environment goes where the operator
// pointed it; a literal one carries no secret of the server.
func secretsElsewhere(f *flows.Flow) dsl.Diagnostics {
	t := f.Source.Trigger
	var ds dsl.Diagnostics
	for _, st := range []struct {
		kind string
		t    *dsl.StreamTrigger
	}{{"redis_stream", t.RedisStream}, {"nats", t.NATS}} {
		if st.t == nil || !strings.Contains(st.t.URL.Raw, "${") || wholeEnvRefRE.MatchString(st.t.URL.Raw) {
			continue
		}
		at := st.t.URL.At
		if at.Line == 0 {
			at = st.t.At
		}
		ds = append(ds, dsl.Diagnostic{File: f.File, Line: at.Line, Col: at.Col,
			Message: fmt.Sprintf("trigger.%s.url: a flow written through the API takes its URL from the environment whole or not at all; with ${env:...} inside, the server would send that variable to the host this file names", st.kind),
			Hint:    "put the whole URL in one variable (url: ${env:" + strings.ToUpper(st.kind) + "_URL}), or have an operator write this flow on disk"})
	}
	return ds
}

// outsideWorkspace reports the directories of f's file trigger that lie
// outside the workspace, or that are the workspace itself or hold the
// runtime's own files (the data directory with the embedded store, flows/,
// mappings/, lookups/). A flow written through the API may not take,
// move or expose such files: an editor token would otherwise read any
// file the server can (a viewer then sees its content in the message),
// move it away, or move the store's file aside and lose every queued
// message at the next start. A flow that needs an inbox elsewhere is
// written on disk, by whoever may reach that directory anyway; a
// directory inside the workspace may still be a link an operator made to
// a mount.
func (e *Engine) outsideWorkspace(f *flows.Flow) dsl.Diagnostics {
	t := f.Source.Trigger.File
	if t == nil {
		return nil
	}
	root := e.workspacePath(".")
	own := []string{filepath.Clean(e.workspacePath(e.dataDir))}
	for _, sub := range sourceDirs {
		own = append(own, filepath.Join(root, sub))
	}
	inside := func(dir, parent string) bool {
		rel, err := filepath.Rel(parent, dir)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	var ds dsl.Diagnostics
	for _, d := range []struct{ field, dir string }{
		{"dir", t.Dir},
		{"done_dir", cmp.Or(t.DoneDir, filepath.Join(t.Dir, "done"))},
		{"error_dir", cmp.Or(t.ErrorDir, filepath.Join(t.Dir, "error"))},
	} {
		abs := e.workspacePath(d.dir)
		why := ""
		switch {
		case !inside(abs, root):
			why = "is outside the workspace"
		case abs == root:
			why = "is the workspace itself"
		default:
			for _, o := range own {
				if inside(abs, o) || inside(o, abs) {
					why = "holds the runtime's own files (" + filepath.Base(o) + ")"
					break
				}
			}
		}
		if why == "" {
			continue
		}
		ds = append(ds, dsl.Diagnostic{File: f.File, Line: t.At.Line, Col: t.At.Col,
			Message: fmt.Sprintf("trigger.file.%s: %q %s; a flow written through the API reads and moves files in an inbox of its own inside the workspace only", d.field, d.dir, why),
			Hint:    "use a directory of its own under the workspace (it may be a link to a mount), or have an operator write this flow on disk"})
	}
	return ds
}

func (e *Engine) compileSource(id string, src []byte) (*flows.Flow, dsl.Diagnostics) {
	df, ds := dsl.ParseFlow("flows/"+id+".yaml", src)
	if len(ds) > 0 {
		return nil, ds
	}
	e.mu.RLock()
	ws := e.ws
	e.mu.RUnlock()
	f, ds := flows.Compile(df, ws.FlowEnv(e.opts.Getenv))
	if len(ds) > 0 || f == nil {
		return nil, ds
	}
	return f, nil
}

// routeConflicts reports f's trigger when another live flow claims the
// same HTTP route, one that overlaps it, or the same watched directory:
// such a file would not go live.
func (e *Engine) routeConflicts(f *flows.Flow) dsl.Diagnostics {
	if routeKey(f) == "" {
		return nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	claims := newRouteClaims()
	for _, id := range slices.Sorted(maps.Keys(e.flows)) {
		if other := e.flows[id].cur.Load(); id != f.ID && other != nil {
			claims.claim(id, other) // live flows do not clash with each other
		}
	}
	if d, ok := claims.claim(f.ID, f); !ok {
		return dsl.Diagnostics{d}
	}
	return nil
}

// routeKey is what a flow's trigger claims alone: an HTTP route, or the
// directory a file trigger takes files from; "" for neither.
func routeKey(f *flows.Flow) string {
	switch t := f.Trigger; {
	case t.HTTP != nil:
		m := t.HTTP.Method
		if m == "" {
			m = "POST"
		}
		return m + " " + routePattern(t.HTTP.Path)
	case t.File != nil:
		return "dir " + filepath.Clean(t.File.Dir)
	}
	return ""
}

// PutFlow replaces the file of flow id with src and returns once the new
// revision is live. ifMatch is the ETag the edit was based on ("" or "*":
// no precondition); a different current ETag is ErrStale. An invalid src
// is a *DiagnosticsError and writes nothing. The file is written
// atomically (a temporary file in flows/ renamed over it); the revision
// records author, and the change is audited.
func (e *Engine) PutFlow(ctx context.Context, id string, src []byte, author, ifMatch string) (FlowInfo, error) {
	return e.writeFlow(ctx, id, src, author, ifMatch, writeUpdate, "flow.update", "")
}

// CreateFlow writes a new flow file flows/<id>.yaml and returns once the
// flow is live; ErrConflict when the flow exists.
func (e *Engine) CreateFlow(ctx context.Context, id string, src []byte, author string) (FlowInfo, error) {
	return e.writeFlow(ctx, id, src, author, "", writeCreate, "flow.create", "")
}

type writeMode int

const (
	writeUpdate writeMode = iota // the flow must exist
	writeCreate                  // the flow must not exist
	writeUpsert                  // either (rollback of a deleted flow)
)

func (e *Engine) writeFlow(ctx context.Context, id string, src []byte, author, ifMatch string, mode writeMode, action, note string) (FlowInfo, error) {
	if err := checkID(id); err != nil {
		return FlowInfo{}, err
	}
	flowWrites.Lock()
	defer flowWrites.Unlock()
	file, exists := e.flowFile(id)
	switch {
	case exists && mode == writeCreate:
		return FlowInfo{}, adminErr(ErrConflict, "flow %s already exists", id)
	case !exists && mode == writeUpdate:
		return FlowInfo{}, adminErr(ErrNotFound, "flow %s does not exist", id)
	case !exists:
		file = filepath.Join(e.opts.Workspace, "flows", id+".yaml")
		for _, ext := range []string{".yaml", ".yml"} {
			if _, err := os.Stat(filepath.Join(e.opts.Workspace, "flows", id+ext)); err == nil {
				return FlowInfo{}, adminErr(ErrConflict, "flows/%s%s already exists (not loaded yet); edit it instead", id, ext)
			}
		}
	case ifMatch != "" && ifMatch != "*":
		cur, err := os.ReadFile(file)
		if err != nil {
			return FlowInfo{}, fmt.Errorf("flow %s: %w", id, err)
		}
		if hashOf(cur) != ifMatch {
			return FlowInfo{}, adminErr(ErrStale, "flow %s changed since it was read (its ETag is now %q); read it again and reapply the edit", id, hashOf(cur))
		}
	}
	if ds := e.ValidateSource(id, src); len(ds) > 0 {
		return FlowInfo{}, &DiagnosticsError{ds}
	}
	hash := hashOf(src)
	// Store the revision with its author before any reload sees the file:
	// the reload then finds the same hash and keeps this number and author.
	e.reloadM.Lock()
	err := writeAtomic(file, src)
	rev := 0
	if err == nil {
		rev = e.nextRevision(id, hash, string(src), author)
	}
	e.reloadM.Unlock()
	if err != nil {
		return FlowInfo{}, fmt.Errorf("flow %s: writing %s: %w", id, filepath.Base(file), err)
	}
	e.Reload()
	info, err := e.waitLive(ctx, id, file, hash)
	detail := fmt.Sprintf("revision %d", rev)
	if note != "" {
		detail = note + ": " + detail
	}
	if err != nil {
		detail += " (written, not live: " + err.Error() + ")"
	}
	e.audit(ctx, author, action, id, detail)
	return info, err
}

// writeAtomic replaces file with data: readers and the watcher see the old
// or the new content, never a half-written file.
func writeAtomic(file string, data []byte) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// waitLive polls until the flow's live content hash is hash. It fails
// early when a reload has read the file but kept the old revision.
func (e *Engine) waitLive(ctx context.Context, id, file, hash string) (FlowInfo, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	for {
		e.reloadM.Lock() // no reload in progress while we look
		seen := e.hashes[file] == hash
		e.mu.RLock()
		lf := e.flows[id]
		var info FlowInfo
		live := false
		if lf != nil {
			info, live = lf.info(), lf.hash == hash
		}
		e.mu.RUnlock()
		e.reloadM.Unlock()
		switch {
		case live:
			return info, nil
		case seen && lf != nil && len(info.Diagnostics) > 0:
			return info, &DiagnosticsError{info.Diagnostics}
		}
		select {
		case <-ctx.Done():
			return info, adminErr(ErrNotLive, "flow %s: the new revision is written but was not live in time (%v); its status shows when it is", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, liveTimeout)
}

// DeleteFlow removes the file of flow id and returns once the flow has
// stopped (ErrNotLive when it had not within ctx: the file is removed
// and the deletion audited all the same). Its queued messages, dead
// letters and revisions are kept (a flow created again with the id
// resumes them). ifMatch as for PutFlow.
func (e *Engine) DeleteFlow(ctx context.Context, id, author, ifMatch string) error {
	flowWrites.Lock()
	defer flowWrites.Unlock()
	file, ok := e.flowFile(id)
	if !ok {
		return adminErr(ErrNotFound, "flow %s does not exist", id)
	}
	if ifMatch != "" && ifMatch != "*" {
		if cur, err := os.ReadFile(file); err == nil && hashOf(cur) != ifMatch {
			return adminErr(ErrStale, "flow %s changed since it was read (its ETag is now %q)", id, hashOf(cur))
		}
	}
	e.reloadM.Lock()
	err := os.Remove(file)
	e.reloadM.Unlock()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("flow %s: %w", id, err)
	}
	e.Reload()
	ctx2, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var stopErr error
	for stopErr == nil {
		// Gone, or served from another file named after it (x.yml beside
		// x.yaml), which takes the flow over as at a restart.
		if cur, ok := e.flowFile(id); !ok || cur != file {
			break
		}
		select {
		case <-ctx2.Done():
			stopErr = adminErr(ErrNotLive, "flow %s: the file is removed but the flow was still running (%v); it stops by itself", id, ctx2.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The file is gone whether or not the flow stopped in time: the flag
	// is cleared and the deletion audited either way, with a context of
	// their own (the caller's may be the one that just ran out).
	bg := context.WithoutCancel(ctx)
	if err := e.store.PutMeta(bg, disabledKey(id), nil); err != nil {
		e.log.Error("cannot clear the disabled flag of a deleted flow", "flow", id, "error", err)
	}
	detail := ""
	if stopErr != nil {
		detail = "removed, not stopped yet"
	}
	e.audit(bg, author, "flow.delete", id, detail)
	return stopErr
}

func disabledKey(id string) string { return "flow.disabled/" + id }

// SetEnabled turns flow id on or off, persistently (the store keeps the
// flag across restarts) and on every replica sharing the store (within
// disabledPoll, see pollDisabled). A disabled flow's trigger answers 503,
// its schedule does not fire and its workers pause; its queue is kept and
// events still queue for it. Enabling wakes its workers.
func (e *Engine) SetEnabled(ctx context.Context, id string, enabled bool, author string) (FlowInfo, error) {
	e.mu.RLock()
	lf := e.flows[id]
	e.mu.RUnlock()
	if lf == nil {
		return FlowInfo{}, adminErr(ErrNotFound, "flow %s does not exist", id)
	}
	// An enable is written, not the flag removed: the replicas that
	// read the flags (pollDisabled) take a removed one, left by
	// DeleteFlow, for no change.
	val := []byte("false")
	if !enabled {
		val = []byte("true")
	}
	e.enableM.Lock()
	if err := e.store.PutMeta(ctx, disabledKey(id), val); err != nil {
		e.enableM.Unlock()
		return FlowInfo{}, fmt.Errorf("flow %s: %w", id, err)
	}
	lf.disabled.Store(!enabled)
	e.enableM.Unlock()
	action := "flow.disable"
	if enabled {
		action = "flow.enable"
		lf.pool.wake()
	}
	e.audit(ctx, author, action, id, "")
	e.mu.RLock()
	defer e.mu.RUnlock()
	return lf.info(), nil
}

// sharedStore is a store that several processes share (Redis): what an
// operator sets through one replica, the others read from it.
type sharedStore interface{ Consumer() string }

// disabledPoll is how often a replica sharing its store reads which
// flows are disabled, so that a flow disabled or enabled through another
// replica is so here too.
const disabledPoll = time.Second

// pollDisabled keeps the flows' disabled flags as the shared store holds
// them; it runs until the engine's context ends. A flag that cannot be
// read stays as it was, and so does one that is not stored: DeleteFlow
// clears it for a flow created again, while the replicas that still have
// the flow keep an operator's disable.
func (e *Engine) pollDisabled() {
	tick := time.NewTicker(disabledPoll)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		if e.ready.Load() { // until then, Start's catch-up reads them (awaitStore)
			_ = e.readDisabled()
		}
	}
}

// readDisabled reads every flow's disabled flag from the store; it goes
// on past a flag it cannot read, and returns the first such error.
func (e *Engine) readDisabled() error {
	e.mu.RLock()
	lfs := make([]*liveFlow, 0, len(e.flows))
	for _, lf := range e.flows {
		lfs = append(lfs, lf)
	}
	e.mu.RUnlock()
	var first error
	for _, lf := range lfs {
		e.enableM.Lock() // not overwritten with what was read before a SetEnabled here
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		v, err := e.store.GetMeta(ctx, disabledKey(lf.id))
		cancel()
		if err == nil && v != nil { // none: deleted through a replica that no longer has the flow
			if disabled := string(v) == "true"; lf.disabled.Swap(disabled) && !disabled {
				lf.pool.wake()
			}
		}
		e.enableM.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// storedDisabled reports whether flow id was disabled by an operator, as
// the store remembers it. applyWorkspace calls it for a flow it registers.
// While the store did not answer at start (storeDown), it is not asked:
// Start's catch-up reads the flag before the flow can take a message.
func (e *Engine) storedDisabled(id string) bool {
	if e.storeDown.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := e.store.GetMeta(ctx, disabledKey(id))
	if err != nil {
		e.log.Error("cannot read whether a flow is disabled", "flow", id, "error", err)
	}
	return string(v) == "true"
}

// TestFlow dry-runs flow id on in with mocked calls, exactly as `conveyor
// run` does, and returns the per-step report. src, when not nil, is tested
// instead of the saved file (an unsaved edit; the flow need not exist). A
// source that does not load returns its diagnostics and no report.
func (e *Engine) TestFlow(ctx context.Context, id string, src []byte, in flowtest.Input, mocks flowtest.Mocks) (*flowtest.Report, dsl.Diagnostics, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	if src == nil {
		var err error
		if src, _, err = e.FlowSource(id); err != nil {
			return nil, nil, err
		}
	}
	f, ds := e.compileSource(id, src)
	if len(ds) > 0 {
		return nil, ds, nil
	}
	return flowtest.Run(ctx, f, in, mocks), nil, nil
}

// Revisions lists the revisions of flow id that went live, oldest first.
func (e *Engine) Revisions(ctx context.Context, id string) ([]store.Revision, error) {
	revs, err := e.store.Revisions(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, known := e.flowFile(id); len(revs) == 0 && !known {
		return nil, adminErr(ErrNotFound, "flow %s does not exist", id)
	}
	return revs, nil
}

// Revision returns revision n of flow id, with its source.
func (e *Engine) Revision(ctx context.Context, id string, n int) (store.Revision, error) {
	revs, err := e.store.Revisions(ctx, id)
	if err != nil {
		return store.Revision{}, err
	}
	for _, r := range revs {
		if r.Number == n {
			return r, nil
		}
	}
	return store.Revision{}, adminErr(ErrNotFound, "flow %s has no revision %d", id, n)
}

// DiffRevisions returns the unified diff from revision from to revision to
// of flow id ("" when they are the same).
func (e *Engine) DiffRevisions(ctx context.Context, id string, from, to int) (string, error) {
	a, err := e.Revision(ctx, id, from)
	if err != nil {
		return "", err
	}
	b, err := e.Revision(ctx, id, to)
	if err != nil {
		return "", err
	}
	name := "flows/" + id + ".yaml"
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a.Source), B: difflib.SplitLines(b.Source),
		FromFile: fmt.Sprintf("%s (revision %d)", name, from), ToFile: fmt.Sprintf("%s (revision %d)", name, to), Context: 3,
	})
}

// Rollback makes revision n's source the flow's file again, as a new
// revision (numbers only grow), and returns once it is live. It recreates
// a deleted flow. The audit entry says which revision it rolled back to.
func (e *Engine) Rollback(ctx context.Context, id string, n int, author string) (FlowInfo, error) {
	r, err := e.Revision(ctx, id, n)
	if err != nil {
		return FlowInfo{}, err
	}
	return e.writeFlow(ctx, id, []byte(r.Source), author, "", writeUpsert, "flow.rollback", fmt.Sprintf("rollback to %d", n))
}

// Messages lists messages newest first. A Key filter finds a message by
// its dedup key, which the runtime stores as "<flow>:<key>": the business
// key alone ("1042") is looked up under every flow that dedups (or under
// f.Flow when set), and the full key works too.
func (e *Engine) Messages(ctx context.Context, f store.Filter) ([]*store.Message, error) {
	if f.Key == "" {
		return e.store.List(ctx, f)
	}
	keys := []string{f.Key}
	if f.Flow != "" {
		if !strings.HasPrefix(f.Key, f.Flow+":") {
			keys = append(keys, f.Flow+":"+f.Key)
		}
	} else {
		e.mu.RLock()
		for id, lf := range e.flows {
			if cur := lf.cur.Load(); cur != nil && cur.Dedup != nil && !strings.HasPrefix(f.Key, id+":") {
				keys = append(keys, id+":"+f.Key)
			}
		}
		e.mu.RUnlock()
	}
	var out []*store.Message
	seen := map[string]bool{}
	for _, k := range keys {
		g := f
		g.Key = k
		ms, err := e.store.List(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !seen[m.ID] {
				seen[m.ID] = true
				out = append(out, m)
			}
		}
	}
	slices.SortFunc(out, store.ListOrder)
	limit := f.Limit
	if limit <= 0 {
		limit = 100 // as the store
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Message returns one message with its history.
func (e *Engine) Message(ctx context.Context, id string) (*store.Message, error) {
	m, err := e.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, adminErr(ErrNotFound, "message %s does not exist", id)
	}
	return m, err
}

// Where a replay starts, and on which revision.
const (
	FromStart      = "start"       // the first step, with the message as accepted
	FromFailedStep = "failed_step" // the checkpoint: the step that failed
	RevCurrent     = "current"     // the live revision of the flow
	RevPinned      = "pinned"      // the revision the message was accepted on
)

// ReplayOptions say how a dead letter is replayed. Zero values take the
// defaults: from the start, on the current revision.
type ReplayOptions struct {
	From     string `json:"from,omitempty"`     // FromStart or FromFailedStep
	Revision string `json:"revision,omitempty"` // RevCurrent or RevPinned
}

func (o *ReplayOptions) normalize() error {
	o.From = cmp.Or(o.From, FromStart)
	o.Revision = cmp.Or(o.Revision, RevCurrent)
	if o.From != FromStart && o.From != FromFailedStep {
		return adminErr(ErrInvalid, "from: %q is not one of %s, %s", o.From, FromStart, FromFailedStep)
	}
	if o.Revision != RevCurrent && o.Revision != RevPinned {
		return adminErr(ErrInvalid, "revision: %q is not one of %s, %s", o.Revision, RevCurrent, RevPinned)
	}
	return nil
}

// Replay puts dead letter id back on its flow's queue and wakes the flow's
// workers.
//
// Only a dead message can be replayed; any other status is ErrConflict. So
// replaying twice never delivers twice: the second replay finds the
// message queued, running or completed.
//
// From the start, the checkpoint is cleared but the memo of succeeded
// effects is kept: a call or publication that succeeded before is not made
// again (its recorded response feeds vars.<as>), so only what failed or
// never ran is delivered. On a revision other than the one the memo was
// recorded on, an entry is kept when the new revision has the same effect
// (connection, method and path, or connection and sql statement; topic,
// with its connection; aggregate topic) at the same step, moved when it
// has that effect at exactly one other step, and dropped otherwise (that
// effect runs again, with its idempotency key).
//
// From the failed step, the message resumes at its checkpoint: the step
// index and the body and vars as they were. That is only meaningful on the
// revision the checkpoint was taken on, so from failed_step on a revision
// other than the pinned one is refused (ErrConflict): replay from start.
//
// The message's retry budget starts afresh; its history (attempts, trace)
// is kept. A replay of a disabled flow's message waits until the flow is
// enabled.
func (e *Engine) Replay(ctx context.Context, id string, opts ReplayOptions, author string) (*store.Message, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	messageOps.Lock()
	defer messageOps.Unlock()
	m, err := e.deadLetterFor(ctx, id, "replayed")
	if err != nil {
		return m, err
	}
	lf, cur := e.live(m.Flow)
	if lf == nil {
		return m, adminErr(ErrConflict, "flow %s does not exist: create it again to replay its messages", m.Flow)
	}
	rev := m.Revision
	if opts.Revision == RevCurrent {
		if cur == nil {
			return m, adminErr(ErrConflict, "flow %s has no live revision", m.Flow)
		}
		rev = cur.Revision
	}
	detail := fmt.Sprintf("from %s on revision %d", opts.From, rev)
	switch {
	case opts.From == FromFailedStep && rev != m.Revision:
		return m, adminErr(ErrConflict, "message %s failed on revision %d, the flow is at revision %d: its checkpoint does not fit the new steps; replay from start, or on the pinned revision", id, m.Revision, rev)
	case opts.From == FromStart:
		m.State = nil
		if rev != m.Revision && len(m.Memo) > 0 {
			kept, total := e.remapMemo(ctx, m, rev)
			detail += fmt.Sprintf(" (was %d; %d of %d completed effects kept)", m.Revision, kept, total)
		}
	}
	m.Revision = rev
	m.Status, m.DueAt, m.Attempt = store.Queued, time.Now(), 0
	m.Error, m.FailedStep = "", ""
	if err := e.saveDeadLetter(ctx, m, "replayed"); err != nil {
		return nil, err
	}
	lf.pool.wake()
	e.audit(ctx, author, "message.replay", id, detail)
	return m, nil
}

// remapMemo carries m's memo from its revision to revision rev (see
// Replay) and reports how many entries it kept of how many.
func (e *Engine) remapMemo(ctx context.Context, m *store.Message, rev int) (int, int) {
	total := len(m.Memo)
	oldSrc, err1 := e.Revision(ctx, m.Flow, m.Revision)
	newSrc, err2 := e.Revision(ctx, m.Flow, rev)
	if err := errors.Join(err1, err2); err != nil {
		e.log.Warn("replay: revision sources unavailable; keeping the memo as it is", "message", m.ID, "error", err)
		return total, total
	}
	oldE, newE := effectsOf(m.Flow, oldSrc.Source), effectsOf(m.Flow, newSrc.Source)
	where := map[string][]string{} // effect -> its paths in the new revision
	for p, eff := range newE {
		where[eff] = append(where[eff], p)
	}
	prefix := m.Flow + ":" + m.ID + ":"
	gens := keyGenerations(m.Attempts)
	out := map[string]json.RawMessage{}
	var moves [][2]string
	for key, v := range m.Memo {
		path, items := splitMemoKey(strings.TrimPrefix(key, prefix))
		eff, ok := oldE[path]
		switch {
		case key == watermarkPin(m):
			out[key] = v // the window the memoized pulls were made for
		case !ok || !strings.HasPrefix(key, prefix):
		case newE[path] == eff:
			out[key] = v
		case len(where[eff]) == 1:
			// Under the key the step at the new path calls with: its
			// generation comes from the attempts made at that path.
			step := where[eff][0] + items
			moves = append(moves, [2]string{key, flows.KeyOf(m.Flow, m.ID, step, gens[step])})
		}
	}
	for _, mv := range moves {
		if _, taken := out[mv[1]]; !taken {
			out[mv[1]] = m.Memo[mv[0]]
		}
	}
	m.Memo = out
	return len(m.Memo), total
}

var memoSuffixRE = regexp.MustCompile(`^(.*?)((?:\[\d+\])*)(?:#\d+)?$`)

// splitMemoKey splits a step path with split item indexes and a key
// generation ("5[].1[2]#2", see keyGenerations) into the step path
// ("5[].1") and the indexes ("[2]").
func splitMemoKey(s string) (string, string) {
	m := memoSuffixRE.FindStringSubmatch(s)
	return m[1], m[2]
}

// effectsOf maps each effect step of a flow source (call, publish,
// aggregate), by its step path as flows.Compile numbers them, to what the
// effect is.
func effectsOf(id, src string) map[string]string {
	out := map[string]string{}
	df, _ := dsl.ParseFlow("flows/"+id+".yaml", []byte(src))
	if df != nil {
		collectEffects(df.Steps, "", out)
	}
	return out
}

func collectEffects(steps []dsl.Step, prefix string, out map[string]string) {
	for i := range steps {
		s, path := &steps[i], prefix+strconv.Itoa(i+1)
		switch {
		case s.Call != nil && s.Call.SQL != "":
			out[path] = "sql " + s.Call.Connection + " " + s.Call.SQL
		case s.Call != nil:
			out[path] = "call " + s.Call.Connection + " " + cmp.Or(s.Call.Method, "POST") + " " + s.Call.Path.Raw
		case s.Publish != nil:
			out[path] = "publish " + s.Publish.Connection + " " + s.Publish.Topic
		case s.Aggregate != nil:
			out[path] = "aggregate " + s.Aggregate.Topic
		case s.Choice != nil:
			for j, b := range s.Choice {
				bp := fmt.Sprintf("%s.%d.", path, j+1)
				collectEffects(b.Steps, bp, out)
				collectEffects(b.Otherwise, bp, out)
			}
		case s.Split != nil:
			collectEffects(s.Split.Steps, path+"[].", out)
		}
	}
}

// ReplayMany replays every dead letter that f selects (f.Status is
// ignored; f.Limit, when set, caps how many) with opts, one by one as
// Replay does. It returns how many were replayed and an error per message
// that was not; err is for a request that did nothing: invalid options
// (ErrInvalid), or dead letters that could not be listed.
func (e *Engine) ReplayMany(ctx context.Context, f store.Filter, opts ReplayOptions, author string) (n int, errs []error, err error) {
	if err := opts.normalize(); err != nil {
		return 0, nil, err
	}
	most := f.Limit
	f.Status, f.After = store.Dead, nil
	for {
		// Page by cursor: a replayed message leaves the dead-letter queue
		// and one that fails again stays where it was, behind the cursor,
		// so each dead letter is read once.
		f.Limit = 200
		if most > 0 {
			f.Limit = min(f.Limit, most-n-len(errs))
		}
		page, err := e.Messages(ctx, f)
		if err != nil && n == 0 && len(errs) == 0 {
			return 0, nil, err
		}
		if err != nil {
			return n, append(errs, err), nil
		}
		for _, m := range page {
			if ctx.Err() != nil {
				return n, append(errs, ctx.Err()), nil
			}
			if _, err := e.Replay(ctx, m.ID, opts, author); err != nil {
				errs = append(errs, fmt.Errorf("message %s: %w", m.ID, err))
				continue
			}
			n++
		}
		if len(page) < f.Limit || (most > 0 && n+len(errs) >= most) {
			return n, errs, nil
		}
		f.After = store.CursorOf(page[len(page)-1])
	}
}

// deadLetterFor reads message id for an operation only dead letters
// allow: any other status is ErrConflict (with the message).
func (e *Engine) deadLetterFor(ctx context.Context, id, done string) (*store.Message, error) {
	m, err := e.Message(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Status != store.Dead {
		return m, adminErr(ErrConflict, "message %s is %s, not dead: only dead letters can be %s", id, m.Status, done)
	}
	return m, nil
}

// saveDeadLetter saves m, read as a dead letter, with its new status
// (done: for the error), provided it is still a dead letter: messageOps
// orders the operations of this process, and the store's check those of
// every replica sharing it, so two replays of one dead letter never
// queue it twice.
func (e *Engine) saveDeadLetter(ctx context.Context, m *store.Message, done string) error {
	m.Expect = store.Dead
	err := e.store.Save(ctx, m)
	m.Expect = ""
	switch {
	case errors.Is(err, store.ErrChanged):
		return adminErr(ErrConflict, "message %s is no longer a dead letter: another request (or replica) replayed or discarded it meanwhile; only dead letters can be %s", m.ID, done)
	case err != nil:
		return fmt.Errorf("message %s: %w", m.ID, err)
	}
	return nil
}

// Discard removes dead letter id from the dead-letter queue with a
// reason; the message is kept, with status discarded. Any other status is
// ErrConflict.
func (e *Engine) Discard(ctx context.Context, id, reason, author string) (*store.Message, error) {
	messageOps.Lock()
	defer messageOps.Unlock()
	m, err := e.deadLetterFor(ctx, id, "discarded")
	if err != nil {
		return m, err
	}
	m.Status, m.Reason = store.Discarded, reason
	if err := e.saveDeadLetter(ctx, m, "discarded"); err != nil {
		return nil, err
	}
	e.audit(ctx, author, "message.discard", id, reason)
	return m, nil
}

// Audit lists the newest limit changes (default 100).
func (e *Engine) Audit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	return e.store.Audit(ctx, limit)
}

func (e *Engine) audit(ctx context.Context, actor, action, target, detail string) {
	a := store.AuditEntry{At: time.Now().UTC(), Actor: actor, Action: action, Target: target, Detail: detail}
	if err := e.store.AppendAudit(context.WithoutCancel(ctx), a); err != nil {
		e.log.Error("cannot write the audit log", "action", action, "target", target, "error", err)
	}
}
