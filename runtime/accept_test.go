package runtime_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/runtime"
)

// send makes one request and returns its status, headers and body.
func send(t *testing.T, method, url, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	must(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A request with a method the trigger does not take is a 405 naming the
// one it does, not a 404 that says no flow listens on the path. HEAD,
// which net/http routes to a GET pattern, must not enqueue a message: a
// monitor or link checker probing the URL would start runs.
func TestWrongMethodIsNotAllowed(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"post": "trigger: {http: {path: /in}}\nsteps: [{log: '\"x\"'}]\n",
		"get":  "trigger: {http: {path: /poll, method: GET, mode: sync}}\nsteps: [{log: '\"x\"'}]\n",
	})
	e := start(t, dir, runtime.Options{})
	base := "http://" + e.TriggerAddr()
	for _, tt := range []struct{ method, path, allow string }{
		{"GET", "/in", "POST"},
		{"PUT", "/in", "POST"},
		{"HEAD", "/poll", "GET"},
		{"POST", "/poll", "GET"},
	} {
		s, h, body := send(t, tt.method, base+tt.path, "{}", nil)
		if s != http.StatusMethodNotAllowed || h.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d, Allow %q %s; want 405, Allow %q", tt.method, tt.path, s, h.Get("Allow"), body, tt.allow)
		}
	}
	if s, _, _ := send(t, "GET", base+"/nope", "", nil); s != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", s)
	}
}

// Every leading validate step runs at accept time, and the 422 lists the
// failed rules of all of them: a sender fixing one rule at a time would
// otherwise need a round trip per step.
func TestAcceptListsEveryFailedRule(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"v": `
trigger: {http: {path: /v}}
steps:
  - validate: [{rule: body.a != nil, message: a is required}]
  - validate: [{rule: body.b != nil, message: b is required}, {rule: body.c != nil, message: c is required}]
  - log: '"x"'
`})
	e := start(t, dir, runtime.Options{})
	s, _, body := send(t, "POST", "http://"+e.TriggerAddr()+"/v", `{"c": 1}`, nil)
	var out struct {
		Error struct{ Details []string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &out)
	if want := []string{"a is required", "b is required"}; s != 422 || !slices.Equal(out.Error.Details, want) {
		t.Errorf("%d %s, want 422 with details %q", s, body, want)
	}
}

// The scheme of an Authorization header is case-insensitive (RFC 9110
// section 11.1): "bearer tok" is the token tok.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"b": "trigger: {http: {path: /b, auth: {bearer: {token: tok}}}}\nsteps: [{log: '\"x\"'}]\n",
	})
	e := start(t, dir, runtime.Options{})
	for auth, want := range map[string]int{"Bearer tok": 202, "bearer tok": 202, "BEARER tok": 202, "Bearer nope": 401, "Basic tok": 401, "bearer": 401} {
		if s, _, body := send(t, "POST", "http://"+e.TriggerAddr()+"/b", "{}", map[string]string{"Authorization": auth}); s != want {
			t.Errorf("Authorization %q: %d %s, want %d", auth, s, body, want)
		}
	}
}

// Only JSON's own whitespace makes a body empty: a body of other Unicode
// spaces is no JSON, and no message.
func TestBodyOfUnicodeSpacesIsNotJSON(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"a": "trigger: {http: {path: /a}}\nsteps: [{log: '\"x\"'}]\n"})
	e := start(t, dir, runtime.Options{})
	for _, body := range []string{"\u00a0", "\v", "\f{}", "\u2028"} {
		if s, _, out := send(t, "POST", "http://"+e.TriggerAddr()+"/a", body, nil); s != 400 {
			t.Errorf("body %q: %d %s, want 400", body, s, out)
		}
	}
	for _, body := range []string{"", " \r\n\t"} {
		if s, _, out := send(t, "POST", "http://"+e.TriggerAddr()+"/a", body, nil); s != 202 {
			t.Errorf("body %q: %d %s, want 202", body, s, out)
		}
	}
}

// A body sent compressed (Content-Encoding gzip or deflate) is taken
// decompressed: the limit applies to what it decompresses to (a small
// bomb is a 413, not a heap full of spaces), an HMAC may sign either form,
// and an encoding Conveyor cannot read is a 415 naming it, not a 400
// saying the body is no JSON.
func TestCompressedBodies(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"a": "trigger: {http: {path: /a, max_body: 64KiB}}\nsteps: [{log: '\"x\"'}]\n",
		"s": "trigger: {http: {path: /s, auth: {hmac: {header: X-Sig, secret: shh}}}}\nsteps: [{log: '\"x\"'}]\n",
	})
	e := start(t, dir, runtime.Options{})
	base := "http://" + e.TriggerAddr()
	doc := `{"id": 1042, "note": "größe"}`
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.String()
	}
	zl := func(s string) string {
		var b bytes.Buffer
		zw := zlib.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.String()
	}
	fl := func(s string) string {
		var b bytes.Buffer
		zw, _ := flate.NewWriter(&b, flate.DefaultCompression)
		zw.Write([]byte(s))
		zw.Close()
		return b.String()
	}
	for _, tc := range []struct {
		name, encoding, body string
		want                 int
	}{
		{"gzip", "gzip", gz(doc), 202},
		{"x-gzip", "x-gzip", gz(doc), 202},
		{"deflate", "deflate", zl(doc), 202},
		{"raw deflate", "deflate", fl(doc), 202},
		{"identity", "identity", doc, 202},
		{"gzip, upper case", "GZIP", gz(doc), 202},
		{"brotli", "br", doc, 415},
		{"two encodings", "gzip, gzip", gz(gz(doc)), 415},
		{"not gzip", "gzip", doc, 400},
		{"truncated", "gzip", gz(doc)[:20], 400},
		{"bomb", "gzip", gz(strings.Repeat(" ", 65<<10) + "{}"), 413},
	} {
		s, _, out := send(t, "POST", base+"/a", tc.body, map[string]string{"Content-Encoding": tc.encoding})
		if s != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, s, out, tc.want)
			continue
		}
		if s != 202 {
			continue
		}
		var acc struct{ ID string }
		_ = json.Unmarshal([]byte(out), &acc)
		m, err := e.Message(context.Background(), acc.ID)
		must(t, err)
		if string(m.Body) != doc {
			t.Errorf("%s: stored %q, want %q", tc.name, m.Body, doc)
		}
	}
	sign := func(b string) string {
		h := hmac.New(sha256.New, []byte("shh"))
		h.Write([]byte(b))
		return base64.StdEncoding.EncodeToString(h.Sum(nil))
	}
	for name, sig := range map[string]string{"over the wire bytes": sign(gz(doc)), "over the JSON": sign(doc)} {
		if s, _, out := send(t, "POST", base+"/s", gz(doc), map[string]string{"Content-Encoding": "gzip", "X-Sig": sig}); s != 202 {
			t.Errorf("signature %s: %d %s, want 202", name, s, out)
		}
	}
	if s, _, _ := send(t, "POST", base+"/s", gz(doc), map[string]string{"Content-Encoding": "gzip", "X-Sig": sign("{}")}); s != 401 {
		t.Errorf("wrong signature: %d, want 401", s)
	}
}
