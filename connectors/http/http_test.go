package httpconn

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// seen is what a test server received.
type seen struct {
	mu      sync.Mutex
	method  string
	uri     string
	headers http.Header
	body    []byte
}

func (s *seen) get() seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seen{method: s.method, uri: s.uri, headers: s.headers.Clone(), body: slices.Clone(s.body)}
}

// recorder answers with status, contentType and body, remembering the request.
func recorder(t *testing.T, status int, contentType, body string) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.method, s.uri, s.headers, s.body = r.Method, r.RequestURI, r.Header.Clone(), b
		s.mu.Unlock()
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

func client(t *testing.T, values map[string]any, timeout time.Duration) *Client {
	t.Helper()
	c, err := NewClient(connectors.Config{Name: "test", Values: values, Timeout: timeout})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(connectors.Default.Kinds(), "http") {
		t.Fatalf("http not registered: %v", connectors.Default.Kinds())
	}
	c, err := connectors.Default.Build("http", connectors.Config{Name: "erp", Values: map[string]any{"base_url": "http://127.0.0.1:9101"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestJSONRoundTrip(t *testing.T) {
	// The server echoes the body back; ids beyond 2^53 and emoji must survive.
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.headers, s.body = r.Header.Clone(), b
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		w.Write(b)
	}))
	defer srv.Close()
	c := client(t, map[string]any{"base_url": srv.URL}, 0)

	body := map[string]any{"id": 820982911946154777, "title": "Artikel 7 – Größe M 🎉", "big": json.Number("123456789012345678901234567890"), "lines": []any{1, 2.5, nil, true}}
	resp, err := c.Call(context.Background(), connectors.Request{Method: "post", Path: "/echo", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 {
		t.Fatalf("status %d", resp.Status)
	}
	got := s.get()
	if want := `{"big":123456789012345678901234567890,"id":820982911946154777,"lines":[1,2.5,null,true],"title":"Artikel 7 – Größe M 🎉"}`; string(got.body) != want {
		t.Errorf("sent %s\nwant %s", got.body, want)
	}
	if ct := got.headers.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	m, ok := resp.Body.(map[string]any)
	if !ok {
		t.Fatalf("body %T %v", resp.Body, resp.Body)
	}
	if m["id"] != 820982911946154777 {
		t.Errorf("id %T %v", m["id"], m["id"])
	}
	if m["title"] != "Artikel 7 – Größe M 🎉" {
		t.Errorf("title %q", m["title"])
	}
	if m["big"] != json.Number("123456789012345678901234567890") {
		t.Errorf("big %T %v", m["big"], m["big"])
	}
	if resp.Headers["Content-Type"] != "application/json; charset=utf-8" {
		t.Errorf("headers %v", resp.Headers)
	}
}

func TestResponseBodies(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           any
	}{
		{"empty", "application/json", "", nil},
		{"json without type", "", `{"a":1}`, map[string]any{"a": 1}},
		{"json array as text/plain", "text/plain", ` [1] `, []any{1}},
		{"text", "text/plain", "ok", "ok"},
		{"number as text stays text", "text/plain", "42", "42"},
		{"problem+json", "application/problem+json", `"x"`, "x"},
		{"broken json is text", "application/json", `{"a":`, `{"a":`},
	} {
		t.Run(tc.name, func(t *testing.T) { wantBody(t, tc.ct, tc.body, tc.want) })
	}
}

// wantBody checks that a response of content type ct and body comes back
// as want.
func wantBody(t *testing.T, ct, body string, want any) {
	t.Helper()
	srv, _ := recorder(t, 200, ct, body)
	resp, err := client(t, map[string]any{"base_url": srv.URL}, 0).Call(context.Background(), connectors.Request{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := jsonv.Marshal(resp.Body)
	b, _ := jsonv.Marshal(want)
	if string(a) != string(b) {
		t.Errorf("body %s, want %s", a, b)
	}
}

func TestHeadersAuthAndIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		auth   any
		header string
		want   string
	}{
		{"bearer", map[string]any{"bearer": "s3cret"}, "Authorization", "Bearer s3cret"},
		{"basic", map[string]any{"basic": map[string]any{"username": "conveyor", "password": "pa:ss"}}, "Authorization", "Basic Y29udmV5b3I6cGE6c3M="},
		{"api key", map[string]any{"api_key": map[string]any{"header": "X-Api-Token", "value": "k1"}}, "X-Api-Token", "k1"},
		{"api key default header", map[string]any{"api_key": map[string]string{"value": "k2"}}, "X-API-Key", "k2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, s := recorder(t, 200, "application/json", `{}`)
			c := client(t, map[string]any{
				"base_url": srv.URL,
				"headers":  map[string]any{"X-Tenant": "acme", "X-Overridden": "connection"},
				"auth":     tc.auth,
			}, 0)
			_, err := c.Call(context.Background(), connectors.Request{
				Method:         "PUT",
				Path:           "/orders/1",
				Headers:        map[string]string{"x-overridden": "request", "X-Template": "t1"},
				IdempotencyKey: "order-capture:msg-1:3",
			})
			if err != nil {
				t.Fatal(err)
			}
			got := s.get()
			for k, want := range map[string]string{
				tc.header:         tc.want,
				"X-Tenant":        "acme",
				"X-Overridden":    "request",
				"X-Template":      "t1",
				"Idempotency-Key": "order-capture:msg-1:3",
				"Accept":          "application/json",
				"User-Agent":      "conveyor",
			} {
				if v := got.headers.Values(k); len(v) != 1 || v[0] != want {
					t.Errorf("%s: %q, want %q", k, v, want)
				}
			}
			if got.method != "PUT" {
				t.Errorf("method %s", got.method)
			}
			if got.headers.Get("Content-Type") != "" {
				t.Errorf("Content-Type without a body: %q", got.headers.Get("Content-Type"))
			}
		})
	}
}

func TestRawBodyWithContentType(t *testing.T) {
	srv, s := recorder(t, 200, "", "")
	c := client(t, map[string]any{"base_url": srv.URL}, 0)
	_, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/edi", Body: "ISA*00*~", Headers: map[string]string{"Content-Type": "application/edi-x12"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.get(); string(got.body) != "ISA*00*~" || got.headers.Get("Content-Type") != "application/edi-x12" {
		t.Errorf("sent %q as %q", got.body, got.headers.Get("Content-Type"))
	}
}

// RawJSON (the message's body as received) is sent as is on the JSON
// path; a raw body with a non-JSON Content-Type still wins.
func TestRawJSONBody(t *testing.T) {
	srv, s := recorder(t, 200, "", "")
	c := client(t, map[string]any{"base_url": srv.URL}, 0)
	raw := []byte(`{"id": 1,  "total": 10.10}`)
	if _, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/o", Body: map[string]any{"id": 1}, RawJSON: raw}); err != nil {
		t.Fatal(err)
	}
	if got := s.get(); string(got.body) != string(raw) || got.headers.Get("Content-Type") != "application/json" {
		t.Errorf("sent %q as %q; want the raw JSON", got.body, got.headers.Get("Content-Type"))
	}
	_, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/t", Body: "hello", RawJSON: []byte(`"hello"`),
		Headers: map[string]string{"Content-Type": "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.get(); string(got.body) != "hello" {
		t.Errorf("text body sent as %q", got.body)
	}
	// A deferred body: RawJSON alone, Body nil.
	if _, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/o", RawJSON: raw}); err != nil {
		t.Fatal(err)
	}
	if got := s.get(); string(got.body) != string(raw) || got.headers.Get("Content-Type") != "application/json" {
		t.Errorf("deferred body sent %q as %q; want the raw JSON", got.body, got.headers.Get("Content-Type"))
	}
	_, err = c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/t", RawJSON: []byte(`"hello"`),
		Headers: map[string]string{"Content-Type": "text/plain"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.get(); string(got.body) != "hello" {
		t.Errorf("deferred text body sent as %q", got.body)
	}
}

func TestBasePathJoining(t *testing.T) {
	for _, tc := range []struct{ base, path, want string }{
		{"/api", "/orders", "/api/orders"},
		{"/api/", "/orders", "/api/orders"},
		{"/api", "orders", "/api/orders"},
		{"", "/orders", "/orders"},
		{"/", "/orders?status=open&page=2", "/orders?status=open&page=2"},
		{"/v1", "/sales-orders/SO-1001?fields=status%2Clines", "/v1/sales-orders/SO-1001?fields=status%2Clines"},
		{"/v1?tenant=a", "/x?b=1", "/v1/x?tenant=a&b=1"},
		{"/v1?tenant=a", "/x", "/v1/x?tenant=a"},
		{"/api", "/items/a%2Fb", "/api/items/a%2Fb"},
		{"/api", "", "/api/"},
	} {
		t.Run(tc.base+" "+tc.path, func(t *testing.T) {
			srv, s := recorder(t, 204, "", "")
			c := client(t, map[string]any{"base_url": srv.URL + tc.base}, 0)
			resp, err := c.Call(context.Background(), connectors.Request{Method: "GET", Path: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 204 || resp.Body != nil {
				t.Errorf("response %+v", resp)
			}
			if got := s.get().uri; got != tc.want {
				t.Errorf("request URI %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPathMustStayUnderBase(t *testing.T) {
	c := client(t, map[string]any{"base_url": "http://127.0.0.1:1/api"}, 0)
	for _, p := range []string{"http://evil.example/x", "//evil.example/x", "/../admin", "/a/./b", "/a/%2e%2e/b"} {
		if _, err := c.Call(context.Background(), connectors.Request{Path: p}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

// A refused path's error names the path without its query: the query
// may carry a token.
func TestRefusedPathErrorHidesQuery(t *testing.T) {
	c := client(t, map[string]any{"base_url": "http://127.0.0.1:1/api"}, 0)
	for _, p := range []string{"/items/..?token=SECRET", "/items/a#b?token=SECRET", "/items/.?token=SECRET"} {
		_, err := c.Call(context.Background(), connectors.Request{Path: p})
		if err == nil {
			t.Errorf("%q accepted", p)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%q: error %q shows the query", p, err)
		}
		if !errors.Is(err, connectors.ErrInvalidRequest) {
			t.Errorf("%q: error %q is not an invalid request", p, err)
		}
	}
}

// A publish or sql step that names an HTTP connection by mistake is
// refused, not sent as an HTTP method PUBLISH or SQL.
func TestRefusesPublishAndSQL(t *testing.T) {
	srv, s := recorder(t, 200, "", "")
	c := client(t, map[string]any{"base_url": srv.URL}, 0)
	for _, req := range []connectors.Request{
		{Method: connectors.MethodPublish, Path: "orders.created", Body: map[string]any{"id": 1}},
		{Method: connectors.MethodSQL, SQL: "select 1"},
		{Method: "sql", SQL: "select 1"},
		{Method: http.MethodPost, Path: "/x", SQL: "select 1"},
	} {
		_, err := c.Call(context.Background(), req)
		if err == nil || !errors.Is(err, connectors.ErrInvalidRequest) {
			t.Errorf("%s %q: got %v, want an invalid request", req.Method, req.Path, err)
		}
	}
	if got := s.get(); got.method != "" {
		t.Errorf("the server got %s %s", got.method, got.uri)
	}
}

func TestRetryAfterResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Retry-After", "7")
		w.Header().Add("X-Multi", "first")
		w.Header().Add("X-Multi", "second")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"down for maintenance"}`)
	}))
	defer srv.Close()
	resp, err := client(t, map[string]any{"base_url": srv.URL}, 0).Call(context.Background(), connectors.Request{Method: "POST", Path: "/x", Body: map[string]any{}})
	if err != nil {
		t.Fatalf("a 503 must be a response, not an error: %v", err)
	}
	if resp.Status != 503 || resp.Headers["Retry-After"] != "7" || resp.Headers["X-Multi"] != "first" {
		t.Errorf("response %+v", resp)
	}
	if m, _ := resp.Body.(map[string]any); m["error"] != "down for maintenance" {
		t.Errorf("body %v", resp.Body)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	c := client(t, map[string]any{"base_url": srv.URL}, 5*time.Second)
	start := time.Now()
	_, err := c.Call(context.Background(), connectors.Request{Method: "GET", Path: "/slow?token=s3cret", Timeout: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("request timeout ignored: took %s", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("not a deadline error: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "GET "+srv.URL+"/slow") || !strings.Contains(msg, "timeout") {
		t.Errorf("error %q does not name method, URL and timeout", msg)
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("error leaks the query: %q", msg)
	}

	// The connection's timeout applies when the request has none.
	c2 := client(t, map[string]any{"base_url": srv.URL}, 100*time.Millisecond)
	if _, err := c2.Call(context.Background(), connectors.Request{Path: "/slow"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("connection timeout: %v", err)
	}

	// A caller that gives up is a cancellation, not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := c.Call(ctx, connectors.Request{Path: "/slow"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

func TestRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := client(t, map[string]any{
		"base_url": "http://" + addr + "/api?apikey=s3cret",
		"auth":     map[string]any{"bearer": "t0ken"},
		"headers":  map[string]any{"X-Secret": "h1dden"},
	}, 2*time.Second)
	_, err = c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/orders?sig=qs3cret", Body: map[string]any{"a": 1}})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "POST http://"+addr+"/api/orders") || !strings.Contains(msg, "refused") {
		t.Errorf("error %q", msg)
	}
	for _, secret := range []string{"s3cret", "t0ken", "h1dden", "apikey", "sig="} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks %q: %s", secret, msg)
		}
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("cause not wrapped: %T", errors.Unwrap(err))
	}
}

func TestLargeResponseRejected(t *testing.T) {
	chunk := strings.Repeat("x", 64<<10)
	for _, withLength := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !withLength {
				w.Header().Set("Content-Type", "text/plain")
			}
			n := (MaxResponseBytes / len(chunk)) + 1
			if withLength {
				w.Header().Set("Content-Length", itoa(n*len(chunk)))
			}
			for range n {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}))
		_, err := client(t, map[string]any{"base_url": srv.URL}, 0).Call(context.Background(), connectors.Request{Path: "/big"})
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "response larger than 10 MiB") {
			t.Errorf("content-length %v: %v", withLength, err)
		}
	}
	// Exactly the limit is fine.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("y", MaxResponseBytes))
	}))
	defer srv.Close()
	resp, err := client(t, map[string]any{"base_url": srv.URL}, 0).Call(context.Background(), connectors.Request{Path: "/ok"})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := resp.Body.(string); len(s) != MaxResponseBytes {
		t.Errorf("body of %d bytes", len(s))
	}
}

func itoa(n int) string {
	b, _ := jsonv.Marshal(n)
	return string(b)
}

func TestRedirects(t *testing.T) {
	other, otherSeen := recorder(t, 200, "", "other")
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/new", http.StatusFound) })
	mux.HandleFunc("/new", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, other.URL+"/x", http.StatusFound) })
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := client(t, map[string]any{"base_url": srv.URL, "auth": map[string]any{"api_key": map[string]any{"value": "k"}}}, 0)

	resp, err := c.Call(context.Background(), connectors.Request{Path: "/old"})
	if err != nil || resp.Status != 200 || resp.Body != "new" {
		t.Errorf("same-host GET redirect: %+v %v", resp, err)
	}
	resp, err = c.Call(context.Background(), connectors.Request{Path: "/away"})
	if err != nil || resp.Status != 302 {
		t.Errorf("cross-host redirect followed: %+v %v", resp, err)
	}
	if otherSeen.get().method != "" {
		t.Error("the other host was called")
	}
	resp, err = c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/post", Body: map[string]any{}})
	if err != nil || resp.Status != 307 {
		t.Errorf("POST redirect followed: %+v %v", resp, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"missing base_url", map[string]any{}, "base_url is required"},
		{"relative", map[string]any{"base_url": "/api"}, "absolute http or https URL"},
		{"no scheme", map[string]any{"base_url": "127.0.0.1:9101"}, "absolute http or https URL"},
		{"ftp", map[string]any{"base_url": "ftp://x/"}, "absolute http or https URL"},
		{"no host", map[string]any{"base_url": "http:///x"}, "no host"},
		{"not a string", map[string]any{"base_url": 42}, "must be a string"},
		{"unparsable", map[string]any{"base_url": "http://[::1/x?token=s3cret"}, "not a valid absolute"},
		{"user info", map[string]any{"base_url": "http://u:s3cret@x/"}, "must not carry credentials"},
		{"unknown field", map[string]any{"base_url": "http://x", "base_ulr": "y"}, `unknown field "base_ulr" (did you mean "base_url"?)`},
		{"header not a string", map[string]any{"base_url": "http://x", "headers": map[string]any{"X-A": 1}}, "headers.X-A must be a string"},
		{"header injection", map[string]any{"base_url": "http://x", "headers": map[string]any{"X-A": "a\r\nX-B: s3cret"}}, "line break"},
		{"two auth kinds", map[string]any{"base_url": "http://x", "auth": map[string]any{"bearer": "s3cret", "api_key": map[string]any{"value": "v"}}}, "exactly one"},
		{"unknown auth", map[string]any{"base_url": "http://x", "auth": map[string]any{"oauth": "s3cret"}}, `unknown kind "oauth"`},
		{"empty bearer", map[string]any{"base_url": "http://x", "auth": map[string]any{"bearer": ""}}, "auth.bearer"},
		{"basic without user", map[string]any{"base_url": "http://x", "auth": map[string]any{"basic": map[string]any{"password": "s3cret"}}}, "username is required"},
		{"api key without value", map[string]any{"base_url": "http://x", "auth": map[string]any{"api_key": map[string]any{"header": "X-K"}}}, "value is required"},
		{"bad timeout", map[string]any{"base_url": "http://x", "timeout": "soon"}, "not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(connectors.Config{Name: "erp", Values: tc.values})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestTimeoutFromValues(t *testing.T) {
	c := client(t, map[string]any{"base_url": "https://erp.example/api", "timeout": "3s"}, 0)
	if c.timeout != 3*time.Second {
		t.Errorf("timeout %s", c.timeout)
	}
	c = client(t, map[string]any{"base_url": "https://erp.example/api"}, 0)
	if c.timeout != DefaultTimeout {
		t.Errorf("default timeout %s", c.timeout)
	}
	c = client(t, map[string]any{"base_url": "https://erp.example/api", "timeout": "3s"}, time.Second)
	if c.timeout != time.Second {
		t.Errorf("cfg.Timeout must win: %s", c.timeout)
	}
}

func TestConcurrentCallsShareConnections(t *testing.T) {
	srv, _ := recorder(t, 200, "application/json", `{"ok":true}`)
	c := client(t, map[string]any{"base_url": srv.URL}, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			_, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/x", Body: map[string]any{"i": i}})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c.transport.MaxIdleConnsPerHost != 64 || c.transport.IdleConnTimeout != 90*time.Second {
		t.Errorf("pooling %d %s", c.transport.MaxIdleConnsPerHost, c.transport.IdleConnTimeout)
	}
	// Close leaves the client usable.
	c.Close()
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/x"}); err != nil {
		t.Errorf("after Close: %v", err)
	}
}
