package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// pool delivers one flow's queued messages: a dispatcher leases due
// messages up to the flow's concurrency and runs each on its own goroutine.
type pool struct {
	e       *Engine
	lf      *liveFlow
	wakeCh  chan struct{}
	doneCh  chan struct{}
	work    chan *store.Message // to an idle worker (see worker)
	stopCh  chan struct{}
	once    sync.Once
	started bool
	mu      sync.Mutex
}

func newPool(e *Engine, lf *liveFlow) *pool {
	return &pool{e: e, lf: lf, wakeCh: make(chan struct{}, 1), work: make(chan *store.Message), doneCh: make(chan struct{}, 1024), stopCh: make(chan struct{})}
}

func (p *pool) wake() {
	select {
	case p.wakeCh <- struct{}{}:
	default:
	}
}

func (p *pool) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return
	}
	p.started = true
	p.e.goLoop(p.dispatch)
}

func (p *pool) stop() { p.once.Do(func() { close(p.stopCh) }) }

const idlePoll = 200 * time.Millisecond

func (p *pool) dispatch() {
	inflight := 0
	for {
		select {
		case <-p.stopCh:
			for ; inflight > 0; inflight-- {
				<-p.doneCh
			}
			return
		default:
		}
		f := p.lf.cur.Load()
		limit := 4
		if f != nil {
			limit = f.Concurrency
		}
		leased := 0
		if free := limit - inflight; free > 0 && !p.lf.disabled.Load() {
			msgs, err := p.e.lease(p.lf.id, free)
			if err != nil {
				p.e.log.Error("cannot lease messages", "flow", p.lf.id, "error", err)
			}
			for i, m := range msgs {
				if !p.e.begin() {
					// Shutting down: the rest go back to the queue now. A
					// Redis lease outlives the process: another replica
					// could take them only after the lease timeout, and
					// each time as a delivery without an outcome.
					for _, rest := range msgs[i:] {
						rest.Status = store.Queued
						p.e.saveUntilStored(rest, "return a message to the queue")
					}
					break
				}
				inflight++
				leased++
				select {
				case p.work <- m: // an idle worker takes it
				default:
					go p.worker(m)
				}
			}
		}
		if leased > 0 && inflight < limit {
			continue // there may be more due right away
		}
		timer := time.NewTimer(idlePoll)
		select {
		case <-p.stopCh:
		case <-p.wakeCh:
		case <-p.doneCh:
			inflight--
		drain: // lease once for every slot that is free by now
			for {
				select {
				case <-p.doneCh:
					inflight--
				default:
					break drain
				}
			}
		case <-timer.C:
		}
		timer.Stop()
	}
}

// lease leases up to n due messages of flow. The messages the store
// dead-letters instead (see store.DeadLetteringLeaser) are counted and
// logged here, as the engine's own dead letters are in deadLetter.
func (e *Engine) lease(flow string, n int) ([]*store.Message, error) {
	dl, ok := e.store.(store.DeadLetteringLeaser)
	if !ok {
		return e.store.Lease(e.ctx, flow, time.Now(), n)
	}
	msgs, dead, err := dl.LeaseDeadLettering(e.ctx, flow, time.Now(), n)
	for _, id := range dead {
		e.metrics.deadLettered.WithLabelValues(flow).Inc()
		e.log.Error("message dead-lettered", "flow", flow, "message", id, "class", "lost",
			"error", "leased too many times without an outcome: its worker was lost each time")
	}
	return msgs, err
}

// workerIdle is how long a worker waits for its next message before it
// ends.
const workerIdle = 10 * time.Second

// worker processes m, then the messages the dispatcher hands it, until it
// has been idle for workerIdle or the pool stops. Workers outlive their
// message so that a busy flow does not start a goroutine per message and
// grow its stack again each time (a tenth of the delivery CPU), and each
// derives its calls' deadlines from its own context rather than all from
// the engine's, which would then track every call in flight in one map.
func (p *pool) worker(m *store.Message) {
	ctx, cancel := context.WithCancel(p.e.ctx)
	defer cancel()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		p.e.process(ctx, m)
		p.e.inflight.Done()
		p.doneCh <- struct{}{}
		idle.Reset(workerIdle)
		select {
		case m = <-p.work:
		case <-idle.C:
			return
		case <-p.stopCh:
			return
		}
	}
}

// stateJSON is flows.State as stored: body and vars as raw JSON, decoded
// with jsonv so that numbers keep every digit.
type stateJSON struct {
	Next     int             `json:"next"`
	Body     json.RawMessage `json:"body,omitempty"` // absent: the message's own body
	Vars     json.RawMessage `json:"vars"`
	Response json.RawMessage `json:"response,omitempty"`
	// Dates are where body and vars held dates, which JSON writes as
	// RFC 3339 text: decodeState makes them dates again, so that a retry
	// compares and formats them as the first try did. A path starts with
	// "body" or "vars"; an item of a list is named by its index.
	Dates [][]string `json:"dates,omitempty"`
}

// encodeState writes stateJSON's fields straight with jsonv: encoding/json
// would validate and compact the already encoded body once more.
func encodeState(s *flows.State) json.RawMessage {
	b := append(make([]byte, 0, 512), `{"next":`...)
	b = strconv.AppendInt(b, int64(s.Next), 10)
	if !s.BodyIsMessage { // absent: the message's own body (decodeState)
		b = appendJSONField(b, "body", s.Body)
	}
	b = appendJSONField(b, "vars", s.Vars)
	if s.Response != nil {
		b = appendJSONField(b, "response", storedResponse(s.Response))
	}
	var dates [][]string
	if !s.BodyIsMessage {
		dates = datePaths(s.Body, []string{"body"}, dates)
	}
	if dates = datePaths(s.Vars, []string{"vars"}, dates); len(dates) > 0 {
		b = appendJSONField(b, "dates", dates)
	}
	return append(b, '}')
}

// datePaths appends to out the path of every date in v, which is at path.
func datePaths(v any, path []string, out [][]string) [][]string {
	switch x := v.(type) {
	case time.Time:
		return append(out, slices.Clone(path))
	case map[string]any:
		for k, e := range x {
			out = datePaths(e, append(path, k), out)
		}
	case []any:
		for i, e := range x {
			out = datePaths(e, append(path, strconv.Itoa(i)), out)
		}
	}
	return out
}

// restoreDate makes the text at path in st (see stateJSON.Dates) the date
// it was written from.
func restoreDate(st *flows.State, path []string) {
	root := map[string]any{"body": st.Body, "vars": st.Vars}
	var cur any = root
	for i, k := range path {
		last := i == len(path)-1
		switch x := cur.(type) {
		case map[string]any:
			v, ok := x[k]
			if !ok {
				return
			}
			if last {
				x[k] = asDate(v)
			}
			cur = v
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 || n >= len(x) {
				return
			}
			if last {
				x[n] = asDate(x[n])
			}
			cur = x[n]
		default:
			return
		}
	}
	st.Body = root["body"] // a body that is itself a date
}

// asDate is v, RFC 3339 text, as the date it was written from.
func asDate(v any) any {
	if s, ok := v.(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return v
}

// appendJSONField appends ,"name":v. A NaN or an infinity, which JSON
// cannot hold and an expression can compute (a division by zero), is
// written as null, as JSON.stringify writes it, and the values beside it
// are kept: a checkpoint holding null for all the vars lost them for the
// retry. Any other value jsonv cannot encode (none that a run produces)
// is written as null rather than breaking the record.
func appendJSONField(b []byte, name string, v any) []byte {
	b = append(append(append(b, ",\""...), name...), "\":"...)
	out, err := jsonv.Append(b, v)
	if err != nil {
		out, err = jsonv.Append(b, finite(v))
	}
	if err != nil {
		return append(b, "null"...)
	}
	return out
}

// finite returns v with every NaN and infinity in it replaced by nil. It
// copies the objects and lists on the way: they may be shared.
func finite(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = finite(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = finite(e)
		}
		return out
	}
	return v
}

// appendTrace encodes a run's trace as encoding/json would encode
// []flows.TraceEntry, with the step outputs through jsonv.
func appendTrace(b []byte, trace []flows.TraceEntry) json.RawMessage {
	if trace == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, t := range trace {
		if i > 0 {
			b = append(b, ',')
		}
		b, _ = jsonv.Append(append(b, `{"step":`...), t.Step)
		if t.Name != "" {
			b, _ = jsonv.Append(append(b, `,"name":`...), t.Name)
		}
		b, _ = jsonv.Append(append(b, `,"kind":`...), t.Kind)
		b, _ = jsonv.Append(append(b, `,"outcome":`...), t.Outcome)
		b = strconv.AppendFloat(append(b, `,"duration_ms":`...), t.Duration, 'f', -1, 64)
		if t.Output != nil {
			b = appendJSONField(b, "output", t.Output)
		}
		if t.Error != "" {
			b, _ = jsonv.Append(append(b, `,"error":`...), t.Error)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// decodeState reads a stored checkpoint; messageBody reports that it
// holds no body of its own (the message's body applies).
func decodeState(raw json.RawMessage) (st *flows.State, messageBody bool, err error) {
	var sj stateJSON
	if err := json.Unmarshal(raw, &sj); err != nil {
		return nil, false, err
	}
	st = &flows.State{Next: sj.Next, Vars: map[string]any{}}
	messageBody = len(sj.Body) == 0
	if !messageBody {
		if st.Body, err = jsonv.Decode(sj.Body); err != nil {
			return nil, false, err
		}
	}
	if len(sj.Vars) > 0 {
		v, err := jsonv.Decode(sj.Vars)
		if err != nil {
			return nil, false, err
		}
		if mv, ok := v.(map[string]any); ok {
			st.Vars = mv
		}
	}
	if len(sj.Response) > 0 {
		r, err := decodeResponse(sj.Response)
		if err != nil {
			return nil, false, err
		}
		st.Response = &r
	}
	for _, p := range sj.Dates {
		if len(p) > 0 {
			restoreDate(st, p)
		}
	}
	return st, messageBody, nil
}

// storeMemo keeps a message's memo in its stored record. A succeeded
// effect is written, with the latest checkpoint, before the next effect
// starts (Flush) or with the run's outcome (saveUntilStored, retried until it
// lands): no effect starts before the ones before it are durable, and a
// flow of one call costs one write per run instead of two.
type storeMemo struct {
	e     *Engine
	m     *store.Message
	mu    sync.Mutex
	ctx   context.Context
	dirty bool // a Put not yet written
}

func (s *storeMemo) Get(key string) (*flows.Response, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, ok := s.m.Memo[key]
	if !ok {
		return nil, false
	}
	r, err := decodeResponse(raw)
	if err != nil {
		return nil, false
	}
	return &r, true
}

func (s *storeMemo) Put(key string, r *flows.Response) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := jsonv.Marshal(storedResponse(r))
	if err != nil {
		return err
	}
	if s.m.Memo == nil {
		s.m.Memo = map[string]json.RawMessage{}
	}
	s.m.Memo[key] = raw
	s.dirty = true
	return nil
}

// Flush implements flows.MemoFlusher.
func (s *storeMemo) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	// Never interrupted by shutdown: the effects already happened.
	if err := s.e.store.Save(context.WithoutCancel(s.ctx), s.m); err != nil {
		return retryLater{err} // the store's, not the target's: no attempt counted
	}
	s.dirty = false
	return nil
}

// deps are the outside world of a run of f.
func (e *Engine) deps(f *flows.Flow) flows.Deps {
	return flows.Deps{
		Caller:     e,
		Publisher:  e,
		Limiter:    e.limiter,
		Aggregator: e.aggregator,
		Logger:     slogLogger{e.log},
		Trace:      true,
		Observe: func(step, kind string, d time.Duration, err error) {
			e.metrics.stepLatency.WithLabelValues(f.ID, step, kind).Observe(d.Seconds())
		},
	}
}

// Call routes an outbound call to its connection.
func (e *Engine) Call(ctx context.Context, req flows.Request) (*flows.Response, error) {
	e.mu.RLock()
	c := e.conns[req.Connection]
	e.mu.RUnlock()
	if c == nil {
		return nil, errors.New("connection " + req.Connection + " is not configured")
	}
	if req.Body == nil && len(req.RawJSON) > 0 {
		// A deferred body (flows.Message.BodyDeferred): decoded here for
		// the connectors that do not send raw JSON as it is.
		if _, raw := c.(connectors.RawJSONSender); !raw {
			body, err := jsonv.Decode(req.RawJSON)
			if err != nil {
				return nil, fmt.Errorf("the stored body is unreadable: %w", err)
			}
			req.Body = body
		}
	}
	return c.Call(ctx, req)
}

// process runs one leased message and records the outcome: completed,
// retried later, or dead-lettered with its whole history.
func (e *Engine) process(ctx context.Context, m *store.Message) {
	f, err := e.flowFor(m.Flow, m.Revision)
	if errors.As(err, new(retryLater)) {
		e.log.Error("cannot load the message's flow; retrying later", "flow", m.Flow, "message", m.ID, "error", err)
		e.postpone(m)
		return
	}
	if err != nil {
		e.deadLetter(m, "", "permanent", err.Error())
		return
	}
	var state *flows.State
	messageBody := false
	if len(m.State) > 0 {
		if state, messageBody, err = decodeState(m.State); err != nil {
			e.deadLetter(m, "", "permanent", "stored checkpoint unreadable: "+err.Error())
			return
		}
	}
	// A flow that never reads the body passes it on as stored, undecoded.
	var body any
	deferred := !f.ReadsBody() && len(m.Body) > 0 && !bytes.Equal(bytes.TrimSpace(m.Body), []byte("null"))
	if !deferred {
		if body, err = jsonv.Decode(m.Body); err != nil {
			e.deadLetter(m, "", "permanent", "stored body unreadable: "+err.Error())
			return
		}
	}
	if messageBody {
		state.Body, state.BodyIsMessage = body, true // a checkpoint that did not change the body
	}
	m.Attempt++
	runCtx, stopBeat := e.heartbeat(ctx, m)
	memo := &storeMemo{e: e, m: m, ctx: runCtx}
	deps := e.deps(f)
	deps.Memo = memo
	deps.Checkpoint = func(s flows.State) error {
		memo.mu.Lock()
		m.State = encodeState(&s)
		memo.mu.Unlock()
		return nil
	}
	msg := &flows.Message{ID: m.ID, ReceivedAt: m.ReceivedAt, Attempt: m.Attempt, Revision: f.Revision, Body: body, Raw: m.Body,
		BodyDeferred: deferred, Headers: m.Headers, Query: m.Query, Params: m.Params, KeyGen: keyGenerations(m.Attempts)}
	var wmFrom []byte // the stored watermark this run's window starts at (nil: none yet)
	if f.Watermark != nil {
		if wmFrom, msg.Watermark, err = e.runWatermark(ctx, f.ID, m); err != nil {
			stopBeat()
			e.log.Error("cannot read the watermark; retrying later", "flow", f.ID, "message", m.ID, "error", err)
			m.Attempt--
			e.postpone(m)
			return
		}
	}
	res := f.Run(runCtx, msg, state, 0, deps)
	if stopBeat() {
		// Another replica took the message over (this one could not renew
		// its lease in time) and runs it now: its outcome is that one's to
		// record. This run was cancelled at its next step.
		e.log.Warn("lease lost to another replica; leaving the message to it", "flow", m.Flow, "message", m.ID)
		return
	}
	if res.HasWatermark {
		e.advanceWatermark(context.WithoutCancel(ctx), f.ID, m.ID, wmFrom, res.Watermark)
	}
	m.Trace = appendTrace(nil, res.Trace)
	// A run that did not finish keeps the state of its last checkpoint
	// (m.State, see deps.Checkpoint), taken between top-level steps: its
	// retry resumes there, with the body and vars as they were. The
	// state where it failed may be halfway through a choice or a split.
	switch res.Outcome {
	case flows.Completed, flows.Filtered:
		m.State = encodeState(&res.State)
		m.Status, m.Error, m.FailedStep = store.Completed, "", ""
		if res.Outcome == flows.Filtered {
			m.Status = store.Filtered
			e.metrics.filtered.WithLabelValues(m.Flow).Inc()
		} else {
			e.metrics.completed.WithLabelValues(m.Flow).Inc()
		}
		// Not waited for: the slot goes to the next message at once. Until
		// the write lands the message stays leased. The write carries the
		// memo of the last effects: a crash before it lands runs the
		// message again and repeats those (with the same Idempotency-Key),
		// exactly as a crash while a worker waited for the write would.
		e.background(func() { e.saveUntilStored(m, "record a completed message") })
		return
	}
	var se *flows.StepError
	if !errors.As(res.Err, &se) {
		se = &flows.StepError{Class: flows.Permanent, Err: res.Err}
	}
	if ctx.Err() != nil {
		// Shutdown interrupted the run: not the target's fault; requeue
		// without counting the attempt.
		m.Attempt--
		m.Status, m.DueAt = store.Queued, time.Now()
		e.saveUntilStored(m, "requeue an interrupted message")
		return
	}
	if errors.As(res.Err, new(retryLater)) {
		// The runtime's own (the store or a fail-closed rate limiter out
		// of reach): the message waits, without counting the attempt.
		e.log.Warn("step cannot run yet; postponing the message", "flow", m.Flow, "message", m.ID, "step", se.Step, "error", se.Error())
		m.Attempt--
		e.postpone(m)
		return
	}
	m.Attempts = append(m.Attempts, store.Attempt{At: time.Now().UTC(), Step: se.Step, Class: string(se.Class), Error: se.Error()})
	// The policy is the failing step's, and so is the budget: the
	// attempts of that step, not the message's runs (m.Attempt, which
	// earlier steps' retries raised too).
	policy, n := f.PolicyFor(se.Step), stepAttempts(m, se.Step)
	if se.Class == flows.Transient && n < policy.Attempts {
		delay := jitter(policy.Delay(n + 1))
		delay = max(delay, se.RetryAfter)
		m.Status, m.DueAt, m.FailedStep, m.Error = store.Retrying, time.Now().Add(delay), se.Step, se.Error()
		e.metrics.retried.WithLabelValues(m.Flow).Inc()
		e.log.Warn("step failed; will retry", "flow", m.Flow, "message", m.ID, "step", se.Step, "attempt", m.Attempt, "step_attempt", n,
			"retry_in", delay.String(), "error", se.Error())
		e.saveUntilStored(m, "schedule a retry")
		return
	}
	e.deadLetter(m, se.Step, string(se.Class), se.Error())
}

// stepAttempts counts the failed attempts of step (all items of a split
// step together, see flows.StepOf) since m's retry budget last started
// afresh, the one just recorded included. Those are the last m.Attempt
// entries of m.Attempts: each counted run that failed added one (a run
// that shutdown interrupted, or that was postponed, is not counted and
// adds none), an entry added otherwise ends the message as a dead letter,
// and a replay, which keeps the history, starts m.Attempt again at 0.
func stepAttempts(m *store.Message, step string) int {
	step = flows.StepOf(step)
	n := 0
	for _, a := range m.Attempts[min(max(0, len(m.Attempts)-m.Attempt), len(m.Attempts)):] {
		if flows.StepOf(a.Step) == step {
			n++
		}
	}
	return n
}

// keyGenerations says which steps call with a renewed idempotency key
// (flows.Message.KeyGen). A key is renewed when the target refused the
// call under it (a permanent failure: 4xx, a redirect, or a request never
// sent) and every earlier attempt under that key was refused too. The
// target then did nothing under the key, and a target that keeps the
// first answer per key (as payment and ERP APIs do) would give its
// refusal back to every later try, a replay after the operator fixed the
// cause included. Once an attempt's outcome was unknown under a key (a
// timeout, a reset, a 5xx: the target may have done the work), the key
// is kept for good: a new one could do the work twice. So is a key the
// target answered 409: that is how an idempotency layer says the key is
// in use (its first request still running, or done under a run this
// history has no record of, one a crash cut short).
func keyGenerations(attempts []store.Attempt) map[string]int {
	var gen map[string]int
	var unknown map[string]bool
	for _, a := range attempts {
		switch {
		case a.Step == "" || unknown[a.Step]:
		case a.Class != string(flows.Permanent) || flows.AnsweredStatus(a.Error) == http.StatusConflict:
			if unknown == nil {
				unknown = map[string]bool{}
			}
			unknown[a.Step] = true
		default:
			if gen == nil {
				gen = map[string]int{}
			}
			gen[a.Step] = max(gen[a.Step], 1) + 1
		}
	}
	return gen
}

// saveUntilStored records the outcome of a run (what: for the log),
// trying again until the store takes it or the engine shuts down. A
// completed message's record carries the memo of the run's last effects,
// and a message left without it runs again; a retry or a dead letter not
// recorded would leave the message leased, and the embedded store's
// leases last until a restart.
func (e *Engine) saveUntilStored(m *store.Message, what string) {
	wait, most := 100*time.Millisecond, 5*time.Second
	if l, ok := e.store.(interface{ LeaseTimeout() time.Duration }); ok {
		// Tried at least every quarter lease: once Redis is back, other
		// replicas wait a lease timeout before they take leases over (see
		// store.Redis.Lease), and this write must land before.
		most = min(most, max(l.LeaseTimeout()/4, 10*time.Millisecond))
	}
	for {
		err := e.store.Save(context.WithoutCancel(e.ctx), m)
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrLeaseLost) {
			// Another replica took the message over (or an earlier try of
			// this save landed): its outcome is that one's to record.
			e.log.Warn("lease lost; not recording this run's outcome", "flow", m.Flow, "message", m.ID)
			return
		}
		e.log.Error("cannot "+what+"; trying again", "flow", m.Flow, "message", m.ID, "error", err)
		select {
		case <-e.ctx.Done():
			return // left leased; the next start runs it again (with the memo it had)
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}

// postpone puts m back in the queue for a few seconds, without counting
// an attempt: what failed is not the target's doing.
func (e *Engine) postpone(m *store.Message) {
	m.Status, m.DueAt = store.Retrying, time.Now().Add(postponeFor)
	e.saveUntilStored(m, "postpone a message")
}

const postponeFor = 5 * time.Second

// retryLater is an error of the runtime's own (the store, no live
// revision) that may pass: the message waits rather than dead-letters.
type retryLater struct{ error }

func (r retryLater) Unwrap() error { return r.error }

// heartbeat renews m's lease every quarter of the lease timeout while it
// is processed, for stores whose leases expire (Redis: otherwise another
// replica takes a message over once it runs longer than the timeout). A
// renewal that fails is tried again soon rather than a quarter later, so
// one slow failure (a command timing out in a failover) costs no lease.
// It returns the context to run m under, cancelled when the lease is lost
// to another replica or could not be renewed for half the lease timeout,
// and a function that stops the renewals and reports whether the lease
// was lost.
func (e *Engine) heartbeat(ctx context.Context, m *store.Message) (context.Context, func() (lost bool)) {
	t, ok := e.store.(interface {
		Touch(context.Context, string) error
		LeaseTimeout() time.Duration
	})
	if !ok {
		return ctx, func() bool { return false }
	}
	ctx, cancel := context.WithCancel(ctx)
	var lost atomic.Bool
	stop := make(chan struct{})
	var once sync.Once
	go func() {
		lease := t.LeaseTimeout()
		wait := time.NewTimer(lease / 4)
		defer wait.Stop()
		renewed := time.Now() // when the lease was last known to be ours
		for {
			select {
			case <-stop:
				return
			case <-wait.C:
			}
			asked := time.Now() // the store counts the lease from its answer, later than this
			err := t.Touch(context.Background(), m.ID)
			if err == nil {
				renewed = asked
				wait.Reset(lease / 4)
				continue
			}
			select {
			case <-stop: // saved meanwhile
			default:
				e.log.Warn("cannot renew a lease", "flow", m.Flow, "message", m.ID, "error", err)
			}
			// Not renewed for half a lease (Redis out of reach): the lease
			// lapses before the next renewal or two could land, and another
			// replica then takes the message over. Stop before the next
			// step rather than run it beside that replica.
			if errors.Is(err, store.ErrLeaseLost) || time.Since(renewed) > lease/2 {
				lost.Store(true)
				cancel()
				return
			}
			wait.Reset(min(lease/20, time.Second))
		}
	}()
	return ctx, func() bool {
		once.Do(func() { close(stop) })
		cancel()
		return lost.Load()
	}
}

// jitter is "full jitter": a random wait between zero and d, so retries
// of many messages spread out instead of arriving together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

func (e *Engine) deadLetter(m *store.Message, step, class, msg string) {
	if len(m.Attempts) == 0 || m.Attempts[len(m.Attempts)-1].Error != msg {
		m.Attempts = append(m.Attempts, store.Attempt{At: time.Now().UTC(), Step: step, Class: class, Error: msg})
	}
	m.Status, m.FailedStep, m.Error = store.Dead, step, msg
	e.metrics.deadLettered.WithLabelValues(m.Flow).Inc()
	e.log.Error("message dead-lettered", "flow", m.Flow, "message", m.ID, "step", step, "class", class, "attempts", m.Attempt, "error", msg)
	e.saveUntilStored(m, "dead-letter a message")
}

// watermarkPin is the memo key under which a message of a watermark flow
// keeps the stored watermark its first run started from.
func watermarkPin(m *store.Message) string { return m.Flow + ":" + m.ID + ":watermark" }

// runWatermark returns the watermark a run of m starts from: stored as
// raw (nil: none yet, the flow's initial value) and decoded as v. The
// first run of m reads the stored watermark and pins it in m's memo;
// its retries and replays read the pin, so they work through the same
// window as the memoized calls they repeat (the pull that fed the first
// run), and advanceWatermark can tell whether a later run has moved the
// watermark on meanwhile.
func (e *Engine) runWatermark(ctx context.Context, flow string, m *store.Message) (raw []byte, v any, err error) {
	var pin struct {
		Stored json.RawMessage `json:"stored,omitempty"`
	}
	if p, ok := m.Memo[watermarkPin(m)]; ok && json.Unmarshal(p, &pin) == nil {
		raw = pin.Stored
	} else {
		if raw, err = e.store.GetMeta(ctx, "watermark/"+flow); err != nil {
			return nil, nil, err
		}
		// Built by hand: json.Marshal would escape & < > in the stored
		// bytes, and the pin must hold them as stored to compare with
		// them (advanceWatermark).
		p := json.RawMessage(`{}`)
		if raw != nil {
			p = append(append([]byte(`{"stored":`), raw...), '}')
		}
		if m.Memo == nil {
			m.Memo = map[string]json.RawMessage{}
		}
		m.Memo[watermarkPin(m)] = p
	}
	if raw == nil {
		return nil, nil, nil
	}
	if v, err = jsonv.Decode(raw); err != nil {
		return nil, nil, fmt.Errorf("stored watermark: %w", err)
	}
	return raw, v, nil
}

// advanceWatermark stores next, the watermark a finished run of message id
// computed, if the stored watermark is still from, the one the run started
// from. Otherwise a later run has moved it on (this run is a retry or
// replay of an older window): next would take the watermark back and make
// the next polls pull again what those runs pulled, so the newer one stays.
// The store compares and writes in one step, so replicas sharing a Redis
// store cannot interleave between the two.
func (e *Engine) advanceWatermark(ctx context.Context, flow, id string, from []byte, next any) {
	raw, err := jsonv.Marshal(next)
	if err == nil {
		var ok bool
		if ok, err = e.store.SwapMeta(ctx, "watermark/"+flow, from, raw); err == nil && !ok {
			e.log.Info("the watermark moved on since this run started; keeping the newer one", "flow", flow, "message", id,
				"run_started_at", string(from), "run_ended_at", string(raw))
		}
	}
	if err != nil {
		e.log.Error("cannot store the watermark; the next run repeats this window", "flow", flow, "message", id, "error", err)
	}
}
