// Package flows compiles a dsl flow into an executable step chain and runs
// one message through it against interfaces for calls, publishing, rate
// limits and checkpoints. It opens no sockets and no files: the runtime, the
// CLI's dry run and tests hand it implementations of those interfaces.
package flows

import (
	"context"
	"strings"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/mappings"
)

// Flow is a compiled flow, ready to run messages. It is immutable and safe
// for concurrent use; a reload builds a new Flow and swaps it in.
type Flow struct {
	ID          string
	File        string
	Description string
	Source      *dsl.Flow
	Trigger     Trigger
	Dedup       *Dedup
	RateLimit   *RateLimit
	Retry       RetryPolicy
	Concurrency int
	// Revision is the number the runtime gave this version of the file
	// when it went live (0 in dry runs).
	Revision int
	// Watermark, when set, is a value kept between runs (vars.watermark).
	Watermark *Watermark
	// AcceptSteps is the number of leading validate steps, which the
	// runtime runs when a message is accepted, before storing it.
	AcceptSteps int
	steps       []*step
	policies    map[string]RetryPolicy // call step path -> its policy
	readsBody   bool
}

// ReadsBody reports whether a run needs the message body decoded. It does
// not when the flow only calls out, sending the body as received, and no
// expression names it (a webhook relayed to the ERP as is): the runtime
// then passes the raw body alone (Message.BodyDeferred).
func (f *Flow) ReadsBody() bool { return f.readsBody }

// Trigger is the compiled trigger of a flow.
type Trigger struct {
	Kind     string // http, schedule, file, event
	HTTP     *dsl.HTTPTrigger
	Auth     *Auth
	Schedule *dsl.ScheduleTrigger
	File     *dsl.FileTrigger
	Event    *dsl.EventTrigger
}

// Dedup is the compiled dedup setting.
type Dedup struct {
	Key *mappings.Program
	TTL time.Duration
}

// Watermark is the compiled watermark: Initial gives the first value,
// Next the value after a completed run.
type Watermark struct {
	Initial, Next *mappings.Program
}

// RateLimit is a token bucket per key: Limit tokens per Per, Burst at once.
type RateLimit struct {
	Key   *mappings.Program // nil: one bucket
	Limit int
	Per   time.Duration
	Burst int
}

// RetryPolicy is how often and how long apart a failed step is retried.
type RetryPolicy struct {
	Attempts int
	Backoff  string // exponential | fixed
	Initial  time.Duration
	Max      time.Duration
}

// DefaultRetry applies when neither the flow nor the call sets a policy.
var DefaultRetry = RetryPolicy{Attempts: 5, Backoff: "exponential", Initial: time.Second, Max: 2 * time.Minute}

// Delay is the wait before attempt number next (2 for the first retry),
// before jitter: Initial, then doubling up to Max for exponential.
func (p RetryPolicy) Delay(next int) time.Duration {
	d := p.Initial
	if p.Backoff == "exponential" {
		for i := 2; i < next && d < p.Max; i++ {
			d *= 2
		}
	}
	return min(d, p.Max)
}

// PolicyFor returns the retry policy of the step at path, as a StepError
// names it (a call step's own, or the flow's).
func (f *Flow) PolicyFor(path string) RetryPolicy {
	if p, ok := f.policies[StepOf(path)]; ok {
		return p
	}
	return f.Retry
}

// StepOf returns the step at path, as a StepError names it, without the
// index of a split's item: "5[].1[3]" (item 3 of the split's call step
// 5[].1) is step "5[].1". All items of a split step share its retry policy
// and its budget of attempts.
func StepOf(path string) string {
	if i := strings.LastIndexByte(path, '['); i > 0 && strings.HasSuffix(path, "]") {
		return path[:i]
	}
	return path
}

// Message is one message entering a flow.
type Message struct {
	ID         string
	ReceivedAt time.Time
	Attempt    int
	Revision   int
	Body       any
	Headers    map[string]string
	Query      map[string]string
	Params     map[string]string
	// Watermark is the value the last completed run left (nil: the flow's
	// initial value).
	Watermark any
	// Raw is Body as received (JSON), when the caller has it: a call sends
	// it as is while no step has changed the body.
	Raw []byte
	// BodyDeferred says Body was left undecoded (nil) because the flow
	// never reads it (Flow.ReadsBody): Raw is the body, and it is not null.
	BodyDeferred bool
	// KeyGen is, per step (its path with split indexes, as StepError.Step
	// names it), the generation of the step's idempotency key when it is
	// past the first: the key gets "#<generation>". The runtime renews a
	// key after a target refused the call under it (see
	// runtime.keyGenerations).
	KeyGen map[string]int
}

// State is where a message stands between steps: the next top-level step
// and the data it will see. It is what a checkpoint stores.
type State struct {
	Next     int            `json:"next"`
	Body     any            `json:"body"`
	Vars     map[string]any `json:"vars"`
	Response *Response      `json:"response,omitempty"`
	// BodyIsMessage says Body is the message's body, which no step has
	// changed: a checkpoint need not store it again, and a call may send
	// the message's raw bytes (Message.Raw) instead of encoding it.
	BodyIsMessage bool `json:"-"`
}

// Request is an outbound call (see connectors.Request).
type Request = connectors.Request

// Response is the answer of a call, or what a sync trigger answers.
type Response = connectors.Response

// Caller makes outbound calls. A transport failure is returned as an
// error; any HTTP answer, whatever its status, as a Response.
type Caller interface {
	Call(ctx context.Context, req Request) (*Response, error)
}

// Publisher delivers a message to an internal topic. key identifies the
// publication so that a retried step does not publish twice.
type Publisher interface {
	Publish(ctx context.Context, topic string, body any, key string) error
}

// Limiter makes outbound calls wait for a token of a rate limit.
type Limiter interface {
	Wait(ctx context.Context, key string, rl RateLimit) error
}

// Memo remembers the outcome of outbound effects (calls, publications) by
// idempotency key, so that a retried step repeats none that succeeded.
type Memo interface {
	Get(key string) (*Response, bool)
	Put(key string, r *Response) error
}

// MemoFlusher is a Memo that may hold Puts back and write them together:
// a run calls Flush before every effect, so no effect starts before the
// ones before it are durable. (The runtime's memo holds a call's outcome
// until the next effect or the end of the run, whose write then carries
// it: one store write per message instead of one per call plus one.)
type MemoFlusher interface {
	Memo
	Flush() error
}

// Deps are what a run needs from the outside world. Nil fields mean: no
// calls allowed (Caller, Publisher), no limit (Limiter), an in-memory memo
// (Memo), no checkpoints (Checkpoint), the default logger (Logger).
type Deps struct {
	Caller     Caller
	Publisher  Publisher
	Limiter    Limiter
	Aggregator Aggregator
	Memo       Memo
	// Checkpoint is called after each top-level step that completed, with
	// the state a retry resumes from. An error fails the run as transient.
	Checkpoint func(State) error
	Logger     Logger
	// Trace records an entry per step in the result; with TraceOutputs
	// each entry carries the step's output too (dry runs).
	Trace, TraceOutputs bool
	// Observe, when set, is told how long each top-level step took.
	Observe func(step, kind string, d time.Duration, err error)
}

// Aggregator collects items into batches (aggregate steps).
type Aggregator interface {
	Add(ctx context.Context, b Batch) error
}

// Batch is one item for an aggregate step.
type Batch struct {
	Flow           string        `json:"flow"`
	Key            string        `json:"key"`
	Topic          string        `json:"topic"`
	Item           any           `json:"item"`
	Size           int           `json:"size,omitempty"`
	Within         time.Duration `json:"within,omitempty"`
	IdempotencyKey string        `json:"idempotency_key"` // flow:message:step, so a retried step adds once
}

// Logger receives log steps.
type Logger interface {
	Log(ctx context.Context, level, msg string, attrs ...any)
}
