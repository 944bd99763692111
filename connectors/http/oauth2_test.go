package httpconn

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
)

// tokenServer is an OAuth2 token endpoint: it counts fetches and hands out
// tok-1, tok-2, ... valid for expiresIn seconds.
type tokenServer struct {
	srv       *httptest.Server
	fetches   atomic.Int64
	expiresIn int
	status    int           // non-zero: answer this with {"error": "invalid_client"}
	formOnly  bool          // refuse basic auth, as some servers do
	delay     time.Duration // before answering, so concurrent callers overlap
	mu        sync.Mutex
	forms     []string // the form bodies received
	basics    []string // "id:secret" of basic auth received
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{expiresIn: 3600}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(ts.delay)
		_ = r.ParseForm()
		id, secret, basic := r.BasicAuth()
		ts.mu.Lock()
		ts.forms = append(ts.forms, r.PostForm.Encode())
		if basic {
			ts.basics = append(ts.basics, id+":"+secret)
		}
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials":
			w.WriteHeader(400)
			io.WriteString(w, `{"error": "unsupported_grant_type"}`)
			return
		case ts.status != 0:
			w.WriteHeader(ts.status)
			io.WriteString(w, `{"error": "invalid_client", "error_description": "bad secret s3cret"}`)
			return
		case ts.formOnly && (basic || r.PostForm.Get("client_secret") != "s3cret"):
			w.WriteHeader(401)
			io.WriteString(w, `{"error": "invalid_client"}`)
			return
		case !ts.formOnly && (id != "conveyor" || secret != "s3cret"):
			w.WriteHeader(401)
			io.WriteString(w, `{"error": "invalid_client"}`)
			return
		}
		n := ts.fetches.Add(1)
		fmt.Fprintf(w, `{"access_token": "tok-%d", "token_type": "Bearer", "expires_in": %d}`, n, ts.expiresIn)
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

// api answers 200 with the token it got, or 401 for a refused token.
func api(t *testing.T, refuse func(token string) bool) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if refuse != nil && refuse(tok) {
			w.WriteHeader(401)
			io.WriteString(w, `{"error": "token expired"}`)
			return
		}
		fmt.Fprintf(w, `{"token": %q, "body": %q}`, tok, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func oauthValues(base, tokenURL string, extra ...string) map[string]any {
	o := map[string]any{"token_url": tokenURL, "client_id": "conveyor", "client_secret": "s3cret", "scopes": []any{"orders.write", "stock.read"}}
	for i := 0; i+1 < len(extra); i += 2 {
		o[extra[i]] = extra[i+1]
	}
	return map[string]any{"base_url": base, "auth": map[string]any{"oauth2": o}}
}

func callOK(t *testing.T, c *Client, path string) map[string]any {
	t.Helper()
	resp, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: path, Body: map[string]any{"n": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("status %d: %v", resp.Status, resp.Body)
	}
	return resp.Body.(map[string]any)
}

func TestOAuth2TokenCachedAndShared(t *testing.T) {
	ts := newTokenServer(t)
	ts.delay = 50 * time.Millisecond
	srv, _ := api(t, nil)
	c := client(t, oauthValues(srv.URL, ts.srv.URL+"/oauth/token"), 0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got := callOK(t, c, "/orders")["token"]; got != "tok-1" {
				t.Errorf("token %v, want tok-1", got)
			}
		})
	}
	wg.Wait()
	callOK(t, c, "/orders")
	if n := ts.fetches.Load(); n != 1 {
		t.Errorf("%d token fetches, want 1 shared by every call", n)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.forms[0] != "grant_type=client_credentials&scope=orders.write+stock.read" || ts.basics[0] != "conveyor:s3cret" {
		t.Errorf("token request: form %q, basic %q", ts.forms[0], ts.basics[0])
	}
}

func TestOAuth2TokenRefreshedBeforeExpiry(t *testing.T) {
	ts := newTokenServer(t)
	ts.expiresIn = 300
	srv, _ := api(t, nil)
	c := client(t, oauthValues(srv.URL, ts.srv.URL), 0)
	now := time.Now()
	var mu sync.Mutex
	c.oauth.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	callOK(t, c, "/a")
	advance(269 * time.Second) // 300 s less the 30 s leeway: still valid
	if got := callOK(t, c, "/a")["token"]; got != "tok-1" {
		t.Errorf("before expiry: %v, want the cached tok-1", got)
	}
	advance(2 * time.Second)
	if got := callOK(t, c, "/a")["token"]; got != "tok-2" {
		t.Errorf("within the leeway: %v, want a fresh tok-2", got)
	}
	// A short-lived token is kept for half its lifetime.
	ts.expiresIn = 10
	advance(time.Hour)
	callOK(t, c, "/a")
	advance(4 * time.Second)
	if got := callOK(t, c, "/a")["token"]; got != "tok-3" {
		t.Errorf("short-lived token: %v, want tok-3", got)
	}
	advance(2 * time.Second)
	if got := callOK(t, c, "/a")["token"]; got != "tok-4" {
		t.Errorf("short-lived token past half its life: %v, want tok-4", got)
	}
}

func TestOAuth2RefusedTokenRefreshedOnce(t *testing.T) {
	ts := newTokenServer(t)
	srv, calls := api(t, func(tok string) bool { return tok == "tok-1" }) // revoked
	c := client(t, oauthValues(srv.URL, ts.srv.URL), 0)
	out := callOK(t, c, "/orders")
	if out["token"] != "tok-2" || out["body"] != `{"n":1}` {
		t.Errorf("retried call: %v, want tok-2 and the body sent again", out)
	}
	if ts.fetches.Load() != 2 || calls.Load() != 2 {
		t.Errorf("fetches %d, api calls %d; want 2 and 2", ts.fetches.Load(), calls.Load())
	}

	// An API that refuses every token: one refresh, then its 401 is the answer.
	ts2 := newTokenServer(t)
	srv2, calls2 := api(t, func(string) bool { return true })
	c2 := client(t, oauthValues(srv2.URL, ts2.srv.URL), 0)
	resp, err := c2.Call(context.Background(), connectors.Request{Path: "/x"})
	if err != nil || resp.Status != 401 {
		t.Fatalf("got %v, %v; want the 401", resp, err)
	}
	if ts2.fetches.Load() != 2 || calls2.Load() != 2 {
		t.Errorf("fetches %d, api calls %d; want 2 and 2 (no loop)", ts2.fetches.Load(), calls2.Load())
	}
}

func TestOAuth2FormAuthStyle(t *testing.T) {
	ts := newTokenServer(t)
	ts.formOnly = true
	srv, _ := api(t, nil)
	c := client(t, oauthValues(srv.URL, ts.srv.URL), 0)
	callOK(t, c, "/a") // basic refused, then the form body
	c.oauth.Invalidate("tok-1")
	callOK(t, c, "/a") // the form body at once
	ts.mu.Lock()
	if len(ts.forms) != 3 || len(ts.basics) != 1 || !strings.Contains(ts.forms[2], "client_id=conveyor&client_secret=s3cret") {
		t.Errorf("auto style: forms %q, basic %q", ts.forms, ts.basics)
	}
	ts.mu.Unlock()

	ts2 := newTokenServer(t)
	ts2.formOnly = true
	c2 := client(t, oauthValues(srv.URL, ts2.srv.URL, "auth_style", "form"), 0)
	callOK(t, c2, "/a")
	if len(ts2.basics) != 0 || len(ts2.forms) != 1 {
		t.Errorf("auth_style form: forms %q, basic %q", ts2.forms, ts2.basics)
	}
}

func TestOAuth2EndpointFailureIsTransportError(t *testing.T) {
	ts := newTokenServer(t)
	srv, calls := api(t, nil)
	for _, tc := range []struct {
		name   string
		status int
		url    string
		want   string
	}{
		{"refused", 401, ts.srv.URL + "/token?tenant=acme", "oauth2 token from " + ts.srv.URL + "/token: status 401 (invalid_client)"},
		{"server error", 503, ts.srv.URL + "/token", "status 503 (invalid_client)"},
		{"down", 0, "http://127.0.0.1:1/token", "oauth2 token from http://127.0.0.1:1/token: dial tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.status = tc.status
			c := client(t, oauthValues(srv.URL, tc.url, "auth_style", "basic"), 2*time.Second)
			resp, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/orders"})
			if err == nil || resp != nil {
				t.Fatalf("got %v, %v; want a transport error", resp, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "POST "+srv.URL+"/orders: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "s3cret") || strings.Contains(msg, "tenant") {
				t.Errorf("error %q shows a secret or the query", msg)
			}
		})
	}
	if calls.Load() != 0 {
		t.Errorf("the API was called %d times without a token", calls.Load())
	}
}

func TestOAuth2BadConfig(t *testing.T) {
	for _, tc := range []struct {
		oauth map[string]any
		want  string
	}{
		{map[string]any{"client_id": "a", "client_secret": "b"}, "auth.oauth2.token_url is required"},
		{map[string]any{"token_url": "ftp://x/token", "client_id": "a", "client_secret": "b"}, "token_url must be an absolute http or https URL"},
		{map[string]any{"token_url": "https://u:p@x/token", "client_id": "a", "client_secret": "b"}, "without credentials"},
		{map[string]any{"token_url": "https://x/token", "client_id": "a"}, "auth.oauth2.client_secret is required"},
		{map[string]any{"token_url": "https://x/token", "client_id": "a", "client_secret": "b", "scope": "x"}, `unknown field "scope"`},
		{map[string]any{"token_url": "https://x/token", "client_id": "a", "client_secret": "b", "auth_style": "header"}, "auth_style must be basic or form"},
		{map[string]any{"token_url": "https://x/token", "client_id": "a", "client_secret": "b", "scopes": "x"}, "scopes must be a list"},
	} {
		_, err := NewClient(connectors.Config{Name: "erp", Values: map[string]any{"base_url": "https://erp", "auth": map[string]any{"oauth2": tc.oauth}}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.oauth, err, tc.want)
		}
	}
}
