package httpconn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
)

// tokenLeeway is how long before its expiry a cached token is replaced,
// so that a token never expires on its way to the API.
const tokenLeeway = 30 * time.Second

// Client authentication styles at the token endpoint (RFC 6749 2.3.1).
const (
	authStyleAuto  = ""      // basic first; form when the endpoint refuses basic
	authStyleBasic = "basic" // Authorization: Basic, id and secret form-encoded
	authStyleForm  = "form"  // client_id and client_secret in the form body
)

// oauth2Source gets access tokens with the OAuth2 client-credentials grant
// and caches them until shortly before they expire. Concurrent callers
// share one fetch. Errors name the token URL without its query and never
// carry the secret or a token.
type oauth2Source struct {
	tokenURL     *url.URL
	clientID     string
	clientSecret string
	scopes       []string
	client       *http.Client // the connection's, so its TLS settings apply
	timeout      time.Duration
	now          func() time.Time

	mu       sync.Mutex // guards the fields below
	style    string     // learned by the auto style
	token    string
	expiry   time.Time // zero: until the API answers 401
	inflight *tokenFetch
}

// tokenFetch is a fetch in flight; done closes once token or err is set.
type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
}

// newOAuth2 parses auth.oauth2: {token_url, client_id, client_secret,
// scopes, auth_style}.
func newOAuth2(v any) (*oauth2Source, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("auth.oauth2 must be a map, got %T", v)
	}
	o := &oauth2Source{now: time.Now}
	var errs []error
	str := func(k string, required bool) string {
		s, ok := m[k].(string)
		if m[k] != nil && !ok {
			errs = append(errs, fmt.Errorf("auth.oauth2.%s must be a string, got %T", k, m[k]))
		} else if required && s == "" {
			errs = append(errs, fmt.Errorf("auth.oauth2.%s is required", k))
		}
		return s
	}
	if err := connectors.CheckFields("auth.oauth2", m, "token_url", "client_id", "client_secret", "scopes", "auth_style"); err != nil {
		errs = append(errs, err)
	}
	if raw := str("token_url", true); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			errs = append(errs, errors.New("auth.oauth2.token_url must be an absolute http or https URL without credentials"))
		} else {
			o.tokenURL = u
		}
	}
	o.clientID, o.clientSecret = str("client_id", true), str("client_secret", true)
	switch o.style = str("auth_style", false); o.style {
	case authStyleAuto, authStyleBasic, authStyleForm:
	default:
		errs = append(errs, fmt.Errorf("auth.oauth2.auth_style must be basic or form, got %q", o.style))
	}
	switch s := m["scopes"].(type) {
	case nil:
	case []string:
		o.scopes = s
	case []any:
		for _, x := range s {
			if xs, ok := x.(string); ok {
				o.scopes = append(o.scopes, xs)
			} else {
				errs = append(errs, fmt.Errorf("auth.oauth2.scopes must be strings, got %T", x))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("auth.oauth2.scopes must be a list of strings, got %T", s))
	}
	return o, errors.Join(errs...)
}

// Token returns a valid access token, from the cache or the endpoint.
func (o *oauth2Source) Token(ctx context.Context) (string, error) {
	o.mu.Lock()
	if o.token != "" && (o.expiry.IsZero() || o.now().Before(o.expiry)) {
		tok := o.token
		o.mu.Unlock()
		return tok, nil
	}
	f := o.inflight
	if f == nil {
		// The fetch is not bound to this caller: others wait for it too.
		f = &tokenFetch{done: make(chan struct{})}
		o.inflight = f
		go o.fetch(f)
	}
	o.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Invalidate drops tok from the cache (the API refused it), unless a newer
// token replaced it already.
func (o *oauth2Source) Invalidate(tok string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.token == tok {
		o.token = ""
	}
}

func (o *oauth2Source) fetch(f *tokenFetch) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	o.mu.Lock()
	style := o.style
	o.mu.Unlock()
	tok, lifetime, err := o.request(ctx, style)
	var se *tokenStatusError
	if style == authStyleAuto && errors.As(err, &se) && (se.status == http.StatusBadRequest || se.status == http.StatusUnauthorized) {
		// Some servers take the client only in the form body.
		if tok, lifetime, err = o.request(ctx, authStyleForm); err == nil {
			style = authStyleForm
		}
	} else if style == authStyleAuto && err == nil {
		style = authStyleBasic
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight = nil
	f.token, f.err = tok, err
	if err == nil {
		o.style, o.token, o.expiry = style, tok, time.Time{}
		if lifetime > 0 {
			o.expiry = o.now().Add(lifetime - min(tokenLeeway, lifetime/2))
		}
	}
	close(f.done)
}

// tokenStatusError is a token endpoint's refusal; after a 400 or 401 the
// auto style tries the form body.
type tokenStatusError struct {
	status int
	msg    string
}

func (e *tokenStatusError) Error() string { return e.msg }

// request makes one token request and returns the token and its lifetime
// (0: not said).
func (o *oauth2Source) request(ctx context.Context, style string) (string, time.Duration, error) {
	where := "oauth2 token from " + redact(o.tokenURL)
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(o.scopes) > 0 {
		form.Set("scope", strings.Join(o.scopes, " "))
	}
	if style == authStyleForm {
		form.Set("client_id", o.clientID)
		form.Set("client_secret", o.clientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.tokenURL.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", where, errors.Unwrap(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	if style != authStyleForm {
		req.SetBasicAuth(url.QueryEscape(o.clientID), url.QueryEscape(o.clientSecret))
	}
	resp, err := o.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL with its query
		}
		return "", 0, fmt.Errorf("%s: %w", where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("%s: reading the response: %w", where, err)
	}
	var body struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	jsonErr := json.Unmarshal(data, &body)
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("%s: status %d", where, resp.StatusCode)
		if body.Error != "" && validHeaderValue(body.Error) && len(body.Error) <= 64 {
			msg += " (" + body.Error + ")" // an RFC 6749 5.2 code; the description may echo input
		}
		return "", 0, &tokenStatusError{resp.StatusCode, msg}
	}
	switch {
	case jsonErr != nil:
		return "", 0, fmt.Errorf("%s: the response is not a JSON token response", where)
	case body.AccessToken == "":
		return "", 0, fmt.Errorf("%s: the response has no access_token", where)
	case !validHeaderValue(body.AccessToken):
		return "", 0, fmt.Errorf("%s: the access_token contains a control character", where)
	case body.TokenType != "" && !strings.EqualFold(body.TokenType, "bearer"):
		return "", 0, fmt.Errorf("%s: token_type %q is not supported (only bearer)", where, body.TokenType)
	}
	// expires_in is a number of seconds; some servers send it as a string.
	secs, _ := strconv.ParseFloat(strings.Trim(string(body.ExpiresIn), `"`), 64)
	return body.AccessToken, time.Duration(secs * float64(time.Second)), nil
}
