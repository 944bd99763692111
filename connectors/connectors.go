// Package connectors is the connector API: the request and response types
// of outbound calls, the interfaces connectors implement, their spec, and
// the registry they register in. Implementations live in subpackages
// (connectors/http, ...) that import only this package; connectors/all
// decides which are compiled in.
//
// The lifecycle of a connector instance is build (the constructor, from
// its configuration) -> validate (the constructor's error) -> start (the
// first call) -> stop (Close).
package connectors

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// HeaderValue returns header name of h (request or response headers),
// whatever the case of its key.
func HeaderValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// Request is an outbound call.
type Request struct {
	Connection string
	Method     string
	Path       string // relative to the connection, with the query string
	Headers    map[string]string
	Body       any // nil: no body; otherwise encoded as JSON
	// RawJSON, when set, is Body already encoded as JSON (the message's
	// body as received): a connector that would encode Body as JSON may
	// send it instead. Body stays set for every other use, except when the
	// flow never reads the body: then Body is nil, and only a
	// RawJSONSender gets such a request (the runtime decodes RawJSON into
	// Body for any other connector).
	RawJSON        []byte
	IdempotencyKey string
	Timeout        time.Duration // 0: the connection's
	// SQL and Params are set for database connections instead of a path.
	SQL    string
	Params []any
}

// RawJSONSender is a connector that sends Request.RawJSON as the body
// when Body is nil.
type RawJSONSender interface {
	SendsRawJSON()
}

// MethodPublish is the Method of a request that publishes Body to the
// stream or subject named by Path (stream connections).
const MethodPublish = "PUBLISH"

// MethodSQL is the Method of a request that runs SQL with Params.
const MethodSQL = "SQL"

// ErrInvalidRequest is what a connector's error wraps when it refuses a
// request before sending anything (a path with dot segments, a header
// value with a line break, a method the connection does not serve):
// sending the same request again cannot succeed, so the step that made it
// fails permanently instead of being retried. Wrap an error with Invalid.
var ErrInvalidRequest = errors.New("invalid request")

// Invalid marks err as a refused request (ErrInvalidRequest) without
// changing its message.
func Invalid(err error) error {
	return invalidRequest{err}
}

type invalidRequest struct{ err error }

func (e invalidRequest) Error() string   { return e.err.Error() }
func (e invalidRequest) Unwrap() []error { return []error{e.err, ErrInvalidRequest} }

// Response is the answer of a call: any HTTP status, body decoded from
// JSON when it is JSON, else text.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    any               `json:"body"`
}

// Caller makes outbound calls over one connection. A transport failure
// (refused, timeout, reset) is an error; any HTTP answer is a Response. A
// request refused before it is sent is an error wrapping ErrInvalidRequest.
type Caller interface {
	Call(ctx context.Context, req Request) (*Response, error)
	Close() error
}

// Config is a connection's settings as written in conveyor.yaml, with
// ${env:...} references already resolved.
type Config struct {
	Name    string
	Values  map[string]any // the connection kind's fields
	Timeout time.Duration
}

// Spec describes a connector kind for validation and docs.
type Spec struct {
	Name        string
	Description string
}

// Constructor builds a caller from its configuration; an error means the
// configuration is invalid.
type Constructor func(cfg Config) (Caller, error)

// Registry maps connector kinds to constructors. It is a value, so tests
// and dry runs can build isolated environments.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]entry
}

type entry struct {
	spec Spec
	ctor Constructor
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Register adds a connector kind. A malformed or duplicate name panics:
// it is a programming error found at start-up.
func (r *Registry) Register(spec Spec, ctor Constructor) {
	if !nameRE.MatchString(spec.Name) || ctor == nil {
		panic(fmt.Sprintf("connectors: malformed registration %q", spec.Name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string]entry{}
	}
	if _, dup := r.kinds[spec.Name]; dup {
		panic(fmt.Sprintf("connectors: %q registered twice", spec.Name))
	}
	r.kinds[spec.Name] = entry{spec, ctor}
}

// Build constructs a caller of the given kind.
func (r *Registry) Build(kind string, cfg Config) (Caller, error) {
	r.mu.RLock()
	e, ok := r.kinds[kind]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("connection %s: unknown kind %q (known: %v)", cfg.Name, kind, r.Kinds())
	}
	c, err := e.ctor(cfg)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", cfg.Name, err)
	}
	return c, nil
}

// Kinds lists the registered kinds.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Default is the registry connectors register in from init().
var Default = &Registry{}

// MustRegister registers a connector kind in Default.
func MustRegister(spec Spec, ctor Constructor) { Default.Register(spec, ctor) }
