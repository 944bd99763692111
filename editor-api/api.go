// Package editorapi is Conveyor's editor REST API, served with echo on the
// admin listener under /api/v1: flows (read, create, update with If-Match,
// delete, enable and disable, validate, dry-run), revisions (list, diff,
// roll back), messages and dead letters (find, replay, discard), editor
// support (JSON Schema, function catalogue) and the audit log. It drives
// the engine only through runtime's public API. Bearer tokens with roles
// (viewer < operator < editor < admin) guard every route but the OpenAPI
// document, which describes them all (openapi.yaml).
package editorapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/runtime"
)

//go:embed openapi.yaml
var openAPI []byte

// Prefix is where the API is mounted on the admin listener.
const Prefix = "/api/v1"

// Option configures the API.
type Option func(*server)

// WithBodyLimit caps request bodies (default 1 MiB); larger ones get 413.
func WithBodyLimit(n int64) Option { return func(s *server) { s.bodyLimit = n } }

// WithLogger sets where internal errors are logged (default slog.Default).
func WithLogger(l *slog.Logger) Option { return func(s *server) { s.log = l } }

// WithWriteTimeout bounds how long a flow write waits for its revision to
// go live before answering (default 15s).
func WithWriteTimeout(d time.Duration) Option { return func(s *server) { s.writeTimeout = d } }

type server struct {
	e            *runtime.Engine
	tokens       []Token
	bodyLimit    int64
	writeTimeout time.Duration
	log          *slog.Logger
}

// route is one API route: the table New registers, the auth matrix and
// the OpenAPI check rely on.
type route struct {
	method, path string
	role         Role // the least role allowed; 0: no token needed
	handler      func(*server, echo.Context) error
}

func routes() []route {
	return []route{
		{http.MethodGet, "/openapi.yaml", 0, (*server).openapi},
		{http.MethodGet, "/flows", Viewer, (*server).listFlows},
		{http.MethodPost, "/flows", Editor, (*server).createFlow},
		{http.MethodGet, "/flows/:id", Viewer, (*server).getFlow},
		{http.MethodPut, "/flows/:id", Editor, (*server).putFlow},
		{http.MethodDelete, "/flows/:id", Editor, (*server).deleteFlow},
		{http.MethodPost, "/flows/:id/enable", Operator, (*server).enableFlow},
		{http.MethodPost, "/flows/:id/disable", Operator, (*server).disableFlow},
		{http.MethodPost, "/flows/:id/test", Editor, (*server).testFlow},
		{http.MethodPost, "/validate", Editor, (*server).validate},
		{http.MethodGet, "/flows/:id/revisions", Viewer, (*server).listRevisions},
		{http.MethodGet, "/flows/:id/revisions/:rev", Viewer, (*server).getRevision},
		{http.MethodGet, "/flows/:id/diff", Viewer, (*server).diff},
		{http.MethodPost, "/flows/:id/rollback", Editor, (*server).rollback},
		{http.MethodGet, "/messages", Viewer, (*server).listMessages},
		{http.MethodGet, "/messages/:id", Viewer, (*server).getMessage},
		{http.MethodGet, "/dead-letters", Viewer, (*server).listDeadLetters},
		{http.MethodGet, "/dead-letters/:id", Viewer, (*server).getDeadLetter},
		{http.MethodPost, "/dead-letters/:id/replay", Operator, (*server).replay},
		{http.MethodPost, "/dead-letters/replay", Operator, (*server).replayMany},
		{http.MethodDelete, "/dead-letters/:id", Operator, (*server).discard},
		{http.MethodGet, "/schema", Viewer, (*server).schema},
		{http.MethodGet, "/functions", Viewer, (*server).functions},
		{http.MethodGet, "/audit", Admin, (*server).auditLog},
	}
}

// New returns the API for engine e, guarded by tokens (see
// TokensFromConfig; with none, every guarded route answers 401). Mount it
// as runtime.Options.Admin: it serves /api/v1/... and answers 404 in the
// API's error shape elsewhere.
func New(e *runtime.Engine, tokens []Token, opts ...Option) http.Handler {
	s := &server{e: e, tokens: tokens, bodyLimit: 1 << 20, writeTimeout: 15 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	ec := echo.New()
	ec.HideBanner, ec.HidePort = true, true
	ec.HTTPErrorHandler = s.handleError
	ec.Use(s.recover, s.limitBody)
	g := ec.Group(Prefix)
	for _, r := range routes() {
		h := func(c echo.Context) error { return r.handler(s, c) }
		if r.role == 0 {
			g.Add(r.method, r.path, h)
		} else {
			g.Add(r.method, r.path, h, s.require(r.role))
		}
	}
	return ec
}

// Error is the one error type of the API. It is written as
// {"error": {"code": ..., "message": ..., "details": ...}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

func apiErr(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// handleError is the API's one error handler: it maps echo's, the
// runtime's and the API's errors onto Error. A flow that does not load
// answers 422 with its diagnostics both in details and at the top level
// ({"diagnostics": [...]}), where editors read them.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var (
		ae *Error
		he *echo.HTTPError
		de *runtime.DiagnosticsError
	)
	body := map[string]any{}
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &de):
		ae = &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_flow", Message: fmt.Sprintf("the flow has %d error(s); nothing was changed", len(de.Diagnostics)),
			Details: map[string]any{"diagnostics": de.Diagnostics}}
		body["diagnostics"] = de.Diagnostics
	case errors.Is(err, runtime.ErrNotFound):
		ae = &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, runtime.ErrConflict):
		ae = &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case errors.Is(err, runtime.ErrStale):
		ae = &Error{Status: http.StatusPreconditionFailed, Code: "precondition_failed", Message: err.Error()}
	case errors.Is(err, runtime.ErrInvalid):
		ae = &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: err.Error()}
	case errors.As(err, &he):
		ae = &Error{Status: he.Code, Code: codeOf(he.Code), Message: http.StatusText(he.Code)}
		switch he.Code {
		case http.StatusNotFound:
			ae.Message = fmt.Sprintf("no route %s %s", c.Request().Method, c.Request().URL.Path)
		case http.StatusMethodNotAllowed:
			ae.Message = fmt.Sprintf("%s is not allowed on %s", c.Request().Method, c.Request().URL.Path)
		}
	default:
		s.log.Error("editor api: internal error", "method", c.Request().Method, "path", c.Request().URL.Path, "error", err)
		ae = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; see the server log"}
	}
	body["error"] = ae
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	_ = c.JSON(ae.Status, body)
}

func codeOf(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

// recover turns a panic in a handler into a 500 answer and a log line.
func (s *server) recover(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("editor api: panic", "path", c.Request().URL.Path, "panic", r, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}

// limitBody caps every request body at the configured size.
func (s *server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > s.bodyLimit {
			return apiErr(http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d bytes", s.bodyLimit)
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.bodyLimit)
		return next(c)
	}
}

// readBody reads the whole request body within the limit.
func (s *server) readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, apiErr(http.StatusRequestEntityTooLarge, "too_large", "the body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "bad_request", "reading the body: %v", err)
	}
	return b, nil
}

// decodeJSON decodes the request body into v strictly: unknown fields,
// trailing data and a body that is not JSON are 400. An empty body leaves
// v as it is when optional.
func (s *server) decodeJSON(c echo.Context, v any, optional bool) error {
	b, err := s.readBody(c)
	if err != nil {
		return err
	}
	if len(b) == 0 && optional {
		return nil
	}
	if err := strictJSON(b, v); err != nil {
		return apiErr(http.StatusBadRequest, "invalid_json", "the body: %v", err)
	}
	return nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// who is the name of the token that made the request, for the audit log.
func who(c echo.Context) string {
	if t, ok := c.Get(tokenKey).(*Token); ok {
		return t.Name
	}
	return "anonymous"
}

func (s *server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openAPI)
}

// relDiagnostics shows diagnostics with workspace-relative file names.
func (s *server) relDiagnostics(ds dsl.Diagnostics) dsl.Diagnostics {
	out := make(dsl.Diagnostics, len(ds))
	for i, d := range ds {
		d.File = s.rel(d.File)
		out[i] = d
	}
	return out
}
