// Package simulator owns fake distribution systems — an ERP, a WMS, the
// sales channels' stock APIs, a notification (e-mail) service, a carrier
// and a marketplace orders are polled from — that the example workspace
// and the end-to-end tests talk to over loopback HTTP.
//
// Each System is an http.Handler. It records every request it receives,
// honours Idempotency-Key on writes (a repeated key with the same request
// answers the stored first response and is counted as a replay, not as new
// work; the key reused for another method, path or body answers 422), and can be
// made slow (SetLatency), unavailable (Down) or failing (FailNext). Start
// serves all of them on loopback ports.
//
// Every System guards its state with one mutex (System.mu); a request holds
// it while it is handled, never while it sleeps for latency, and no other
// lock is taken under it.
package simulator

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// MaxBodyBytes is the largest request body a System accepts (413 beyond).
const MaxBodyBytes = 1 << 20

// DefaultHoldLimit is the ERP's default credit limit: an order whose
// net_total is above it is created with status "held".
const DefaultHoldLimit = 10000

// Record is one request a System received and how it answered. Body is the
// decoded JSON (mappings/jsonv: exact numbers), nil when empty; treat it as
// read-only.
type Record struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    string            `json:"query,omitempty"`
	Headers  map[string]string `json:"headers"` // first value, canonical keys
	Body     any               `json:"body"`
	Time     time.Time         `json:"time"`
	Status   int               `json:"status"`
	Replay   bool              `json:"replay,omitempty"`   // answered from the idempotency store
	Injected bool              `json:"injected,omitempty"` // answered by Down or FailNext, not handled
}

// Header returns the value of header name (any case).
func (r Record) Header(name string) string { return r.Headers[http.CanonicalHeaderKey(name)] }

// handled reports whether the request reached the system's logic.
func (r Record) handled() bool { return !r.Replay && !r.Injected }

// reply is what a route answers.
type reply struct {
	status  int
	body    any
	headers map[string]string
}

func errReply(status int, format string, args ...any) reply {
	return reply{status: status, body: map[string]any{"error": fmt.Sprintf(format, args...)}}
}

// stored is the first answer to an idempotency key, and what it answered:
// sum is the SHA-256 of the request body in canonical JSON.
type stored struct {
	method, path string
	sum          [sha256.Size]byte
	status       int
	headers      map[string]string
	body         []byte
}

// kind is the behaviour of one simulated system.
type kind interface {
	// route handles a request under System.mu. body is the decoded JSON.
	route(s *System, method string, segs []string, query string, body any) reply
	// reset clears the system's business state.
	reset()
}

// System is one simulated system. Its zero value is not usable; use NewERP,
// NewWMS, NewChannels, NewNotify, NewCarrier or NewMarketplace.
type System struct {
	name string

	mu         sync.Mutex
	kind       kind
	url        string
	latency    time.Duration
	downUntil  time.Time
	failN      int
	failStatus int
	check      func(Record) string
	holdLimit  *big.Rat
	records    []Record
	replays    int
	created    int
	idem       map[string]stored
	now        func() time.Time
}

func newSystem(name string, k kind) *System {
	return &System{name: name, kind: k, idem: map[string]stored{}, now: time.Now, holdLimit: big.NewRat(DefaultHoldLimit, 1)}
}

// Name returns the system's name: erp, wms, channels, notify, carrier or
// marketplace.
func (s *System) Name() string { return s.name }

// URL returns the base URL the system is served at, once Start served it.
func (s *System) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// SetLatency delays every answer by d. The request is handled first and
// the answer held back afterwards, so a caller that times out has still
// created the order — the case idempotency keys exist for.
func (s *System) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// Down makes the system answer 503 with a Retry-After header until d has
// passed; d <= 0 brings it up.
func (s *System) Down(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		s.downUntil = time.Time{}
		return
	}
	s.downUntil = s.now().Add(d)
}

// Up ends a Down window.
func (s *System) Up() { s.Down(0) }

// FailNext makes the next n requests answer status (e.g. 500, 502, 429)
// with {"error": "injected failure"} without handling them; a 429 or 503
// carries Retry-After: 1. n <= 0 cancels.
func (s *System) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 || status < 100 || status > 999 {
		s.failN, s.failStatus = 0, 0
		return
	}
	s.failN, s.failStatus = n, status
}

// SetCheck replaces the check run on every write request (POST, PUT, PATCH,
// DELETE) before it is handled: a non-empty message answers 422
// {"error": message}. The ERP's default check rejects a sales order
// without customer.email or lines, the notify service's an e-mail without
// a to address; nil turns checks off.
func (s *System) SetCheck(check func(r Record) string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check = check
}

// SetHoldLimit sets the ERP's credit limit: a sales order whose net_total
// is above limit is created with status "held" (default 10000).
func (s *System) SetHoldLimit(limit float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := new(big.Rat)
	if r.SetFloat64(limit) != nil {
		s.holdLimit = r
	}
}

// Received returns every request the system received, in order, replays
// and injected failures included (see Record.Replay, Record.Injected).
func (s *System) Received() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

// Count returns how many requests the system handled — neither replayed
// nor answered by Down or FailNext — whose method is method ("" for any)
// and whose path matches pattern (path.Match syntax, e.g.
// "/channels/*/stock"; "" for any).
func (s *System) Count(method, pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		if !r.handled() || (method != "" && r.Method != method) {
			continue
		}
		if pattern != "" {
			if ok, _ := path.Match(pattern, r.Path); !ok {
				continue
			}
		}
		n++
	}
	return n
}

// Orders returns how many things the system created: sales orders (ERP),
// allocations (WMS), stock updates (channels), e-mails (notify), shipments
// (carrier) or orders (marketplace, by PutMarketplaceOrder or PUT).
// Replays, rejected and failed requests do not count, so a flow that
// delivered each message exactly once leaves Orders equal to the number of
// messages.
func (s *System) Orders() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

// Replays returns how many write requests were answered from the
// idempotency store.
func (s *System) Replays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replays
}

// Reset forgets everything received and created, the idempotency store and
// any Down window or FailNext; latency, check and hold limit stay.
func (s *System) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records, s.replays, s.created = nil, 0, 0
	s.idem = map[string]stored{}
	s.downUntil, s.failN, s.failStatus = time.Time{}, 0, 0
	s.kind.reset()
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// ServeHTTP handles one request: decode, failure injection, idempotency,
// check, route, record; then latency; then the answer.
func (s *System) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Record{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Headers: make(map[string]string, len(r.Header)),
		Time:    time.Now(),
	}
	for k, vs := range r.Header {
		if len(vs) > 0 {
			rec.Headers[http.CanonicalHeaderKey(k)] = vs[0]
		}
	}

	var status int
	var headers map[string]string
	var out []byte
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	switch {
	case err != nil:
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status, out = encode(errReply(http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBodyBytes))
		} else {
			status, out = encode(errReply(http.StatusBadRequest, "reading the body: %v", err))
		}
		s.append(rec, status)
	case len(bytes.TrimSpace(data)) > 0:
		v, err := jsonv.Decode(data)
		if err != nil {
			status, out = encode(errReply(http.StatusBadRequest, "invalid JSON: %v", err))
			s.append(rec, status)
			break
		}
		rec.Body = v
		fallthrough
	default:
		status, headers, out = s.handle(rec)
	}

	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	for k, v := range headers {
		h.Set(k, v)
	}
	w.WriteHeader(status)
	w.Write(out)
}

// append records rec with its status.
func (s *System) append(rec Record, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Status = status
	s.records = append(s.records, rec)
}

// handle runs a decoded request under the lock.
func (s *System) handle(rec Record) (status int, headers map[string]string, out []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		// A bug in a route must not take the simulator down.
		if p := recover(); p != nil {
			status, out = encode(errReply(http.StatusInternalServerError, "simulator: %v", p))
			headers = nil
			rec.Status = status
			s.records = append(s.records, rec)
		}
	}()

	now := s.now()
	if now.Before(s.downUntil) {
		secs := int((s.downUntil.Sub(now) + time.Second - 1) / time.Second)
		rec.Injected = true
		status, out = encode(errReply(http.StatusServiceUnavailable, "%s is down for maintenance", s.name))
		rec.Status = status
		s.records = append(s.records, rec)
		return status, map[string]string{"Retry-After": strconv.Itoa(max(secs, 1))}, out
	}
	if s.failN > 0 {
		s.failN--
		rec.Injected = true
		status, out = encode(errReply(s.failStatus, "injected failure"))
		if s.failStatus == http.StatusTooManyRequests || s.failStatus == http.StatusServiceUnavailable {
			headers = map[string]string{"Retry-After": "1"}
		}
		rec.Status = status
		s.records = append(s.records, rec)
		return status, headers, out
	}

	key := rec.Header("Idempotency-Key")
	write := isWrite(rec.Method)
	var sum [sha256.Size]byte
	if write && key != "" {
		sum = bodySum(rec.Body)
		if st, ok := s.idem[key]; ok {
			if st.method != rec.Method || st.path != rec.Path || st.sum != sum {
				msg := fmt.Sprintf("idempotency key %q was used for %s %s", key, st.method, st.path)
				if st.method == rec.Method && st.path == rec.Path {
					msg = fmt.Sprintf("idempotency key %q was used with a different body", key)
				}
				status, out = encode(errReply(http.StatusUnprocessableEntity, "%s", msg))
				rec.Status = status
				s.records = append(s.records, rec)
				return status, nil, out
			}
			s.replays++
			rec.Replay = true
			rec.Status = st.status
			s.records = append(s.records, rec)
			headers = map[string]string{"Idempotent-Replayed": "true"}
			for k, v := range st.headers {
				headers[k] = v
			}
			return st.status, headers, st.body
		}
	}

	var rep reply
	if write && s.check != nil {
		if msg := s.check(rec); msg != "" {
			rep = errReply(http.StatusUnprocessableEntity, "%s", msg)
		}
	}
	if rep.status == 0 {
		rep = s.kind.route(s, rec.Method, splitPath(rec.Path), rec.Query, rec.Body)
	}
	status, out = encode(rep)
	if write && key != "" {
		s.idem[key] = stored{method: rec.Method, path: rec.Path, sum: sum, status: status, headers: rep.headers, body: out}
	}
	rec.Status = status
	s.records = append(s.records, rec)
	return status, rep.headers, out
}

// bodySum fingerprints a decoded request body: jsonv writes object keys
// sorted, so the same document in another key order or spacing sums alike.
func bodySum(body any) [sha256.Size]byte {
	b, _ := jsonv.Marshal(body)
	return sha256.Sum256(b)
}

// encode marshals a reply's body.
func encode(rep reply) (int, []byte) {
	if rep.body == nil {
		return rep.status, nil
	}
	b, err := jsonv.Marshal(rep.body)
	if err != nil {
		return http.StatusInternalServerError, []byte(`{"error":"simulator: encoding the answer"}`)
	}
	return rep.status, b
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// notFound answers an unknown route.
func notFound(method string, segs []string) reply {
	return errReply(http.StatusNotFound, "no route for %s /%s", method, strings.Join(segs, "/"))
}

// methodNotAllowed answers a known path with the wrong method.
func methodNotAllowed(allow ...string) reply {
	rep := errReply(http.StatusMethodNotAllowed, "method not allowed (allowed: %s)", strings.Join(allow, ", "))
	rep.headers = map[string]string{"Allow": strings.Join(allow, ", ")}
	return rep
}

// object returns body as a JSON object, or a 400 reply.
func object(body any) (map[string]any, *reply) {
	m, ok := body.(map[string]any)
	if !ok {
		r := errReply(http.StatusBadRequest, "the body must be a JSON object")
		return nil, &r
	}
	return m, nil
}

// str returns m[key] as a trimmed string ("" when absent or not a string).
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return strings.TrimSpace(s)
}

// integer returns v as an int when it is a whole JSON number.
func integer(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}

// rat returns v (a JSON number or a decimal string) as a rational.
func rat(v any) (*big.Rat, bool) {
	var s string
	switch n := v.(type) {
	case int:
		return big.NewRat(int64(n), 1), true
	case float64:
		r := new(big.Rat)
		if r.SetFloat64(n) == nil {
			return nil, false
		}
		return r, true
	case string:
		s = strings.TrimSpace(n)
	case fmt.Stringer: // json.Number
		s = n.String()
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}
