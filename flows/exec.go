package flows

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

type step struct {
	path, kind, name string
	at               dsl.Pos
	rules            []rule
	mapping          *mapNode
	sets             []setter
	cond             *mappings.Program
	branches         []branch
	split            *splitSpec
	call             *callSpec
	publish          *publishSpec
	respond          *respondSpec
	log              *logSpec
	aggregate        *aggregateSpec
}

type rule struct {
	prog    *mappings.Program
	message string
}

type setter struct {
	path []string
	prog *mappings.Program
}

type branch struct {
	when  *mappings.Program // nil: otherwise
	steps []*step
}

type splitSpec struct {
	items *mappings.Program
	as    string
	steps []*step
}

type namedProg struct {
	name string
	prog *mappings.Program
}

type pathPart struct {
	lit  string
	prog *mappings.Program
}

type callSpec struct {
	connection, method, as string
	path                   []pathPart
	query, headers         []namedProg
	body                   *mappings.Program
	sendBody               bool
	rateLimit              *RateLimit
	timeout                time.Duration
	accept                 []int
	sql                    string
	params                 []*mappings.Program
}

type publishSpec struct {
	topic, connection string
	body              *mappings.Program
}

type aggregateSpec struct {
	key, item *mappings.Program
	size      int
	within    time.Duration
	topic     string
}

type respondSpec struct {
	status, body *mappings.Program
	headers      []namedProg
}

type logSpec struct {
	level string
	msg   *mappings.Program
}

type mapNode struct {
	use    *mapNode // a mapping file's node the fields start from
	prog   *mappings.Program
	fields []mapField
	items  []mapNode
	list   bool
}

type mapField struct {
	key   string
	value mapNode
}

// Outcome is how a run ended.
type Outcome string

// The outcomes of a run.
const (
	Completed Outcome = "completed"
	Filtered  Outcome = "filtered"
	Rejected  Outcome = "rejected" // validation failed: never retried
	Failed    Outcome = "failed"   // see Result.Err for transient or permanent
)

// Class says whether a failure is worth retrying.
type Class string

// The classes of failure.
const (
	Validation Class = "validation"
	Transient  Class = "transient"
	Permanent  Class = "permanent"
)

// StepError is a failed step.
type StepError struct {
	Class      Class
	Step       string // path such as "3" or "4.1.2"
	Kind       string
	Errors     []string // validation: every failed rule's message
	RetryAfter time.Duration
	Err        error
}

func (e *StepError) Error() string {
	if e.Class == Validation {
		return fmt.Sprintf("step %s (%s): %s", e.Step, e.Kind, strings.Join(e.Errors, "; "))
	}
	return fmt.Sprintf("step %s (%s): %v", e.Step, e.Kind, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// TraceEntry is what one step did, for dry runs and message journals.
type TraceEntry struct {
	Step     string  `json:"step"`
	Name     string  `json:"name,omitempty"`
	Kind     string  `json:"kind"`
	Outcome  string  `json:"outcome"`
	Duration float64 `json:"duration_ms"`
	Output   any     `json:"output,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// Result is the end of a run.
type Result struct {
	Outcome  Outcome
	State    State // where the message stands; on failure, where a retry resumes
	Err      error // a *StepError when Outcome is Rejected or Failed
	Trace    []TraceEntry
	Response *Response // set by respond steps
	// Watermark is the value a completed run of a watermark flow leaves
	// for the next one (HasWatermark tells a nil value from none).
	Watermark    any
	HasWatermark bool
}

// run carries one message through the flow.
type run struct {
	f     *Flow
	ctx   context.Context
	deps  Deps
	env   *mappings.Env
	msg   *Message
	res   *Result
	split string // "[i]" while inside a split item, for idempotency keys
	// pristine: the body is still the message's own (see State.BodyIsMessage)
	pristine bool
}

// Run runs msg through the flow from state (nil: from the start, with the
// message body) up to, not including, top-level step until (0: the end).
func (f *Flow) Run(ctx context.Context, msg *Message, state *State, until int, deps Deps) *Result {
	if deps.Memo == nil {
		deps.Memo = &MemMemo{}
	}
	st := State{Body: msg.Body, Vars: map[string]any{}, BodyIsMessage: true}
	if state != nil {
		st = *state
		if st.Vars == nil {
			st.Vars = map[string]any{}
		}
	}
	if until <= 0 || until > len(f.steps) {
		until = len(f.steps)
	}
	env := mappings.NewEnv(st.Body, msg.Headers, mappings.Meta{ID: msg.ID, Flow: f.ID, Revision: msg.Revision, ReceivedAt: msg.ReceivedAt, Attempt: msg.Attempt})
	if msg.Query != nil {
		env.Query = msg.Query
	}
	if msg.Params != nil {
		env.Params = msg.Params
	}
	env.Vars = st.Vars
	if f.Watermark != nil && state == nil {
		wm := msg.Watermark
		if wm == nil && f.Watermark.Initial != nil {
			v, err := f.Watermark.Initial.Eval(env)
			if err != nil {
				return &Result{Outcome: Failed, Err: &StepError{Class: Permanent, Step: "watermark", Kind: "watermark", Err: err}, State: st}
			}
			wm = v
		}
		env.Vars["watermark"] = wm
	}
	r := &run{f: f, ctx: ctx, deps: deps, env: env, msg: msg, res: &Result{Outcome: Completed, Response: st.Response}, pristine: st.BodyIsMessage}
	for i := st.Next; i < until; i++ {
		if err := ctx.Err(); err != nil {
			r.fail(&StepError{Class: Transient, Step: f.steps[i].path, Kind: f.steps[i].kind, Err: err}, i)
			return r.res
		}
		var t0 time.Time
		if deps.Observe != nil {
			t0 = time.Now()
		}
		stop, err := r.step(f.steps[i])
		if deps.Observe != nil {
			deps.Observe(f.steps[i].path, f.steps[i].kind, time.Since(t0), err)
		}
		if err != nil {
			r.moreFailedRules(err, i+1, until)
			r.fail(err, i)
			return r.res
		}
		if stop {
			r.res.Outcome = Filtered
			r.res.State = State{Next: len(f.steps), Body: env.Body, Vars: env.Vars, Response: r.res.Response, BodyIsMessage: r.pristine}
			r.nextWatermark()
			return r.res
		}
		if deps.Checkpoint != nil {
			cp := State{Next: i + 1, Body: env.Body, Vars: env.Vars, Response: r.res.Response, BodyIsMessage: r.pristine}
			if err := deps.Checkpoint(cp); err != nil {
				r.fail(&StepError{Class: Transient, Step: f.steps[i].path, Kind: "checkpoint", Err: err}, i+1)
				return r.res
			}
		}
	}
	r.res.State = State{Next: until, Body: env.Body, Vars: env.Vars, Response: r.res.Response, BodyIsMessage: r.pristine}
	if until == len(f.steps) {
		r.nextWatermark()
	}
	return r.res
}

// nextWatermark evaluates the watermark a finished run (completed or
// filtered) leaves for the next one.
func (r *run) nextWatermark() {
	w := r.f.Watermark
	if w == nil || w.Next == nil {
		return
	}
	v, err := w.Next.Eval(r.env)
	if err != nil {
		r.fail(&StepError{Class: Permanent, Step: "watermark", Kind: "watermark", Err: err}, len(r.f.steps))
		return
	}
	r.res.Watermark, r.res.HasWatermark = v, true
}

// Steps is the number of top-level steps.
func (f *Flow) Steps() int { return len(f.steps) }

// Connections lists, sorted and once each, the connections the flow's
// calls and publications may use, in any branch.
func (f *Flow) Connections() []string {
	var out []string
	var walk func([]*step)
	walk = func(steps []*step) {
		for _, s := range steps {
			switch {
			case s.call != nil:
				out = append(out, s.call.connection)
			case s.publish != nil && s.publish.connection != "":
				out = append(out, s.publish.connection)
			}
			for _, b := range s.branches {
				walk(b.steps)
			}
			if s.split != nil {
				walk(s.split.steps)
			}
		}
	}
	walk(f.steps)
	slices.Sort(out)
	return slices.Compact(out)
}

// moreFailedRules adds to err, when a validate step failed, the failed
// rules of the validate steps right after it (up to until): the sender
// hears every rule it broke at once, not one step per round trip.
// Validate steps change nothing, so running them past a failure is safe.
func (r *run) moreFailedRules(err error, from, until int) {
	var se *StepError
	if !errors.As(err, &se) || se.Class != Validation {
		return
	}
	for j := from; j < until && r.f.steps[j].kind == "validate"; j++ {
		var more *StepError
		if _, err := r.step(r.f.steps[j]); errors.As(err, &more) && more.Class == Validation {
			se.Errors = append(se.Errors, more.Errors...)
		}
	}
}

func (r *run) fail(err error, next int) {
	var se *StepError
	if !errors.As(err, &se) {
		se = &StepError{Class: Permanent, Err: err}
	}
	r.res.Err = se
	r.res.Outcome = Failed
	if se.Class == Validation {
		r.res.Outcome = Rejected
	}
	// The state where the run stopped, for reports. It is no resume
	// point: a step that failed inside nested steps (choice, split) may
	// have changed the body on the way. A retry resumes from the last
	// checkpoint (Deps.Checkpoint), taken between top-level steps.
	r.res.State = State{Next: next, Body: r.env.Body, Vars: r.env.Vars, Response: r.res.Response, BodyIsMessage: r.pristine}
}

// steps runs a nested list; stop is true when a filter ended the message.
func (r *run) steps(list []*step) (bool, error) {
	for _, s := range list {
		if stop, err := r.step(s); err != nil || stop {
			return stop, err
		}
	}
	return false, nil
}

// keepsBody are the step kinds that never change the body.
var keepsBody = map[string]bool{"validate": true, "filter": true, "choice": true, "call": true, "publish": true,
	"respond": true, "aggregate": true, "log": true}

func (r *run) step(s *step) (stop bool, err error) {
	if !keepsBody[s.kind] {
		r.pristine = false
	}
	var start time.Time
	var out any
	outcome := "ok"
	if r.deps.Trace {
		start = time.Now()
		defer func() {
			e := TraceEntry{Step: s.path + r.split, Name: s.name, Kind: s.kind, Outcome: outcome, Duration: float64(time.Since(start).Microseconds()) / 1000}
			if r.deps.TraceOutputs {
				e.Output = out
			}
			if err != nil {
				e.Outcome, e.Error = "failed", err.Error()
				var se *StepError
				if errors.As(err, &se) && se.Class == Validation {
					e.Outcome = "rejected"
					if r.deps.TraceOutputs {
						e.Output = se.Errors
					}
				}
			}
			if stop && err == nil {
				e.Outcome = "filtered"
			}
			r.res.Trace = append(r.res.Trace, e)
		}()
	}
	fail := func(class Class, err error) error {
		var se *StepError
		if errors.As(err, &se) {
			return err
		}
		return &StepError{Class: class, Step: s.path + r.split, Kind: s.kind, Err: err}
	}
	env := r.env
	switch s.kind {
	case "validate":
		var failed []string
		for _, rl := range s.rules {
			v, err := rl.prog.Eval(env)
			if err != nil || v != true {
				failed = append(failed, rl.message)
			}
		}
		if len(failed) > 0 {
			return false, &StepError{Class: Validation, Step: s.path + r.split, Kind: s.kind, Errors: failed}
		}
	case "map":
		v, err := s.mapping.eval(env)
		if err != nil {
			return false, fail(Permanent, err)
		}
		env.Body, out = v, v
	case "set":
		changes := map[string]any{}
		for _, st := range s.sets {
			v, err := st.prog.Eval(env)
			if err != nil {
				return false, fail(Permanent, err)
			}
			if err := assign(env, st.path, v); err != nil {
				return false, fail(Permanent, err)
			}
			changes[strings.Join(st.path, ".")] = v
		}
		out = changes
	case "filter":
		v, err := s.cond.Eval(env)
		if err != nil {
			return false, fail(Permanent, err)
		}
		return v != true, nil
	case "choice":
		for i, b := range s.branches {
			if b.when != nil {
				v, err := b.when.Eval(env)
				if err != nil {
					return false, fail(Permanent, err)
				}
				if v != true {
					continue
				}
			}
			outcome = fmt.Sprintf("branch %d", i+1)
			return r.steps(b.steps)
		}
		outcome = "no branch"
	case "split":
		return r.runSplit(s)
	case "call":
		resp, err := r.call(s)
		out = resp
		if err != nil {
			return false, fail(Transient, err)
		}
	case "publish":
		body := env.Body
		if s.publish.body != nil {
			if body, err = s.publish.body.Eval(env); err != nil {
				return false, fail(Permanent, err)
			}
		}
		key := r.key(s)
		_, done, err := r.recall(key)
		if err != nil {
			return false, fail(Transient, err)
		}
		if done {
			outcome = "already published"
			break
		}
		if conn := s.publish.connection; conn != "" {
			// An external stream: the connection's caller publishes.
			if r.deps.Caller == nil {
				return false, fail(Permanent, errors.New("calls are not available here"))
			}
			resp, err := r.deps.Caller.Call(r.ctx, Request{Connection: conn, Method: connectors.MethodPublish, Path: s.publish.topic, Body: body, IdempotencyKey: key})
			if err != nil {
				return false, fail(callClass(err), fmt.Errorf("%s: publish to %s: %w", conn, s.publish.topic, err))
			}
			if se := classify(resp, s.path+r.split, s.kind, conn, Request{Method: connectors.MethodPublish, Path: s.publish.topic}); se != nil {
				return false, se
			}
		} else if r.deps.Publisher == nil {
			return false, fail(Permanent, errors.New("publishing is not available here"))
		} else if err := r.deps.Publisher.Publish(r.ctx, s.publish.topic, body, key); err != nil {
			return false, fail(Transient, err)
		}
		if err := r.deps.Memo.Put(key, &Response{Status: 200}); err != nil {
			return false, fail(Transient, err)
		}
		out = map[string]any{"topic": s.publish.topic, "body": body}
	case "respond":
		resp := &Response{Status: 200, Body: env.Body}
		if s.respond.status != nil {
			v, err := s.respond.status.Eval(env)
			if err != nil {
				return false, fail(Permanent, err)
			}
			code, ok := toInt(v)
			if !ok || code < 100 || code > 599 {
				return false, fail(Permanent, fmt.Errorf("respond: status %v is not an HTTP status", v))
			}
			resp.Status = code
		}
		if s.respond.body != nil {
			if resp.Body, err = s.respond.body.Eval(env); err != nil {
				return false, fail(Permanent, err)
			}
		}
		if resp.Headers, err = evalStrings(env, s.respond.headers); err != nil {
			return false, fail(Permanent, err)
		}
		r.res.Response, out = resp, resp
	case "aggregate":
		a := s.aggregate
		item, key := env.Body, ""
		if a.item != nil {
			if item, err = a.item.Eval(env); err != nil {
				return false, fail(Permanent, err)
			}
		}
		if a.key != nil {
			k, err := a.key.Eval(env)
			if err != nil {
				return false, fail(Permanent, err)
			}
			key = Text(k)
		}
		if r.deps.Aggregator == nil {
			return false, fail(Permanent, errors.New("aggregating is not available here"))
		}
		b := Batch{Flow: r.f.ID, Key: key, Topic: a.topic, Item: item, Size: a.size, Within: a.within, IdempotencyKey: r.key(s)}
		_, done, err := r.recall(b.IdempotencyKey)
		if err != nil {
			return false, fail(Transient, err)
		}
		if done {
			outcome = "already added"
			break
		}
		if err := r.deps.Aggregator.Add(r.ctx, b); err != nil {
			return false, fail(Transient, err)
		}
		if err := r.deps.Memo.Put(b.IdempotencyKey, &Response{Status: 200}); err != nil {
			return false, fail(Transient, err)
		}
		out = map[string]any{"key": key, "item": item}
	case "log":
		v, err := s.log.msg.Eval(env)
		if err != nil {
			return false, fail(Permanent, err)
		}
		msg := Text(v)
		if r.deps.Logger != nil {
			r.deps.Logger.Log(r.ctx, s.log.level, msg, "flow", r.f.ID, "message", r.msg.ID, "step", s.path)
		}
		out = msg
	}
	return false, nil
}

func (r *run) runSplit(s *step) (bool, error) {
	v, err := s.split.items.Eval(r.env)
	if err != nil {
		return false, &StepError{Class: Permanent, Step: s.path, Kind: s.kind, Err: err}
	}
	items, ok := jsonv.AsList(v)
	if !ok && v != nil {
		return false, &StepError{Class: Permanent, Step: s.path, Kind: s.kind, Err: fmt.Errorf("split: items is %T, not a list", v)}
	}
	outer, outerSplit := r.env.Body, r.split
	var collected []any
	if s.split.as != "" {
		collected = make([]any, 0, len(items))
	}
	defer func() { r.env.Body, r.env.Item, r.env.Meta.Index, r.split = outer, nil, 0, outerSplit }()
	for i, it := range items {
		r.env.Body, r.env.Item, r.env.Meta.Index = outer, it, i
		r.split = "[" + strconv.Itoa(i) + "]"
		stop, err := r.steps(s.split.steps)
		if err != nil {
			return false, err
		}
		if !stop && collected != nil {
			collected = append(collected, r.env.Body)
		}
	}
	if s.split.as != "" {
		r.env.Vars[s.split.as] = collected
	}
	return false, nil
}

// key is the idempotency key of an outbound effect: flow:message:step.
func (r *run) key(s *step) string {
	return KeyOf(r.f.ID, r.msg.ID, s.path+r.split, r.msg.KeyGen[s.path+r.split])
}

// KeyOf is the idempotency key of the effect at step (its path with split
// indexes) of message id in flow: flow:message:step, and "#<generation>"
// past the first generation (see Message.KeyGen).
func KeyOf(flow, id, step string, generation int) string {
	k := flow + ":" + id + ":" + step
	if generation > 1 {
		k += "#" + strconv.Itoa(generation)
	}
	return k
}

func (r *run) call(s *step) (*Response, error) {
	c, env := s.call, r.env
	var path strings.Builder
	inQuery := false // past the path's ?, a value is a query value: + & = escaped too
	for _, p := range c.path {
		if p.prog == nil {
			path.WriteString(p.lit)
			inQuery = inQuery || strings.Contains(p.lit, "?")
			continue
		}
		v, err := p.prog.Eval(env)
		if err != nil {
			return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
		}
		if inQuery {
			path.WriteString(url.QueryEscape(Text(v)))
		} else {
			path.WriteString(url.PathEscape(Text(v)))
		}
	}
	if len(c.query) > 0 {
		q := url.Values{}
		for _, np := range c.query {
			v, err := np.prog.Eval(env)
			if err != nil {
				return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
			}
			if v != nil {
				q.Set(np.name, Text(v))
			}
		}
		// A literal path may carry a query of its own (/items?expand=lines):
		// the map's parameters then follow it after an &.
		if enc := q.Encode(); enc != "" {
			if strings.Contains(path.String(), "?") {
				path.WriteString("&" + enc)
			} else {
				path.WriteString("?" + enc)
			}
		}
	}
	req := Request{Connection: c.connection, Method: c.method, Path: path.String(), IdempotencyKey: r.key(s), Timeout: c.timeout}
	var err error
	if c.sql != "" {
		req.Method, req.Path, req.SQL = connectors.MethodSQL, "", c.sql
		for _, p := range c.params {
			v, err := p.Eval(env)
			if err != nil {
				return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
			}
			req.Params = append(req.Params, v)
		}
	}
	if req.Headers, err = evalStrings(env, c.headers); err != nil {
		return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
	}
	if c.sendBody {
		req.Body = env.Body
		if c.body == nil && r.pristine && (env.Body != nil || r.msg.BodyDeferred) && len(r.msg.Raw) > 0 {
			req.RawJSON = r.msg.Raw // the body as received, not encoded again
		}
		if c.body != nil {
			if req.Body, err = c.body.Eval(env); err != nil {
				return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
			}
		}
	}
	resp, done, err := r.recall(req.IdempotencyKey)
	if err != nil {
		return nil, &StepError{Class: Transient, Step: s.path + r.split, Kind: s.kind, Err: err}
	}
	if !done {
		if r.deps.Caller == nil {
			return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: errors.New("calls are not available here")}
		}
		if c.rateLimit != nil && r.deps.Limiter != nil {
			// Outbound keys start with "out:", inbound ones with "in:"
			// (runtime accept), so a call's key never draws on the bucket
			// of a trigger whose flow and key spell the same text.
			key := "out:" + r.f.ID + ":" + s.path
			if c.rateLimit.Key != nil {
				k, err := c.rateLimit.Key.Eval(env)
				if err != nil {
					return nil, &StepError{Class: Permanent, Step: s.path + r.split, Kind: s.kind, Err: err}
				}
				key = "out:" + Text(k)
			}
			if err := r.deps.Limiter.Wait(r.ctx, key, *c.rateLimit); err != nil {
				return nil, &StepError{Class: Transient, Step: s.path + r.split, Kind: s.kind, Err: err}
			}
		}
		resp, err = r.deps.Caller.Call(r.ctx, req)
		if err != nil {
			return nil, &StepError{Class: callClass(err), Step: s.path + r.split, Kind: s.kind, Err: fmt.Errorf("%s %s %s: %w", c.connection, req.Method, pathOnly(req.Path), err)}
		}
		if se := classify(resp, s.path+r.split, s.kind, c.connection, req); se != nil && !slices.Contains(c.accept, resp.Status) {
			return resp, se
		}
		if err := r.deps.Memo.Put(req.IdempotencyKey, resp); err != nil {
			return resp, &StepError{Class: Transient, Step: s.path + r.split, Kind: s.kind, Err: err}
		}
	}
	if c.as != "" {
		env.Vars[c.as] = map[string]any{"status": resp.Status, "headers": stringsToAny(resp.Headers), "body": resp.Body}
	}
	return resp, nil
}

// callClass is the class of a failed call: a request the connector
// refused to send (connectors.ErrInvalidRequest) fails the same way every
// time, so it is permanent; any other error (refused, timeout, reset) may
// pass and is retried.
func callClass(err error) Class {
	if errors.Is(err, connectors.ErrInvalidRequest) {
		return Permanent
	}
	return Transient
}

// recall looks an effect up in the memo before it runs; the memo first
// makes the outcomes of the effects before it durable (MemoFlusher).
func (r *run) recall(key string) (*Response, bool, error) {
	if f, ok := r.deps.Memo.(MemoFlusher); ok {
		if err := f.Flush(); err != nil {
			return nil, false, fmt.Errorf("recording the previous steps' outcome: %w", err)
		}
	}
	resp, done := r.deps.Memo.Get(key)
	return resp, done, nil
}

// classify turns an HTTP status into a failure class: 408, 425, 429 and
// 5xx are worth retrying (honouring Retry-After), other 4xx are not, and
// neither is a redirect the connector did not follow (it follows GET and
// HEAD to the same host only): the target never got the request. A 303
// See Other answering any other method is no such redirect but the
// target's answer: it handled the request and points at the result.
func classify(resp *Response, path, kind, conn string, req Request) *StepError {
	if resp.Status < 300 || resp.Status == http.StatusNotModified {
		return nil
	}
	if m := strings.ToUpper(req.Method); resp.Status == http.StatusSeeOther && m != http.MethodGet && m != http.MethodHead {
		return nil
	}
	var err error
	if resp.Status < 400 {
		err = fmt.Errorf("%s %s %s: status %d, a redirect to %q that is not followed: point the connection at the new address",
			conn, req.Method, pathOnly(req.Path), resp.Status, pathOnly(connectors.HeaderValue(resp.Headers, "Location")))
	} else {
		err = fmt.Errorf("%s %s %s: status %d%s", conn, req.Method, pathOnly(req.Path), resp.Status, bodySnippet(resp.Body))
	}
	se := &StepError{Class: Permanent, Step: path, Kind: kind, Err: err}
	if resp.Status == 408 || resp.Status == 425 || resp.Status == 429 || resp.Status >= 500 {
		se.Class = Transient
		se.RetryAfter = retryAfter(resp.Headers)
	}
	return se
}

var statusRE = regexp.MustCompile(`: status (\d{3})\b`)

// AnsweredStatus is the status a target answered a failed call with, as
// classify writes it into the error (msg: StepError.Error()), or 0.
func AnsweredStatus(msg string) int {
	m := statusRE.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// pathOnly drops the query string, which may carry secrets, from errors.
func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func bodySnippet(body any) string {
	if body == nil {
		return ""
	}
	s := Text(body)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return ": " + s
}

// maxRetryAfter bounds a target's Retry-After: a longer wait (a typo, a
// date years ahead) would park the message for that long, neither
// retried nor dead-lettered. The retry then comes after an hour, and the
// attempts run out as usual if the target keeps refusing.
const maxRetryAfter = time.Hour

// retryAfter reads a Retry-After header, in seconds or as an HTTP date,
// up to maxRetryAfter.
func retryAfter(h map[string]string) time.Duration {
	v := connectors.HeaderValue(h, "Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
		return time.Duration(min(secs, uint64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter)
	}
	return 0
}

func (n *mapNode) eval(env *mappings.Env) (any, error) {
	switch {
	case n.prog != nil:
		return n.prog.Eval(env)
	case n.list:
		out := make([]any, len(n.items))
		for i := range n.items {
			v, err := n.items[i].eval(env)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	var out map[string]any
	if n.use != nil {
		// Fields next to use: override the mapping's fields of that name.
		v, err := n.use.eval(env)
		if err != nil {
			return nil, err
		}
		if m, ok := v.(map[string]any); ok && len(n.fields) > 0 {
			// A copy: the mapping may have answered an object of the
			// message (map: body), which the fields must not change.
			out = maps.Clone(m)
		} else if ok || len(n.fields) == 0 {
			return v, nil
		}
	}
	if out == nil {
		out = make(map[string]any, len(n.fields))
	}
	for i := range n.fields {
		v, err := n.fields[i].value.eval(env)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", n.fields[i].key, err)
		}
		out[n.fields[i].key] = v
	}
	return out, nil
}

// assign sets body.a.b or vars.x.y, creating objects on the way. The
// objects on the path are copied, never written: they may be shared (the
// outer body of a split's items, a var that holds a part of the body).
func assign(env *mappings.Env, path []string, v any) error {
	if path[0] != "vars" && len(path) == 1 {
		env.Body = v
		return nil
	}
	var root any = env.Vars
	if path[0] != "vars" {
		root = env.Body
		if root == nil {
			root = map[string]any{}
		}
	}
	out, err := setIn(root, path, 1, v)
	if err != nil {
		return err
	}
	if path[0] == "vars" {
		env.Vars = out
	} else {
		env.Body = out
	}
	return nil
}

// setIn returns a copy of cur (an object named path[:i]) with path[i:]
// set to v.
func setIn(cur any, path []string, i int, v any) (map[string]any, error) {
	m, ok := cur.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("set %s: %s is %T, not an object", strings.Join(path, "."), strings.Join(path[:i], "."), cur)
	}
	c := make(map[string]any, len(m)+1)
	maps.Copy(c, m)
	if i == len(path)-1 {
		c[path[i]] = v
		return c, nil
	}
	next := m[path[i]]
	if next == nil {
		next = map[string]any{}
	}
	nv, err := setIn(next, path, i+1, v)
	if err != nil {
		return nil, err
	}
	c[path[i]] = nv
	return c, nil
}

func evalStrings(env *mappings.Env, list []namedProg) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(list))
	for _, np := range list {
		v, err := np.prog.Eval(env)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", np.name, err)
		}
		out[np.name] = Text(v)
	}
	return out, nil
}

func stringsToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case string:
		i, err := strconv.Atoi(x)
		return i, err == nil
	}
	return 0, false
}

// Text renders a value as text: strings as they are, nil as nothing,
// other values as JSON. Paths, headers, keys and log lines use it.
func Text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case int:
		return strconv.Itoa(x)
	}
	b, err := marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// MemMemo is an in-memory Memo.
type MemMemo struct {
	mu sync.Mutex
	m  map[string]*Response
}

// Get returns the remembered response for key.
func (m *MemMemo) Get(key string) (*Response, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.m[key]
	return r, ok
}

// Put remembers r for key.
func (m *MemMemo) Put(key string, r *Response) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]*Response{}
	}
	m.m[key] = r
	return nil
}

// Entries returns what m remembers, by key.
func (m *MemMemo) Entries() map[string]*Response {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.m)
}
