package editorapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// messageSummary is a message in a list: where it stands, without payload.
type messageSummary struct {
	ID         string       `json:"id"`
	Flow       string       `json:"flow"`
	Revision   int          `json:"revision"`
	Status     store.Status `json:"status"`
	Source     string       `json:"source,omitempty"`
	DedupKey   string       `json:"dedup_key,omitempty"`
	ReceivedAt time.Time    `json:"received_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
	Attempt    int          `json:"attempt"`
	FailedStep string       `json:"failed_step,omitempty"`
	Error      string       `json:"error,omitempty"`
	Reason     string       `json:"reason,omitempty"`
}

func summary(m *store.Message) messageSummary {
	return messageSummary{m.ID, m.Flow, m.Revision, m.Status, m.Source, m.DedupKey, m.ReceivedAt, m.UpdatedAt, m.Attempt, m.FailedStep, m.Error, m.Reason}
}

// messageView is one message with its history. Credentials among the
// request headers are redacted, and the memo shows which effects completed
// (idempotency key -> status), not what the targets answered.
type messageView struct {
	*store.Message
	Headers map[string]string `json:"headers,omitempty"`
	Memo    map[string]int    `json:"memo,omitempty"`
}

func view(m *store.Message) messageView {
	v := messageView{Message: m, Headers: redact(m.Headers)}
	for k, raw := range m.Memo {
		var r struct {
			Status int `json:"status"`
		}
		_ = json.Unmarshal(raw, &r)
		if v.Memo == nil {
			v.Memo = map[string]int{}
		}
		v.Memo[k] = r.Status
	}
	return v
}

var secretHeaderWords = []string{"authorization", "cookie", "token", "secret", "signature", "hmac", "password", "api-key", "apikey"}

// redact hides the values of headers that carry credentials.
func redact(h map[string]string) map[string]string {
	if h == nil {
		return nil
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = v
		lk := strings.ToLower(k)
		for _, w := range secretHeaderWords {
			if strings.Contains(lk, w) {
				out[k] = "[redacted]"
				break
			}
		}
	}
	return out
}

var statuses = []store.Status{store.Queued, store.Running, store.Retrying, store.Completed, store.Filtered, store.Dead, store.Discarded, store.Failed}

// filter reads ?flow=&status=&key=&since=&limit=&cursor=. since is an
// RFC 3339 time or a duration back from now (90m, 24h); cursor is the
// next of the page before.
func filter(c echo.Context) (store.Filter, error) {
	f := store.Filter{Flow: c.QueryParam("flow"), Key: c.QueryParam("key"), Limit: 100}
	if v := c.QueryParam("status"); v != "" {
		f.Status = store.Status(v)
		ok := false
		for _, s := range statuses {
			ok = ok || s == f.Status
		}
		if !ok {
			return f, &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "status: unknown status " + strconv.Quote(v), Details: map[string]any{"statuses": statuses}}
		}
	}
	if v := c.QueryParam("since"); v != "" {
		var err error
		if f.Since, err = parseSince(v); err != nil {
			return f, err
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, apiErr(http.StatusBadRequest, "bad_request", "limit: %q is not a number from 1 to 1000", v)
		}
		f.Limit = n
	}
	if v := c.QueryParam("cursor"); v != "" {
		var err error
		if f.After, err = store.ParseCursor(v); err != nil {
			return f, apiErr(http.StatusBadRequest, "bad_request", "cursor: %v: pass the next of the page before, as it is", err)
		}
	}
	return f, nil
}

func parseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, apiErr(http.StatusBadRequest, "bad_request", "since: %q is neither an RFC 3339 time nor a duration such as 24h", v)
}

func (s *server) messages(c echo.Context, f store.Filter) error {
	ms, err := s.e.Messages(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := make([]messageSummary, len(ms))
	for i, m := range ms {
		out[i] = summary(m)
	}
	page := map[string]any{"messages": out}
	if len(ms) == f.Limit { // there may be more: a full page names where the next starts
		page["next"] = store.CursorOf(ms[len(ms)-1]).String()
	}
	return c.JSON(http.StatusOK, page)
}

func (s *server) listMessages(c echo.Context) error {
	f, err := filter(c)
	if err != nil {
		return err
	}
	return s.messages(c, f)
}

func (s *server) getMessage(c echo.Context) error {
	m, err := s.e.Message(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, view(m))
}

func (s *server) listDeadLetters(c echo.Context) error {
	f, err := filter(c)
	if err != nil {
		return err
	}
	f.Status = store.Dead
	return s.messages(c, f)
}

func (s *server) getDeadLetter(c echo.Context) error {
	m, err := s.e.Message(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if m.Status != store.Dead {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "message " + m.ID + " is " + string(m.Status) + ", not in the dead-letter queue",
			Details: map[string]any{"status": m.Status}}
	}
	return c.JSON(http.StatusOK, view(m))
}

func (s *server) replay(c echo.Context) error {
	var opts runtime.ReplayOptions
	if err := s.decodeJSON(c, &opts, true); err != nil {
		return err
	}
	m, err := s.e.Replay(c.Request().Context(), c.Param("id"), opts, who(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, summary(m))
}

func (s *server) replayMany(c echo.Context) error {
	var req struct {
		Filter struct {
			Flow  string `json:"flow"`
			Key   string `json:"key"`
			Since string `json:"since"`
			Limit int    `json:"limit"`
			All   bool   `json:"all"`
		} `json:"filter"`
		runtime.ReplayOptions
	}
	if err := s.decodeJSON(c, &req, false); err != nil {
		return err
	}
	fl := req.Filter
	if fl.Flow == "" && fl.Key == "" && fl.Since == "" && !fl.All {
		return apiErr(http.StatusBadRequest, "bad_request", "filter: name a flow, a key or a since, or set all: true to replay every dead letter")
	}
	if fl.Limit < 0 { // ReplayMany takes any limit up to 0 for no limit at all
		return apiErr(http.StatusBadRequest, "bad_request", "filter.limit: %d is not a number of messages; leave it out to replay every match", fl.Limit)
	}
	f := store.Filter{Flow: fl.Flow, Key: fl.Key, Limit: fl.Limit}
	if fl.Since != "" {
		var err error
		if f.Since, err = parseSince(fl.Since); err != nil {
			return err
		}
	}
	n, errs, err := s.e.ReplayMany(c.Request().Context(), f, req.ReplayOptions, who(c))
	if err != nil {
		return err
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return c.JSON(http.StatusOK, map[string]any{"replayed": n, "errors": msgs})
}

func (s *server) discard(c echo.Context) error {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := s.decodeJSON(c, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" {
		return apiErr(http.StatusBadRequest, "bad_request", "reason: say why the message is discarded")
	}
	m, err := s.e.Discard(c.Request().Context(), c.Param("id"), req.Reason, who(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, summary(m))
}

func (s *server) schema(c echo.Context) error {
	kind := c.QueryParam("kind")
	if kind == "" {
		kind = "flow"
	}
	sc := dsl.JSONSchema(kind)
	if sc == nil {
		return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "kind: unknown kind " + strconv.Quote(kind), Details: map[string]any{"kinds": dsl.SchemaKinds()}}
	}
	return c.JSON(http.StatusOK, sc)
}

func (s *server) functions(c echo.Context) error {
	type fn struct {
		Name        string `json:"name"`
		Signature   string `json:"signature"`
		Description string `json:"description"`
		Example     string `json:"example"`
	}
	cat := s.e.Functions()
	out := make([]fn, len(cat))
	for i, f := range cat {
		out[i] = fn{f.Name, f.Signature, f.Description, f.Example}
	}
	return c.JSON(http.StatusOK, map[string]any{"functions": out})
}

func (s *server) auditLog(c echo.Context) error {
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return apiErr(http.StatusBadRequest, "bad_request", "limit: %q is not a number from 1 to 1000", v)
		}
		limit = n
	}
	entries, err := s.e.Audit(c.Request().Context(), limit)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}
