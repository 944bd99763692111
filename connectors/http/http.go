// Package httpconn is the "http" connector: outbound calls to HTTP APIs
// with a base URL, headers sent with every request, optional bearer, basic,
// API-key or OAuth2 client-credentials authentication (oauth2.go), TLS
// with a private CA and a client certificate (tls.go), and a per-attempt
// timeout. Bodies are JSON, encoded and decoded with mappings/jsonv so that
// no number loses a digit; a string body goes as is under a Content-Type
// that is not JSON (the call's or the connection's: XML, EDI, CSV). Other
// responses are kept as text, decoded to UTF-8 from their charset (see
// toUTF8), and gzip or deflate bodies are decoded also when the
// connection's headers ask for them (see responseReader).
//
// A Host among the headers sets the HTTP Host only: the TLS server name
// (SNI) and the certificate check follow base_url, as with curl -H Host.
// To reach a name at another address, put the name in base_url and
// resolve it to the address (DNS, /etc/hosts, a container's extra hosts).
//
// A Client never follows redirects for methods other than GET and HEAD,
// and follows those only to the same scheme and host, so credentials never
// travel to another server. Errors name the method and the URL without its
// query string, user info or the base path's credential-like segments (a
// webhook's token), and never carry a header value.
package httpconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

func init() {
	connectors.MustRegister(connectors.Spec{
		Name: "http",
		Description: "An HTTP API: base_url (absolute http or https URL), headers sent with every request, " +
			"auth (bearer, basic, api_key or oauth2 client credentials), tls (ca_file, cert_file, key_file for mTLS) " +
			"and a per-attempt timeout (default 10s). " +
			"Request bodies are sent as JSON, or as is when a string goes under a non-JSON Content-Type (the call's or the connection's); " +
			"JSON responses are decoded, others kept as text in UTF-8.",
	}, New)
}

// DefaultTimeout is the per-attempt timeout when neither the connection nor
// the request sets one.
const DefaultTimeout = 10 * time.Second

// MaxResponseBytes is the largest response body a Client reads.
const MaxResponseBytes = 10 << 20

// UserAgent is the User-Agent header of every request.
const UserAgent = "conveyor"

// maxRedirects bounds the same-host redirects a GET follows.
const maxRedirects = 10

var _ connectors.Caller = (*Client)(nil)

// Client is a connectors.Caller for one HTTP connection. It is safe for
// concurrent use; it owns one http.Transport whose connections are pooled
// across calls.
type Client struct {
	name      string
	base      *url.URL // scheme, host, path without trailing slash, raw query
	basePath  string   // escaped path of base without trailing slash
	baseShown string   // basePath as errors show it (see shownPath)
	headers   http.Header
	auth      http.Header   // applied after headers, before the request's own
	oauth     *oauth2Source // auth.oauth2: a bearer token fetched and cached
	timeout   time.Duration
	transport *http.Transport
	http      *http.Client

	urlsMu sync.Mutex
	urls   map[string]url.URL // path -> checked URL (URL); cleared when full
}

// maxCachedURLs bounds the URL cache: most flows call a few fixed paths;
// paths with ids in them churn through it.
const maxCachedURLs = 1024

// New builds a Client from a connection's configuration. cfg.Values holds:
//
//	base_url  string, required: absolute http or https URL, may carry a path prefix
//	headers   map of header name to string, sent with every request
//	auth      exactly one of {bearer: TOKEN}, {basic: {username, password}},
//	          {api_key: {header: NAME (default X-API-Key), value: KEY}},
//	          {oauth2: {token_url, client_id, client_secret, scopes,
//	          auth_style: basic | form (default: basic, then form)}}
//	tls       {ca_file, cert_file, key_file}: absolute paths of PEM files
//	timeout   optional duration ("5s" or time.Duration); cfg.Timeout wins when set
//
// Unknown keys are errors. cfg.Timeout is per attempt; zero means 10s.
func New(cfg connectors.Config) (connectors.Caller, error) {
	return NewClient(cfg)
}

// NewClient is New returning the concrete type.
func NewClient(cfg connectors.Config) (*Client, error) {
	c := &Client{name: cfg.Name, headers: http.Header{}, auth: http.Header{}, timeout: cfg.Timeout}
	var errs []error
	if err := connectors.CheckFields("", cfg.Values, "base_url", "headers", "auth", "tls", "timeout"); err != nil {
		errs = append(errs, err)
	}
	if err := c.setBase(cfg.Values["base_url"]); err != nil {
		errs = append(errs, err)
	}
	if err := c.setHeaders(cfg.Values["headers"]); err != nil {
		errs = append(errs, err)
	}
	if err := c.setAuth(cfg.Values["auth"]); err != nil {
		errs = append(errs, err)
	}
	if c.timeout == 0 {
		if err := c.setTimeout(cfg.Values["timeout"]); err != nil {
			errs = append(errs, err)
		}
	}
	var tlsCfg, tokenTLS *tls.Config
	if v := cfg.Values["tls"]; v != nil {
		var err error
		if tlsCfg, tokenTLS, err = tlsConfig(v); err != nil {
			errs = append(errs, err)
		}
	}
	if c.timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout must be positive, got %s", c.timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}

	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ExpectContinueTimeout = time.Second
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg
	}
	c.transport = t
	c.http = &http.Client{Transport: t, CheckRedirect: c.checkRedirect}
	if c.oauth != nil {
		c.oauth.client, c.oauth.timeout = c.http, c.timeout
		if tokenTLS != tlsCfg { // see tlsConfig: the token endpoint trusts the system roots too
			tt := t.Clone()
			tt.TLSClientConfig = tokenTLS
			c.oauth.client = &http.Client{Transport: tt, CheckRedirect: c.checkRedirect}
		}
	}
	return c, nil
}

func (c *Client) setBase(v any) error {
	s, ok := v.(string)
	if v == nil || (ok && strings.TrimSpace(s) == "") {
		return errors.New("base_url is required")
	}
	if !ok {
		return fmt.Errorf("base_url must be a string, got %T", v)
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		// url.Error repeats the whole URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("base_url is not a valid absolute http or https URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("base_url must be an absolute http or https URL, e.g. http://127.0.0.1:9101 (got scheme %q)", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return errors.New("base_url has no host")
	case u.User != nil:
		return errors.New("base_url must not carry credentials; use auth: {basic: {username, password}}")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("base_url must not have a fragment")
	}
	c.base = &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
	c.basePath = strings.TrimRight(u.EscapedPath(), "/")
	c.baseShown = shownPath(c.basePath)
	return nil
}

// shownPath is an escaped base path with the segments that look like
// credentials replaced by "…": webhook URLs carry their secret in the
// path (Slack's /services/T…/B…/<token>, Teams' and Discord's alike), and
// errors, logs and dead-letter histories must not show it. A segment
// looks like one when it is long and mixes letters and digits (16+), or
// is very long (32+); names such as api, v2 or API_SALES_ORDER_SRV stay.
func shownPath(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		letters := strings.IndexFunc(seg, unicode.IsLetter) >= 0
		digits := strings.IndexFunc(seg, unicode.IsDigit) >= 0
		if len(seg) >= 32 || (len(seg) >= 16 && letters && digits) {
			segs[i] = "…"
		}
	}
	return strings.Join(segs, "/")
}

// shown is u as errors may show it: no user info, no query, and the base
// path's credential-like segments hidden (see shownPath).
func (c *Client) shown(u *url.URL) string {
	s := redact(u)
	if c.baseShown == c.basePath {
		return s
	}
	prefix := u.Scheme + "://" + u.Host + c.basePath
	if rest, ok := strings.CutPrefix(s, prefix); ok {
		return u.Scheme + "://" + u.Host + c.baseShown + rest
	}
	return s
}

func (c *Client) setHeaders(v any) error {
	if v == nil {
		return nil
	}
	m, err := stringMap(v, "headers")
	if err != nil {
		return err
	}
	for k, val := range m {
		if !validHeaderName(k) {
			return fmt.Errorf("headers: %q is not a valid header name", k)
		}
		if !validHeaderValue(val) {
			return fmt.Errorf("headers: value of %s contains a line break or control character", k)
		}
		c.headers.Set(k, val)
	}
	return nil
}

func (c *Client) setAuth(v any) error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		if sm, ok2 := v.(map[string]string); ok2 {
			m = map[string]any{}
			for k, x := range sm {
				m[k] = x
			}
		} else {
			return fmt.Errorf("auth must be a map with one of bearer, basic, api_key, oauth2, got %T", v)
		}
	}
	if len(m) != 1 {
		return fmt.Errorf("auth must set exactly one of bearer, basic, api_key, oauth2 (got %d)", len(m))
	}
	for kind, val := range m {
		switch kind {
		case "bearer":
			tok, ok := val.(string)
			if !ok || tok == "" {
				return errors.New("auth.bearer must be a non-empty string")
			}
			if !validHeaderValue(tok) {
				return errors.New("auth.bearer contains a line break or control character")
			}
			c.auth.Set("Authorization", "Bearer "+tok)
		case "basic":
			bm, err := stringMap(val, "auth.basic")
			if err != nil {
				return err
			}
			if err := connectors.CheckFields("auth.basic", bm, "username", "password"); err != nil {
				return err
			}
			if bm["username"] == "" {
				return errors.New("auth.basic.username is required")
			}
			if _, ok := bm["password"]; !ok {
				return errors.New("auth.basic.password is required")
			}
			r := &http.Request{Header: http.Header{}}
			r.SetBasicAuth(bm["username"], bm["password"])
			c.auth.Set("Authorization", r.Header.Get("Authorization"))
		case "api_key":
			am, err := stringMap(val, "auth.api_key")
			if err != nil {
				return err
			}
			if err := connectors.CheckFields("auth.api_key", am, "header", "value"); err != nil {
				return err
			}
			h := am["header"]
			if h == "" {
				h = "X-API-Key"
			}
			if !validHeaderName(h) {
				return fmt.Errorf("auth.api_key.header: %q is not a valid header name", h)
			}
			if am["value"] == "" {
				return errors.New("auth.api_key.value is required")
			}
			if !validHeaderValue(am["value"]) {
				return errors.New("auth.api_key.value contains a line break or control character")
			}
			c.auth.Set(h, am["value"])
		case "oauth2":
			o, err := newOAuth2(val)
			if err != nil {
				return err
			}
			c.oauth = o
		default:
			return fmt.Errorf("auth: unknown kind %q (known: bearer, basic, api_key, oauth2)", kind)
		}
	}
	return nil
}

func (c *Client) setTimeout(v any) error {
	switch t := v.(type) {
	case nil:
	case time.Duration:
		c.timeout = t
	case string:
		d, err := time.ParseDuration(t)
		if err != nil {
			return fmt.Errorf("timeout: %q is not a duration like 10s", t)
		}
		c.timeout = d
	default:
		return fmt.Errorf("timeout must be a duration like 10s, got %T", v)
	}
	return nil
}

// stringMap accepts map[string]string or map[string]any with string values.
func stringMap(v any, field string) (map[string]string, error) {
	switch m := v.(type) {
	case map[string]string:
		return m, nil
	case map[string]any:
		out := make(map[string]string, len(m))
		for k, x := range m {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s.%s must be a string, got %T", field, k, x)
			}
			out[k] = s
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s must be a map of strings, got %T", field, v)
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, b) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// checkRedirect follows GET and HEAD redirects to the same scheme and host
// only; any other redirect is returned to the caller as the response.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	first := via[0]
	if first.Method != http.MethodGet && first.Method != http.MethodHead {
		return http.ErrUseLastResponse
	}
	if req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// URL returns the URL a request path resolves to: the base URL's path
// prefix joined with path, the base URL's query followed by path's. It
// rejects absolute URLs and dot segments, so a path built from a payload
// cannot leave the connection's base.
func (c *Client) URL(path string) (*url.URL, error) {
	c.urlsMu.Lock()
	if u, ok := c.urls[path]; ok {
		c.urlsMu.Unlock()
		return &u, nil
	}
	c.urlsMu.Unlock()
	u, err := c.buildURL(path)
	if err != nil {
		return nil, err
	}
	c.urlsMu.Lock()
	if c.urls == nil || len(c.urls) >= maxCachedURLs {
		c.urls = make(map[string]url.URL, 16)
	}
	c.urls[path] = *u
	c.urlsMu.Unlock()
	return u, nil
}

func (c *Client) buildURL(path string) (*url.URL, error) {
	p, q, _ := strings.Cut(path, "?")
	if strings.Contains(p, "#") {
		return nil, errors.New("path must not have a fragment")
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "//") {
		return nil, errors.New("path must be relative to the connection's base_url")
	}
	p = strings.TrimPrefix(p, "/")
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") ||
			strings.EqualFold(seg, ".%2e") || strings.EqualFold(seg, "%2e.") {
			return nil, errors.New("path must not contain . or .. segments")
		}
	}
	raw := c.base.Scheme + "://" + c.base.Host + c.basePath + "/" + p
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid path: %v", err)
	}
	switch {
	case c.base.RawQuery != "" && q != "":
		u.RawQuery = c.base.RawQuery + "&" + q
	case q != "":
		u.RawQuery = q
	default:
		u.RawQuery = c.base.RawQuery
	}
	return u, nil
}

// redact is a URL as errors may show it: no user info, no query.
func redact(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// SendsRawJSON implements connectors.RawJSONSender.
func (c *Client) SendsRawJSON() {}

// Call sends one attempt of req. A transport failure (refused, timeout,
// DNS, reset, an oversized body) is an error naming the method and the
// URL without its query; any HTTP status is a Response. A request refused
// before it is sent (a path leaving the base, a bad header, a publish or
// sql request) is an error wrapping connectors.ErrInvalidRequest.
//
// Headers, lowest precedence first: Accept, User-Agent and (with a body)
// Content-Type; the connection's headers; its auth; Idempotency-Key; then
// req.Headers. A string or []byte body is sent as is when the Content-Type
// (req.Headers', else the connection's) is not JSON; any other body is
// encoded as JSON.
func (c *Client) Call(ctx context.Context, req connectors.Request) (*connectors.Response, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	method = strings.ToUpper(method)
	if method == connectors.MethodPublish || method == connectors.MethodSQL || req.SQL != "" {
		// A publish or sql step that names this connection by mistake.
		return nil, connectors.Invalid(fmt.Errorf("http connection %s: %s calls are not supported; use a call step with an HTTP method and a path", c.name, method))
	}
	u, err := c.URL(req.Path)
	if err != nil {
		p, _, _ := strings.Cut(req.Path, "?") // the query may carry a token
		return nil, connectors.Invalid(fmt.Errorf("%s %s: %w", method, p, err))
	}
	where := method + " " + c.shown(u)

	var body []byte
	if req.Body != nil || len(req.RawJSON) > 0 {
		// The type the request goes out with: the call's, else the
		// connection's (an XML or EDI API declares it once, in headers).
		ct := connectors.HeaderValue(req.Headers, "Content-Type")
		if ct == "" {
			ct = c.headers.Get("Content-Type")
		}
		if ct != "" && !isJSONType(ct) {
			if req.Body == nil { // a deferred body (connectors.RawJSONSender): a string in it goes as text
				if req.Body, err = jsonv.Decode(req.RawJSON); err != nil {
					return nil, connectors.Invalid(fmt.Errorf("%s: the body is not valid JSON: %w", where, err))
				}
			}
			switch b := req.Body.(type) {
			case string:
				body = []byte(b)
			case []byte:
				body = b
			}
		}
		if body == nil && len(req.RawJSON) > 0 {
			body = req.RawJSON // the same JSON, not encoded again
		}
		if body == nil {
			if body, err = jsonv.Marshal(req.Body); err != nil {
				return nil, connectors.Invalid(fmt.Errorf("%s: encoding the body: %w", where, err))
			}
		}
	}

	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(actx, method, u.String(), rd)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, connectors.Invalid(fmt.Errorf("%s: %v", where, err))
	}
	h := hr.Header
	h.Set("Accept", "application/json")
	h.Set("User-Agent", UserAgent)
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	for k, vs := range c.headers {
		h[k] = slices.Clone(vs)
	}
	if v := c.headers.Get("Host"); v != "" {
		hr.Host = v // Go sends Request.Host and ignores a Host in the header map
	}
	for k, vs := range c.auth {
		h[k] = slices.Clone(vs)
	}
	var token string
	if c.oauth != nil {
		if token, err = c.oauth.Token(actx); err != nil {
			return nil, c.transportError(ctx, actx, where, timeout, err)
		}
		h.Set("Authorization", "Bearer "+token)
	}
	if req.IdempotencyKey != "" {
		h.Set("Idempotency-Key", req.IdempotencyKey)
	}
	for k, v := range req.Headers {
		if !validHeaderName(k) {
			return nil, connectors.Invalid(fmt.Errorf("%s: %q is not a valid header name", where, k))
		}
		if !validHeaderValue(v) {
			return nil, connectors.Invalid(fmt.Errorf("%s: value of header %s contains a line break or control character", where, k))
		}
		if strings.EqualFold(k, "Host") {
			hr.Host = v
			continue
		}
		h.Set(k, v)
	}

	resp, err := c.http.Do(hr)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && token != "" && h.Get("Authorization") == "Bearer "+token {
		// The API refused the cached token (revoked, or expired early):
		// fetch a new one and try this call once more.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		c.oauth.Invalidate(token)
		if token, err = c.oauth.Token(actx); err != nil {
			return nil, c.transportError(ctx, actx, where, timeout, err)
		}
		again := hr.Clone(actx)
		if hr.GetBody != nil {
			if again.Body, err = hr.GetBody(); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		again.Header.Set("Authorization", "Bearer "+token)
		resp, err = c.http.Do(again)
	}
	if err != nil {
		return nil, c.transportError(ctx, actx, where, timeout, err)
	}
	defer resp.Body.Close()

	if resp.ContentLength > MaxResponseBytes {
		return nil, fmt.Errorf("%s: response larger than 10 MiB", where)
	}
	rd, decoded, err := responseReader(resp)
	if err != nil {
		return nil, c.transportError(ctx, actx, where, timeout, err)
	}
	data, err := io.ReadAll(io.LimitReader(rd, MaxResponseBytes+1)) // the decoded size counts
	if err != nil {
		return nil, c.transportError(ctx, actx, where, timeout, fmt.Errorf("reading the response: %w", err))
	}
	if len(data) > MaxResponseBytes {
		return nil, fmt.Errorf("%s: response larger than 10 MiB", where)
	}

	out := &connectors.Response{Status: resp.StatusCode, Body: decodeBody(resp.Header.Get("Content-Type"), data)}
	if len(resp.Header) > 0 {
		out.Headers = make(map[string]string, len(resp.Header))
		for k, vs := range resp.Header {
			if len(vs) > 0 {
				out.Headers[http.CanonicalHeaderKey(k)] = vs[0]
			}
		}
		if decoded { // as Go's transport does for the gzip it decodes
			delete(out.Headers, "Content-Encoding")
			delete(out.Headers, "Content-Length")
		}
	}
	return out, nil
}

// transportError wraps err, stripping the *url.Error that would repeat the
// full URL with its query, and says whether the attempt timed out or the
// caller gave up.
func (c *Client) transportError(ctx, actx context.Context, where string, timeout time.Duration, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case ctx.Err() != nil:
		if !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("%s: %w: %w", where, ctx.Err(), err)
		}
		return fmt.Errorf("%s: %w", where, err)
	case actx.Err() != nil:
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: timeout after %s: %w: %w", where, timeout, context.DeadlineExceeded, err)
		}
		return fmt.Errorf("%s: timeout after %s: %w", where, timeout, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s: timeout: %w", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ct))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// decodeBody turns a response body into nil (empty), a decoded JSON value
// (JSON content type, or a body that starts like an object or array), or
// text when it does not parse; in UTF-8 either way (see toUTF8).
func decodeBody(contentType string, data []byte) any {
	data = toUTF8(contentType, data)
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil
	}
	if isJSONType(contentType) || trimmed[0] == '{' || trimmed[0] == '[' {
		if v, err := jsonv.Decode(data); err == nil {
			return v
		}
	}
	return string(data)
}

// Close closes the client's idle connections. A call after Close still
// works and dials anew, so in-flight messages of a replaced flow finish.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	if c.oauth != nil {
		c.oauth.client.CloseIdleConnections() // its own transport, when its TLS differs
	}
	return nil
}
