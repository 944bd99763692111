package runtime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

const defaultMaxBody = 1 << 20

// apiError is the one error shape of every answer Conveyor gives:
// {"error": {"code": ..., "message": ..., "details": ...}}.
func apiError(w http.ResponseWriter, status int, code, msg string, details any) {
	body := map[string]any{"code": code, "message": msg}
	if details != nil {
		body["details"] = details
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := jsonv.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (e *Engine) serveTrigger(w http.ResponseWriter, r *http.Request) {
	if e.draining.Load() {
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, "shutting_down", "conveyor is shutting down; retry shortly", nil)
		return
	}
	if mux := e.routes.Load(); mux != nil {
		mux.ServeHTTP(w, r) // the mux answers unknown routes itself (rebuildRoutes)
		return
	}
	notFound(w, r)
}

// contentError is a body that cannot be decoded: status, metric reason
// (also the error code) and message.
type contentError struct {
	status      int
	reason, msg string
}

func (e *contentError) Error() string { return e.msg }

// decodeContent undoes a Content-Encoding of raw (see
// connectors.Decompress), holding what it decompresses to within limit:
// a few kilobytes of gzip can unpack to gigabytes.
func decodeContent(encoding string, raw []byte, limit int64) ([]byte, error) {
	if e := strings.TrimSpace(encoding); e == "" || strings.EqualFold(e, "identity") {
		return raw, nil
	}
	zr, err := connectors.Decompress(encoding, bytes.NewReader(raw))
	if errors.Is(err, connectors.ErrUnsupportedEncoding) {
		return nil, &contentError{http.StatusUnsupportedMediaType, "unsupported_encoding",
			fmt.Sprintf("Content-Encoding %q is not supported: send the body as is, gzip or deflate", encoding)}
	}
	var out []byte
	if err == nil {
		if out, err = io.ReadAll(io.LimitReader(zr, limit+1)); err != nil {
			err = fmt.Errorf("not valid %s: %w", strings.ToLower(strings.TrimSpace(encoding)), err)
		}
	}
	switch {
	case err != nil:
		return nil, &contentError{http.StatusBadRequest, "bad_encoding", "the body is " + err.Error()}
	case int64(len(out)) > limit:
		return nil, &contentError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body decompresses to more than %d bytes", limit)}
	}
	return out, nil
}

func notFound(w http.ResponseWriter, r *http.Request) {
	apiError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no flow listens on %s %s", r.Method, r.URL.Path), nil)
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	apiError(w, http.StatusMethodNotAllowed, "method_not_allowed",
		fmt.Sprintf("%s takes %s, not %s", r.URL.Path, strings.Join(allow, " or "), r.Method), nil)
}

// accept runs the accept path of an http trigger: size limit, auth, parse,
// inbound rate limit, leading validate steps, dedup; then stores the
// message (async) or runs the flow inline (sync).
func (e *Engine) accept(w http.ResponseWriter, r *http.Request, id string) {
	lf, f := e.live(id)
	if f == nil || f.Trigger.HTTP == nil { // or a reload made it another trigger's since routing
		apiError(w, http.StatusNotFound, "not_found", "flow "+id+" is not live", nil)
		return
	}
	if method := cmp.Or(f.Trigger.HTTP.Method, http.MethodPost); r.Method != method {
		// HEAD, which net/http routes to GET: a probe of the URL must not
		// start a run.
		methodNotAllowed(w, r, []string{method})
		return
	}
	m := e.metrics
	m.received.WithLabelValues(id).Inc()
	if !e.ready.Load() {
		// Started without its store (Redis out of reach): nothing is
		// accepted before it answers, and the flow's flags are read.
		m.rejected.WithLabelValues(id, "store").Inc()
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, "store_unavailable", "the store is not reachable yet; retry", nil)
		return
	}
	if lf.disabled.Load() {
		w.Header().Set("Retry-After", "60")
		m.rejected.WithLabelValues(id, "disabled").Inc()
		apiError(w, http.StatusServiceUnavailable, "flow_disabled", "flow "+id+" is disabled", nil)
		return
	}
	t := f.Trigger.HTTP
	limit := int64(defaultMaxBody)
	if t.MaxBody.Set {
		limit = t.MaxBody.N
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			m.rejected.WithLabelValues(id, "too_large").Inc()
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes", limit), nil)
			return
		}
		m.rejected.WithLabelValues(id, "read").Inc()
		apiError(w, http.StatusBadRequest, "bad_request", "reading the body: "+err.Error(), nil)
		return
	}
	wire := raw
	if raw, err = decodeContent(r.Header.Get("Content-Encoding"), raw, limit); err != nil {
		var ce *contentError
		errors.As(err, &ce)
		m.rejected.WithLabelValues(id, ce.reason).Inc()
		apiError(w, ce.status, ce.reason, ce.msg, nil)
		return
	}
	header := func(name string) string { return r.Header.Get(name) }
	if a := f.Trigger.Auth; a != nil {
		ok := a.Verify(header, raw)
		if !ok && r.Header.Get("Content-Encoding") != "" {
			// A sender that compresses may sign what it sent rather than
			// what it compressed; either takes the secret.
			ok = a.Verify(header, wire)
		}
		if !ok {
			m.rejected.WithLabelValues(id, "auth").Inc()
			apiError(w, http.StatusUnauthorized, "unauthorized", "authentication failed", nil)
			return
		}
		if h := a.Credential(); h != "" {
			r.Header.Del(h)
		}
	}
	var body any
	// Only JSON's own whitespace makes a body empty: other Unicode spaces
	// are no JSON, and jsonv refuses them.
	if len(bytes.Trim(raw, " \t\r\n")) > 0 {
		if body, err = jsonv.Decode(raw); err != nil {
			m.rejected.WithLabelValues(id, "parse").Inc()
			apiError(w, http.StatusBadRequest, "invalid_json", "the body is not valid JSON: "+err.Error(), nil)
			return
		}
	} else {
		raw = []byte("null")
	}
	msg := &flows.Message{ID: newID(), ReceivedAt: time.Now().UTC(), Attempt: 1, Revision: f.Revision, Body: body, Raw: raw,
		Headers: flatten(r.Header), Query: flatten(r.URL.Query()), Params: map[string]string{}}
	for _, p := range pathParams(t.Path) {
		msg.Params[p] = r.PathValue(p)
	}
	env := mappings.NewEnv(body, msg.Headers, mappings.Meta{ID: msg.ID, Flow: id, Revision: f.Revision, ReceivedAt: msg.ReceivedAt})
	env.Query, env.Params = msg.Query, msg.Params
	// A sync flow with dedup takes its token and claims its key in one
	// round trip when the limiter can (Redis): the limit is then checked
	// after the accept-time validate steps, at the claim.
	cl, _ := e.limiter.(ClaimLimiter)
	if cl != nil && (t.Mode != "sync" || f.Dedup == nil || f.RateLimit == nil) {
		cl = nil
	}
	var rlKey string
	if rl := f.RateLimit; rl != nil {
		key := "in:" + id // "out:" for calls (flows), so the two never share a bucket
		if rl.Key != nil {
			v, err := rl.Key.Eval(env)
			if err != nil {
				m.rejected.WithLabelValues(id, "rate_limit_key").Inc()
				apiError(w, http.StatusBadRequest, "bad_request", "rate limit key: "+err.Error(), nil)
				return
			}
			key += ":" + flows.Text(v)
		}
		rlKey = key
		if cl == nil {
			ok, wait, err := e.limiter.Allow(r.Context(), key, *rl)
			if !e.admit(w, f, ok, wait, err) {
				return
			}
		}
	}
	var state *flows.State
	if f.AcceptSteps > 0 {
		// Observed like every other step: the run that goes on after them
		// (a worker's, or the sync run's) starts past these steps.
		res := f.Run(r.Context(), msg, nil, f.AcceptSteps, flows.Deps{Observe: e.deps(f).Observe})
		if res.Err != nil {
			if se := new(flows.StepError); errors.As(res.Err, &se) && se.Class == flows.Validation {
				m.rejected.WithLabelValues(id, "validation").Inc()
			}
			e.answerFailure(w, res.Err)
			return
		}
		state = &res.State
	}
	var dedupKey string
	if f.Dedup != nil {
		if dedupKey, err = dedupKeyOf(f, env); err != nil {
			m.rejected.WithLabelValues(id, "dedup_key").Inc()
			apiError(w, http.StatusUnprocessableEntity, "validation_failed", err.Error(), nil)
			return
		}
	}
	if t.Mode == "sync" {
		e.runSync(w, r, lf, f, msg, state, raw, dedupKey, cl, rlKey)
		return
	}
	sm := &store.Message{ID: msg.ID, Flow: id, Revision: f.Revision, Status: store.Queued, Source: "http", DedupKey: dedupKey,
		ReceivedAt: msg.ReceivedAt, DueAt: msg.ReceivedAt, Body: raw, Headers: msg.Headers, Query: msg.Query, Params: msg.Params}
	if state != nil && state.Next > 0 {
		// Validate steps change nothing: the checkpoint needs only where to
		// resume, not a second copy of the body.
		sm.State, _ = json.Marshal(stateJSON{Next: state.Next})
	}
	ttl := time.Duration(0)
	if f.Dedup != nil {
		ttl = f.Dedup.TTL
	}
	existing, err := e.store.Accept(r.Context(), sm, ttl)
	if err != nil {
		e.log.Error("cannot store an accepted message", "flow", id, "key", sm.DedupKey, "error", err)
		m.rejected.WithLabelValues(id, "store").Inc()
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, "store_unavailable", "the message could not be stored; retry", nil)
		return
	}
	if existing != nil {
		m.duplicates.WithLabelValues(id).Inc()
		writeJSON(w, http.StatusOK, map[string]any{"id": existing.ID, "status": existing.Status, "duplicate": true})
		return
	}
	m.accepted.WithLabelValues(id).Inc()
	lf.pool.wake()
	writeJSON(w, http.StatusAccepted, map[string]any{"id": sm.ID, "status": store.Queued})
}

// dedupKeyOf is the dedup key of a message of f (which has dedup): the
// flow's id, a colon and the text of its key expression. Every trigger
// takes its keys from here. A key that is null or empty text is refused:
// all such messages would otherwise share the one key "<flow>:", and the
// second would pass for a duplicate of the first.
func dedupKeyOf(f *flows.Flow, env *mappings.Env) (string, error) {
	v, err := f.Dedup.Key.Eval(env)
	if err == nil && flows.Text(v) == "" {
		err = errors.New("it is empty")
	}
	if err != nil {
		return "", fmt.Errorf("the dedup key cannot be computed: %w", err)
	}
	return f.ID + ":" + flows.Text(v), nil
}

// admit answers a refused request (429, or 503 when a fail-closed limiter
// could not be asked) and reports whether the request may go on.
func (e *Engine) admit(w http.ResponseWriter, f *flows.Flow, ok bool, wait time.Duration, err error) bool {
	if err != nil {
		e.log.Warn("rate limiter unavailable", "flow", f.ID, "let_through", ok, "error", err)
		if !ok {
			e.metrics.rejected.WithLabelValues(f.ID, "rate_limiter_unavailable").Inc()
			w.Header().Set("Retry-After", "1")
			apiError(w, http.StatusServiceUnavailable, "rate_limiter_unavailable", "the rate limiter is unavailable; retry", nil)
			return false
		}
	}
	if !ok {
		e.metrics.rateLimited.WithLabelValues(f.ID).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		apiError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("more than %d requests per %s", f.RateLimit.Limit, f.RateLimit.Per), nil)
		return false
	}
	return true
}

// answerFailure answers a failed accept-time or sync run. It counts
// nothing: a failed accept-time step is a rejection, which its caller
// counts, while a sync run that fails was accepted (counted when it
// started), validate steps inside it included.
func (e *Engine) answerFailure(w http.ResponseWriter, err error) {
	var se *flows.StepError
	if !errors.As(err, &se) {
		apiError(w, http.StatusInternalServerError, "internal", err.Error(), nil)
		return
	}
	switch {
	case se.Class == flows.Validation:
		apiError(w, http.StatusUnprocessableEntity, "validation_failed", strings.Join(se.Errors, "; "), se.Errors)
	case se.Class == flows.Transient:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(max(se.RetryAfter, time.Second))))
		apiError(w, http.StatusServiceUnavailable, "upstream_unavailable", se.Error(), map[string]any{"step": se.Step})
	case errors.Is(se, connectors.ErrInvalidRequest):
		// The connection refused to send what the payload made of the
		// request (a path with dot segments, a line break in a header):
		// the sender's to fix, and no upstream answered.
		apiError(w, http.StatusUnprocessableEntity, "invalid_request", se.Error(), map[string]any{"step": se.Step})
	default:
		apiError(w, http.StatusBadGateway, "flow_failed", se.Error(), map[string]any{"step": se.Step})
	}
}

// runSync runs a sync flow inline. Its dedup key is claimed before the run,
// confirmed when the run succeeds (a duplicate then gets the cached
// response) and released when it fails, so the sender's retry runs again:
// as the same message, which makes none of the calls that succeeded again.
func (e *Engine) runSync(w http.ResponseWriter, r *http.Request, lf *liveFlow, f *flows.Flow, msg *flows.Message, state *flows.State, raw []byte, dedupKey string, cl ClaimLimiter, rlKey string) {
	id, m := f.ID, e.metrics
	ctx := r.Context()
	timeout := 30 * time.Second
	if t := f.Trigger.HTTP.Timeout; t != nil && t.D > 0 {
		timeout = t.D
	}
	var resumed *store.Message // the failed run this one resumes (see store.ClaimKey)
	if dedupKey != "" {
		// The claim lasts as long as the run may, not the dedup TTL:
		// a replica that dies mid-run leaves no journal record and no
		// confirmation, and its claim then blocks the sender's resends
		// only until it lapses. Finish keeps the key for the TTL.
		claimTTL := min(f.Dedup.TTL, timeout+claimSlack)
		var holder string
		var ok bool
		var err error
		if cl != nil {
			var allowed bool
			var wait time.Duration
			allowed, wait, holder, ok, err = cl.AllowClaim(ctx, rlKey, *f.RateLimit, dedupKey, msg.ID, claimTTL)
			switch {
			case err != nil && !allowed: // a fail-closed limiter out of reach
				// The script may have run all the same (its answer lost or
				// late): a claim it took would answer the sender's retry
				// 409 until it lapsed. Let it go.
				bg, key, mid := context.WithoutCancel(ctx), dedupKey, msg.ID
				e.background(func() { _ = e.store.ReleaseKey(bg, key, mid) })
				e.admit(w, f, false, wait, err)
				return
			case err != nil: // fail-open: the claim alone
				holder, ok, err = e.store.ClaimKey(ctx, dedupKey, msg.ID, claimTTL)
			case !e.admit(w, f, allowed, wait, nil):
				return
			}
		} else {
			holder, ok, err = e.store.ClaimKey(ctx, dedupKey, msg.ID, claimTTL)
		}
		if err != nil {
			// The claim may have landed all the same (a timeout after
			// Redis took it): let it go, or the retry would find it taken.
			bg, key, mid := context.WithoutCancel(ctx), dedupKey, msg.ID // the run goes on with these (fail-open)
			e.background(func() { _ = e.store.ReleaseKey(bg, key, mid) })
			if !e.dedupFailOpen {
				e.log.Warn("dedup unavailable; refusing the request", "flow", id, "key", dedupKey, "error", err)
				m.rejected.WithLabelValues(id, "dedup_unavailable").Inc()
				w.Header().Set("Retry-After", "5")
				apiError(w, http.StatusServiceUnavailable, "store_unavailable", "dedup is unavailable; retry", nil)
				return
			}
			// store.fail_open.dedup: run unchecked; a duplicate sent
			// during the outage runs again.
			e.log.Warn("dedup unavailable; running the request unchecked (store.fail_open.dedup)", "flow", id, "message", msg.ID, "key", dedupKey, "error", err)
			dedupKey, ok, holder = "", true, msg.ID
		}
		// A claim sent again by the client after a lost answer finds the
		// key held by this very message: it is this message's claim.
		ok = ok || holder == msg.ID
		if ok && holder != msg.ID {
			resumed = e.resume(ctx, msg, holder)
		}
		if !ok {
			m.duplicates.WithLabelValues(id).Inc()
			prev, err := e.store.Get(ctx, holder)
			if v, settling := e.settling.Load(holder); settling {
				prev, err = v.(*store.Message), nil
			}
			if err != nil || (prev.Status != store.Completed && prev.Status != store.Filtered) || prev.Response == nil {
				w.Header().Set("Retry-After", "1")
				apiError(w, http.StatusConflict, "in_progress", "the same request is being processed", map[string]any{"id": holder})
				return
			}
			resp, _ := decodeResponse(prev.Response)
			w.Header().Set("X-Conveyor-Duplicate", "true")
			writeResponse(w, &resp, prev.ID)
			return
		}
	}
	m.accepted.WithLabelValues(id).Inc()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deps := e.deps(f)
	memo := &flows.MemMemo{}
	deps.Memo = memo
	sm := &store.Message{ID: msg.ID, Flow: id, Revision: f.Revision, Source: "http", DedupKey: dedupKey, ReceivedAt: msg.ReceivedAt,
		Attempt: msg.Attempt, Body: raw, Headers: msg.Headers, Query: msg.Query, Params: msg.Params}
	if resumed != nil {
		if resumed.Revision != f.Revision && len(resumed.Memo) > 0 {
			// Saved since: the memo's steps are where the failed run's
			// revision had them (as for a replay on the current revision).
			e.remapMemo(ctx, resumed, f.Revision)
		}
		for k, raw := range resumed.Memo {
			if r, err := decodeResponse(raw); err == nil {
				_ = memo.Put(k, &r)
			}
		}
		sm.Attempts = resumed.Attempts
	}
	res := f.Run(ctx, msg, state, 0, deps)
	// Whether the flow's timeout ended the run is known now: the journal
	// write below may outlast the deadline of a run that failed in time.
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	var ttl time.Duration
	if f.Dedup != nil {
		ttl = f.Dedup.TTL
	}
	if res.Err != nil {
		sm.Status, sm.Error = store.Failed, res.Err.Error()
		a := store.Attempt{At: time.Now().UTC(), Error: sm.Error}
		if se := new(flows.StepError); errors.As(res.Err, &se) {
			a.Step, a.Class, sm.FailedStep = se.Step, string(se.Class), se.Step
		}
		sm.Attempts = append(slices.Clip(sm.Attempts), a)
		class := cmp.Or(a.Class, "internal")
		if timedOut {
			class = "timeout"
		}
		m.failed.WithLabelValues(id, class).Inc()
		for k, r := range memo.Entries() {
			if sm.Memo == nil {
				sm.Memo = map[string]json.RawMessage{}
			}
			sm.Memo[k], _ = jsonv.Marshal(storedResponse(r))
		}
		// Journaled, and the key released to this run, before the answer:
		// the sender's retry must find both to resume it (the same id, so
		// the same Idempotency-Keys, and the calls that succeeded answered
		// from the memo instead of made again). With a context of its own,
		// as the run's may be what ended (a timeout, a client gone).
		if err := e.store.Finish(context.WithoutCancel(ctx), sm, ttl); err != nil {
			e.log.Error("cannot journal a failed sync run; its retry runs anew", "flow", id, "message", sm.ID, "error", err)
			if dedupKey != "" {
				if err := e.store.ReleaseKey(context.WithoutCancel(ctx), dedupKey, msg.ID); err != nil {
					e.log.Error("cannot release a dedup key; the sender's retry waits until the claim lapses", "flow", id, "message", msg.ID, "key", dedupKey, "error", err)
				}
			}
		}
		w.Header().Set("X-Conveyor-Message-Id", sm.ID) // the journal's record, and the run a retry resumes
		if timedOut {
			// The flow's own timeout ended the run, not a target that
			// refused it: 504, as the trigger's timeout field says.
			apiError(w, http.StatusGatewayTimeout, "timeout", fmt.Sprintf("the flow did not finish within its timeout of %s: %s", timeout, sm.Error),
				map[string]any{"step": sm.FailedStep})
			return
		}
		e.answerFailure(w, res.Err)
		return
	}
	resp := res.Response
	if resp == nil {
		resp = &flows.Response{Status: http.StatusOK, Body: res.State.Body}
	}
	sm.Status = store.Completed
	if res.Outcome == flows.Filtered {
		sm.Status = store.Filtered
	}
	sm.Response, _ = jsonv.Marshal(storedResponse(resp))
	e.finishSync(sm, ttl)
	if sm.Status == store.Filtered { // as a worker counts it (process)
		m.filtered.WithLabelValues(id).Inc()
	} else {
		m.completed.WithLabelValues(id).Inc()
	}
	writeResponse(w, resp, msg.ID)
}

// resume makes msg the run id that failed before and released its dedup
// key to the sender's retry (see store.ClaimKey), and returns that run's
// record (nil when it is gone: the run then starts afresh under its id).
func (e *Engine) resume(ctx context.Context, msg *flows.Message, id string) *store.Message {
	msg.ID = id
	prev, err := e.store.Get(ctx, id)
	if err != nil || prev.Status != store.Failed {
		return nil
	}
	msg.ReceivedAt, msg.Attempt, msg.KeyGen = prev.ReceivedAt, prev.Attempt+1, keyGenerations(prev.Attempts)
	return prev
}

// claimSlack is how long a sync run's dedup claim outlives its timeout:
// the answer's journal write and confirmation land in the background.
const claimSlack = time.Minute

// finishSync journals a completed (or filtered) sync run and confirms its
// dedup key, in the background: the answer does not wait for the write.
// Until it lands the claim is held and the answer kept in memory, so a
// duplicate arriving meanwhile gets it. The price: a crash in the few
// milliseconds before the write forgets the key, and a later duplicate of
// that request runs again. A failed run is journaled, and its key
// released to it, before the answer (runSync), so its retry always runs,
// and resumes it.
func (e *Engine) finishSync(sm *store.Message, ttl time.Duration) {
	if sm.DedupKey != "" {
		e.settling.Store(sm.ID, sm) // duplicates get the cached answer meanwhile
	}
	e.background(func() {
		defer e.settling.Delete(sm.ID)
		if err := e.store.Finish(context.Background(), sm, ttl); err != nil {
			e.log.Error("cannot journal a sync message and settle its dedup key", "flow", sm.Flow, "message", sm.ID, "key", sm.DedupKey, "error", err)
		}
	})
}

// maxBackgroundWrites bounds the store writes nobody waits for (sync
// journals, completed messages) that may be under way at once. Each runs
// on its own goroutine: the store groups concurrent writes into one
// commit (bbolt's Batch, one Redis pipeline per script call), so the more
// wait together, the fewer commits; a fixed pool of writers capped every
// commit at the pool's size. The bound pushes back on requests and
// workers when the store falls behind, instead of piling up goroutines.
const maxBackgroundWrites = 2048

// background runs a store write without waiting for it; Shutdown waits
// for them once the trigger listener has finished its requests, before it
// closes the store.
func (e *Engine) background(write func()) {
	e.bgWrites.Add(1)
	e.writeSlots <- struct{}{}
	go func() {
		defer e.bgWrites.Done()
		defer func() { <-e.writeSlots }()
		write()
	}()
}

// storedResponse is r as the store keeps it: a memo entry, a checkpoint's
// answer, a sync run's answer. decodeResponse reads it back.
func storedResponse(r *flows.Response) map[string]any {
	return map[string]any{"status": r.Status, "headers": r.Headers, "body": r.Body}
}

func decodeResponse(raw json.RawMessage) (flows.Response, error) {
	v, err := jsonv.Decode(raw)
	if err != nil {
		return flows.Response{}, err
	}
	return responseOf(v), nil
}

func responseOf(v any) flows.Response {
	mv, _ := v.(map[string]any)
	resp := flows.Response{Status: http.StatusOK, Body: mv["body"], Headers: map[string]string{}}
	if s, ok := mv["status"].(int); ok {
		resp.Status = s
	}
	if h, ok := mv["headers"].(map[string]any); ok {
		for k, v := range h {
			resp.Headers[k] = flows.Text(v)
		}
	}
	return resp
}

func writeResponse(w http.ResponseWriter, resp *flows.Response, id string) {
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("X-Conveyor-Message-Id", id)
	if s, ok := resp.Body.(string); ok && w.Header().Get("Content-Type") != "" {
		w.WriteHeader(resp.Status)
		io.WriteString(w, s)
		return
	}
	writeJSON(w, resp.Status, resp.Body)
}

// newID returns a time-ordered unique message id.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

func flatten(h map[string][]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}
