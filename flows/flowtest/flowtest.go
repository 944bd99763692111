// Package flowtest runs flows without the outside world: calls answered by
// mocks, publications recorded, retries taken at once. It serves
// `conveyor run` (dry run), `conveyor test` and the editor API's test
// endpoint, so all three show the same trace.
package flowtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
)

// Input is the message of a dry run.
type Input struct {
	Body    any               `json:"body"`
	Headers map[string]string `json:"headers,omitempty"`
	Query   map[string]string `json:"query,omitempty"`
	Params  map[string]string `json:"params,omitempty"`
}

// Call is an outbound call a dry run made.
type Call struct {
	Connection     string            `json:"connection"`
	Method         string            `json:"method"`
	Path           string            `json:"path"`
	Headers        map[string]string `json:"headers,omitempty"`
	Body           any               `json:"body,omitempty"`
	IdempotencyKey string            `json:"idempotency_key"`
	Status         int               `json:"status"`
	Mocked         string            `json:"mocked"` // "mock" or "default"
}

// Publication is a message a dry run published.
type Publication struct {
	Topic string `json:"topic"`
	Body  any    `json:"body"`
}

// Report is everything a dry run did.
type Report struct {
	Flow      string          `json:"flow"`
	Outcome   flows.Outcome   `json:"outcome"`
	Attempts  int             `json:"attempts"`
	Errors    []string        `json:"errors,omitempty"` // validation messages
	Error     string          `json:"error,omitempty"`
	Body      any             `json:"body"`
	Vars      map[string]any  `json:"vars"`
	Response  *flows.Response `json:"response,omitempty"`
	Calls     []Call          `json:"calls"`
	Published []Publication   `json:"published"`
	// Aggregated are the items aggregate steps collected.
	Aggregated []flows.Batch `json:"aggregated,omitempty"`
	// Watermark is what the next run of a watermark flow would see.
	Watermark any                `json:"watermark,omitempty"`
	Trace     []flows.TraceEntry `json:"trace"`
}

// Mocks answers calls per connection: successive calls take successive
// responses, the last one repeating. A connection without mocks answers
// 200 with no body.
type Mocks map[string]dsl.Mock

type recorder struct {
	mu         sync.Mutex
	mocks      Mocks
	seen       map[string]int
	calls      []Call
	published  []Publication
	aggregated []flows.Batch
}

func (r *recorder) Add(_ context.Context, b flows.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.aggregated = append(r.aggregated, b)
	return nil
}

func (r *recorder) Call(_ context.Context, req flows.Request) (*flows.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Call{Connection: req.Connection, Method: req.Method, Path: req.Path, Headers: req.Headers, Body: req.Body, IdempotencyKey: req.IdempotencyKey, Status: 200, Mocked: "default"}
	list := r.mocks[req.Connection]
	if len(list) == 0 {
		r.calls = append(r.calls, c)
		return &flows.Response{Status: 200}, nil
	}
	n := r.seen[req.Connection]
	r.seen[req.Connection] = n + 1
	m := list[min(n, len(list)-1)]
	c.Mocked = "mock"
	if m.Error != "" {
		c.Status = 0
		r.calls = append(r.calls, c)
		return nil, fmt.Errorf("%s", m.Error)
	}
	status := m.Status
	if status == 0 {
		status = 200
	}
	c.Status = status
	r.calls = append(r.calls, c)
	return &flows.Response{Status: status, Headers: m.Headers, Body: m.Body.V}, nil
}

func (r *recorder) Publish(_ context.Context, topic string, body any, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, Publication{Topic: topic, Body: body})
	return nil
}

// maxAttempts bounds the attempts of a dry run, whatever the flow's retry
// policy: each adds its trace to the report, and retry.attempts has no
// upper bound (100,000 made a 27 MB answer).
const maxAttempts = 10

// Run runs in through f with mocked calls. A transient failure is retried
// at once from the last checkpoint, as the runtime would after a backoff,
// up to the failing step's retry attempts (counted per step, as in the
// runtime; at most maxAttempts runs in all) or until ctx ends.
func Run(ctx context.Context, f *flows.Flow, in Input, mocks Mocks) *Report {
	rec := &recorder{mocks: mocks, seen: map[string]int{}}
	memo := &flows.MemMemo{}
	var state *flows.State
	deps := flows.Deps{Caller: rec, Publisher: rec, Aggregator: rec, Memo: memo, Trace: true, TraceOutputs: true,
		Checkpoint: func(s flows.State) error { state = &s; return nil }}
	msg := &flows.Message{ID: "dry-run", ReceivedAt: time.Now().UTC(), Body: in.Body, Headers: in.Headers, Query: in.Query, Params: in.Params, Revision: 1}
	rep := &Report{Flow: f.ID}
	var res *flows.Result
	failures := map[string]int{} // by step (flows.StepOf)
	for attempt := 1; ; attempt++ {
		msg.Attempt = attempt
		res = f.Run(ctx, msg, state, 0, deps)
		rep.Trace = append(rep.Trace, res.Trace...)
		rep.Attempts = attempt
		se, ok := res.Err.(*flows.StepError)
		if res.Outcome != flows.Failed || !ok || se.Class != flows.Transient || attempt >= maxAttempts || ctx.Err() != nil {
			break
		}
		step := flows.StepOf(se.Step)
		if failures[step]++; failures[step] >= f.PolicyFor(se.Step).Attempts {
			break
		}
	}
	rep.Outcome, rep.Body, rep.Vars, rep.Response = res.Outcome, res.State.Body, res.State.Vars, res.Response
	if se, ok := res.Err.(*flows.StepError); ok {
		rep.Errors = se.Errors
		rep.Error = se.Error()
	} else if res.Err != nil {
		rep.Error = res.Err.Error()
	}
	rep.Calls, rep.Published, rep.Aggregated = rec.calls, rec.published, rec.aggregated
	if res.HasWatermark {
		rep.Watermark = res.Watermark
	}
	if rep.Calls == nil {
		rep.Calls = []Call{}
	}
	if rep.Published == nil {
		rep.Published = []Publication{}
	}
	return rep
}
