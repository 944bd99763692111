package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// FlowStatus is what the API shows of a flow's state.
type FlowStatus string

// The statuses of a flow.
const (
	StatusActive   FlowStatus = "active"   // a revision is live
	StatusError    FlowStatus = "error"    // the file has errors; the last good revision (if any) keeps serving
	StatusDisabled FlowStatus = "disabled" // turned off by an operator; its trigger answers 503
)

// liveFlow is a flow in the registry. The compiled flow is swapped
// atomically: a message holds the *flows.Flow it started with and
// finishes on it, whatever is swapped in meanwhile.
type liveFlow struct {
	id       string
	file     string
	cur      atomic.Pointer[flows.Flow]
	revision atomic.Int64
	hash     string
	diags    atomic.Pointer[dsl.Diagnostics]
	disabled atomic.Bool
	pool     *pool
}

// FlowInfo is a snapshot of one flow for the API and the CLI.
type FlowInfo struct {
	ID          string          `json:"id"`
	File        string          `json:"file"`
	Description string          `json:"description"`
	Trigger     string          `json:"trigger"`
	Revision    int             `json:"revision"`
	Status      FlowStatus      `json:"status"`
	Diagnostics dsl.Diagnostics `json:"diagnostics"`
}

func (lf *liveFlow) info() FlowInfo {
	fi := FlowInfo{ID: lf.id, File: lf.file, Revision: int(lf.revision.Load()), Status: StatusActive, Diagnostics: dsl.Diagnostics{}}
	if f := lf.cur.Load(); f != nil {
		fi.Description = f.Description
		fi.Trigger = triggerSummary(f)
	}
	if ds := lf.diags.Load(); ds != nil && len(*ds) > 0 {
		fi.Status, fi.Diagnostics = StatusError, *ds
	}
	if lf.disabled.Load() {
		fi.Status = StatusDisabled
	}
	return fi
}

func triggerSummary(f *flows.Flow) string {
	t := f.Trigger
	switch {
	case t.HTTP != nil:
		m := t.HTTP.Method
		if m == "" {
			m = "POST"
		}
		mode := t.HTTP.Mode
		if mode == "" {
			mode = "async"
		}
		return fmt.Sprintf("http %s %s (%s)", m, t.HTTP.Path, mode)
	case t.Schedule != nil:
		return "schedule " + t.Schedule.Cron
	case t.File != nil:
		return "file " + t.File.Dir
	case t.Event != nil:
		return "event " + t.Event.Topic
	case t.Kind == "redis_stream" || t.Kind == "nats":
		st := f.Source.Trigger.RedisStream
		if st == nil {
			st = f.Source.Trigger.NATS
		}
		return strings.TrimSpace(t.Kind + " " + st.Stream + " " + st.Subject)
	}
	return ""
}

// Flows lists every flow the engine knows, sorted by id.
func (e *Engine) Flows() []FlowInfo {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]FlowInfo, 0, len(e.flows))
	for _, lf := range e.flows {
		out = append(out, lf.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Flow returns one flow's snapshot.
func (e *Engine) Flow(id string) (FlowInfo, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	lf, ok := e.flows[id]
	if !ok {
		return FlowInfo{}, false
	}
	return lf.info(), true
}

// live returns the current compiled flow of id, if one is live.
func (e *Engine) live(id string) (*liveFlow, *flows.Flow) {
	e.mu.RLock()
	lf := e.flows[id]
	e.mu.RUnlock()
	if lf == nil {
		return nil, nil
	}
	return lf, lf.cur.Load()
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// applyWorkspace brings the registry in line with a freshly loaded
// workspace: new revisions swap in, broken files keep the old revision
// serving, removed files stop their flows (their queues are kept).
func (e *Engine) applyWorkspace(ws *Workspace, author string) {
	// Routes are settled again knowing which flow serves each: it keeps
	// its route (a broken file's flow too, on its previous revision), and
	// a flow that claims the same one is refused.
	serving := map[string]*flows.Flow{}
	e.mu.RLock()
	for id, lf := range e.flows {
		if _, present := ws.FlowFiles[id]; present && lf.cur.Load() != nil {
			serving[id] = lf.cur.Load()
		}
	}
	e.mu.RUnlock()
	ws.settleRoutes(serving)
	// A file refused for another file's flow id has no flow of its own to
	// show it: the log and the metric report it when a load decides it
	// (a full reload decides again).
	for _, file := range slices.Sorted(maps.Keys(ws.shadowed)) {
		if sh := ws.shadowed[file]; sh.now {
			e.metrics.reloads.WithLabelValues(sh.id, "refused").Inc()
			e.log.Error("flow file not loaded: another file holds its flow id", "flow", sh.id, "file", file, "error", sh.diag.String())
		}
	}
	// Store work first, without the lock, so requests are not held up:
	// the revision number of every flow that compiled anew.
	type fresh struct {
		rev  int
		hash string
	}
	revs := map[string]fresh{}
	for id, f := range ws.Flows {
		e.mu.RLock()
		lf := e.flows[id]
		e.mu.RUnlock()
		if lf != nil && lf.cur.Load() == f {
			continue
		}
		src := ws.Raw[id]
		hash := hashOf(src)
		revs[id] = fresh{e.nextRevision(id, hash, string(src), author), hash}
	}
	disabled := map[string]bool{}
	for id := range ws.FlowFiles {
		e.mu.RLock()
		_, known := e.flows[id]
		e.mu.RUnlock()
		if !known {
			disabled[id] = e.storedDisabled(id)
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.ws = ws
	bad := ws.FlowDiags
	seen := map[string]bool{}
	for id, file := range ws.FlowFiles {
		seen[id] = true
		lf := e.flows[id]
		if lf == nil {
			lf = &liveFlow{id: id, file: file}
			lf.pool = newPool(e, lf)
			lf.disabled.Store(disabled[id])
			e.flows[id] = lf
			// Reported as a live flow's queue again; revision 0 until one
			// goes live (its file may have errors).
			delete(e.removed, id)
			e.metrics.revision.WithLabelValues(id).Set(0)
			if e.ready.Load() {
				lf.pool.start()
			}
		}
		lf.file = file
		if ds := bad[id]; len(ds) > 0 {
			// A failed reload of this flow when its file was read now, or
			// when it had no errors before (a route it lost); not when
			// another flow's file changed.
			if was := lf.diags.Load(); ws.read[id] || was == nil || len(*was) == 0 {
				e.metrics.reloads.WithLabelValues(id, "failed").Inc()
				e.log.Error("flow not reloaded: the file has errors; the previous revision keeps serving",
					"flow", id, "revision", lf.revision.Load(), "errors", ds.Error())
			}
			lf.diags.Store(&ds)
			continue
		}
		f := ws.Flows[id]
		nr, ok := revs[id]
		if f == nil || !ok || f == lf.cur.Load() {
			continue // not compiled, or unchanged by this reload
		}
		rev, hash := nr.rev, nr.hash
		if rev == 0 && hash == lf.hash {
			continue // loaded again to be recorded (forgetUnrecorded), and still not
		}
		empty := dsl.Diagnostics{}
		lf.diags.Store(&empty)
		f.Revision = rev
		if old := lf.cur.Load(); old != nil {
			e.keepRevision(old)
		}
		lf.hash = hash
		lf.cur.Store(f)
		lf.revision.Store(int64(rev))
		e.metrics.revision.WithLabelValues(id).Set(float64(rev))
		e.metrics.reloads.WithLabelValues(id, "ok").Inc()
		e.log.Info("flow live", "flow", id, "revision", rev, "trigger", triggerSummary(f))
	}
	for id, lf := range e.flows {
		if !seen[id] {
			e.log.Info("flow file removed: flow stopped, its queue is kept", "flow", id)
			lf.pool.stop()
			delete(e.flows, id)
			e.removed[id] = true // queue depth and age stay reported while messages wait
			e.metrics.revision.DeleteLabelValues(id)
		}
	}
	e.rebuildRoutes()
	if e.sched != nil {
		go e.sched.sync()
	}
	for _, src := range e.sources {
		go src.sync()
	}
}

// nextRevision returns the revision number for a flow file's content,
// storing a new revision when the content is new. It reads the latest
// revision only, not the flow's whole history. When the store cannot
// tell or cannot store it, the version is not recorded and gets number 0
// (its messages run on whatever revision is live), rather than a guessed
// number that could overwrite a stored revision or name another source
// later; forgetUnrecorded has it recorded once the store answers.
func (e *Engine) nextRevision(id, hash, src, author string) int {
	if e.storeDown.Load() {
		return 0 // Start's catch-up records it once the store answers
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	next := 1
	last, err := e.store.Revision(ctx, id, 0)
	switch {
	case err == nil && last.Hash == hash:
		return last.Number
	case err == nil:
		next = last.Number + 1
	case !errors.Is(err, store.ErrNotFound):
		e.log.Error("cannot read the latest revision; this version is not recorded", "flow", id, "error", err)
		return 0
	}
	if err := e.store.AddRevision(ctx, store.Revision{Flow: id, Number: next, Hash: hash, Source: src, Author: author, At: time.Now().UTC()}); err != nil {
		e.log.Error("cannot store revision; this version is not recorded", "flow", id, "error", err)
		return 0
	}
	if author == "file" && e.ready.Load() { // not the first load at start
		e.audit(ctx, "file", "flow.update", id, fmt.Sprintf("revision %d (edited on disk)", next))
	}
	return next
}

// forgetUnrecorded drops the hashes of the flow files whose live version
// is unrecorded (revision 0, see nextRevision), so that the next rescan
// loads them again and records them, once the store answers. Called
// under reloadM. Not while the store was out of reach at start
// (storeDown): a rescan would not ask it, and Start's catch-up calls this
// once it answers.
func (e *Engine) forgetUnrecorded() {
	if e.storeDown.Load() {
		return
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, lf := range e.flows {
		if lf.cur.Load() != nil && lf.revision.Load() == 0 {
			delete(e.hashes, lf.file)
		}
	}
}

// keepRevision remembers a replaced compiled flow so that messages
// accepted under it retry on it (their checkpoints index its steps).
// Only the last few are kept; older ones are compiled again from the
// stored source if a message still needs them.
func (e *Engine) keepRevision(f *flows.Flow) {
	m := e.revs[f.ID]
	if m == nil {
		m = map[int]*flows.Flow{}
		e.revs[f.ID] = m
	}
	m[f.Revision] = f
	for rev := range m {
		if rev <= f.Revision-keptRevisions {
			delete(m, rev)
		}
	}
}

const keptRevisions = 8

// flowFor returns the compiled flow for a message of flow id at revision
// rev: the live one, a kept older one, or the stored source compiled now.
// A store that cannot answer, or a flow with no live revision (its file
// broken at start), is a retryLater error: the message waits for them.
func (e *Engine) flowFor(id string, rev int) (*flows.Flow, error) {
	lf, cur := e.live(id)
	if cur != nil && (rev == 0 || cur.Revision == rev) {
		return cur, nil
	}
	e.mu.RLock()
	old := e.revs[id][rev]
	ws := e.ws
	e.mu.RUnlock()
	if old != nil {
		return old, nil
	}
	if rev > 0 {
		r, err := e.store.Revision(context.Background(), id, rev)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, retryLater{fmt.Errorf("reading revision %d of %s: %w", rev, id, err)}
		}
		if err == nil {
			return e.compileRevision(lf, ws, r)
		}
	}
	if cur != nil {
		return cur, nil // the revision is gone: run on the live one
	}
	return nil, retryLater{fmt.Errorf("flow %s has no live revision", id)}
}

// compileRevision compiles a stored revision and keeps it for the next
// message that needs it.
func (e *Engine) compileRevision(lf *liveFlow, ws *Workspace, r *store.Revision) (*flows.Flow, error) {
	df, ds := dsl.ParseFlow(fileOr(lf, r.Flow), []byte(r.Source))
	if len(ds) > 0 {
		return nil, fmt.Errorf("revision %d of %s no longer loads: %v", r.Number, r.Flow, ds)
	}
	f, ds := flows.Compile(df, ws.FlowEnv(e.opts.Getenv))
	if len(ds) > 0 {
		return nil, fmt.Errorf("revision %d of %s no longer compiles: %v", r.Number, r.Flow, ds)
	}
	f.Revision = r.Number
	e.mu.Lock()
	e.keepRevision(f)
	e.mu.Unlock()
	return f, nil
}

func fileOr(lf *liveFlow, id string) string {
	if lf != nil {
		return lf.file
	}
	return "flows/" + id + ".yaml"
}

// rebuildRoutes builds the trigger mux for the live http flows and swaps
// it in. Callers hold e.mu.
func (e *Engine) rebuildRoutes() {
	mux := http.NewServeMux()
	// Every request no flow claims: a 405 when a flow takes the path with
	// another method (the catch-all keeps net/http from answering that
	// itself), else our JSON 404.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			methodNotAllowed(w, r, allow)
			return
		}
		notFound(w, r)
	})
	for id, lf := range e.flows {
		f := lf.cur.Load()
		if f == nil || f.Trigger.HTTP == nil {
			continue
		}
		pattern := muxPattern(f)
		id := id
		func() {
			defer func() {
				if r := recover(); r != nil { // a conflicting pattern: refuse the later flow
					e.log.Error("route conflict", "flow", id, "pattern", pattern, "error", r)
				}
			}()
			mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { e.accept(w, r, id) })
		}()
	}
	e.routes.Store(mux)
}

// triggerMethods are the methods an http trigger may take.
var triggerMethods = dsl.Enum(dsl.HTTPTrigger{}, "method")

// allowedMethods are the methods some flow of mux takes r's path with.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	r2 := *r // asked again with each method
	for _, m := range triggerMethods {
		r2.Method = m
		// A flow's pattern starts with its method; "/" is the catch-all
		// and a bare path a redirect.
		if _, p := mux.Handler(&r2); strings.HasPrefix(p, m+" ") {
			out = append(out, m)
		}
	}
	return out
}

// routeClaims are the routes given out in one settlement: HTTP patterns
// in a scratch mux, which knows which patterns overlap (/a/{x} and
// /{y}/b both match /a/b and neither is more specific, so net/http
// refuses to serve the second), and file trigger directories by key.
type routeClaims struct {
	mux  *http.ServeMux
	http []routeClaim // in claim order
	dirs map[string]string
}

type routeClaim struct {
	id string
	f  *flows.Flow
}

func newRouteClaims() *routeClaims {
	return &routeClaims{mux: http.NewServeMux(), dirs: map[string]string{}}
}

// claim gives f's route to flow id, or returns the diagnostic that
// refuses f: its route is, or overlaps, one another flow holds. A flow
// may claim the route it holds again (its serving revision claimed
// first).
func (c *routeClaims) claim(id string, f *flows.Flow) (dsl.Diagnostic, bool) {
	switch t := f.Trigger; {
	case t.HTTP != nil:
		pattern := muxPattern(f)
		if handle(c.mux, pattern) == nil {
			c.http = append(c.http, routeClaim{id, f})
			return dsl.Diagnostic{}, true
		}
		for _, h := range c.http {
			if h.id != id && overlap(muxPattern(h.f), pattern) {
				return routeTaken(f, h), false
			}
		}
		// It overlaps only a route of its own flow (the serving revision
		// claims first): this revision's route takes that one's place.
		var others []routeClaim
		mux := http.NewServeMux()
		for _, h := range c.http {
			if h.id != id {
				others = append(others, h)
				_ = handle(mux, muxPattern(h.f)) // served side by side before
			}
		}
		if err := handle(mux, pattern); err != nil {
			at := f.Source.Trigger.At
			return dsl.Diagnostic{File: f.File, Line: at.Line, Col: at.Col,
				Message: fmt.Sprintf("trigger: %s cannot be served: %v", pattern, err), Hint: "see https://pkg.go.dev/net/http#hdr-Patterns"}, false
		}
		c.mux, c.http = mux, append(others, routeClaim{id, f})
	case t.File != nil:
		key := routeKey(f)
		if other, taken := c.dirs[key]; taken && other != id {
			return routeTaken(f, routeClaim{other, nil}), false
		}
		c.dirs[key] = id
	}
	return dsl.Diagnostic{}, true
}

// handle registers pattern in mux; net/http panics on a pattern that
// conflicts with one registered before, and leaves mux as it was.
func handle(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// overlap reports whether net/http could not serve patterns a and b side
// by side.
func overlap(a, b string) bool {
	mux := http.NewServeMux()
	return handle(mux, a) == nil && handle(mux, b) != nil
}

// routeTaken is the diagnostic of flow f refused because the flow of h
// claims its route (or file directory), or one that overlaps it (h.f set).
func routeTaken(f *flows.Flow, h routeClaim) dsl.Diagnostic {
	at := f.Source.Trigger.At
	key := routeKey(f)
	msg := fmt.Sprintf("trigger: %s is already claimed by flow %q", key, h.id)
	if h.f != nil && routeKey(h.f) != key {
		msg = fmt.Sprintf("trigger: %s overlaps %s of flow %q: both match some paths and neither is more specific", key, routeKey(h.f), h.id)
	}
	return dsl.Diagnostic{File: f.File, Line: at.Line, Col: at.Col, Message: msg, Hint: "give this flow its own path"}
}

// muxPattern is the net/http pattern that serves f's HTTP trigger.
func muxPattern(f *flows.Flow) string {
	method := f.Trigger.HTTP.Method
	if method == "" {
		method = "POST"
	}
	return method + " " + muxPath(f.Trigger.HTTP.Path)
}

// muxPath turns /orders/:id into /orders/{id} for net/http patterns.
func muxPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	out := strings.Join(parts, "/")
	if strings.HasSuffix(out, "/") { // "/" and "/x/" match exactly, not every path below
		out += "{$}"
	}
	return out
}

// pathParams names the {params} of a trigger path.
func pathParams(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		switch {
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(s[1:len(s)-1], "..."), "$"), "..."))
		case strings.HasPrefix(s, ":"):
			out = append(out, s[1:])
		}
	}
	return out
}
