package flows

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/textproto"
	"strings"

	"github.com/conveyor-run/conveyor/dsl"
)

// Auth is an inbound authentication check with its secrets resolved.
type Auth struct {
	Kind      string // hmac | bearer | api_key
	Header    string
	Secrets   [][]byte // hmac: every accepted secret (rotation); bearer/api_key: accepted values
	Encoding  string
	Prefix    string
	Algorithm string
}

func (c *compiler) auth(a *dsl.Auth) *Auth {
	switch {
	case a.HMAC != nil:
		h := a.HMAC
		out := &Auth{Kind: "hmac", Header: h.Header, Encoding: h.Encoding, Prefix: h.Prefix, Algorithm: h.Algorithm}
		if p, ok := hmacPresets[h.Preset]; ok {
			// A preset fills what the analyst did not write.
			out.Header = cmp.Or(out.Header, p.Header)
			out.Encoding = cmp.Or(out.Encoding, p.Encoding)
			out.Prefix = cmp.Or(out.Prefix, p.Prefix)
		}
		if out.Header == "" {
			c.add(h.At, "trigger.http.auth.hmac: needs a header or a preset", "e.g. preset: shopify, or header: X-Signature")
		}
		if out.Encoding == "" {
			out.Encoding = "base64"
		}
		if out.Algorithm == "" {
			out.Algorithm = "sha256"
		}
		for _, s := range append([]dsl.ConfigString{h.Secret}, h.Secrets...) {
			if s.Raw == "" {
				continue // secrets: [...] alone leaves secret unwritten
			}
			if v := c.secret(s, "trigger.http.auth.hmac", "secret"); v != "" {
				out.Secrets = append(out.Secrets, []byte(v))
			}
		}
		return out
	case a.Bearer != nil:
		return &Auth{Kind: "bearer", Header: "Authorization", Secrets: [][]byte{[]byte(c.secret(a.Bearer.Token, "trigger.http.auth.bearer", "token"))}}
	case a.APIKey != nil:
		header := a.APIKey.Header
		if header == "" {
			header = "X-API-Key"
		}
		return &Auth{Kind: "api_key", Header: header, Secrets: [][]byte{[]byte(c.secret(a.APIKey.Key, "trigger.http.auth.api_key", "key"))}}
	}
	return nil
}

// secret resolves a secret of an auth check. An empty one is a diagnostic:
// an empty bearer token would let in every request that sends
// "Authorization: Bearer " with nothing after it, and a variable set to ""
// (or a default of ${env:NAME:-}) is a deployment mistake, not a choice.
func (c *compiler) secret(s dsl.ConfigString, what, name string) string {
	v, err := s.Resolve(c.env.Getenv)
	switch {
	case err != nil:
		c.resolve(s, what+"."+name) // reports the missing variable
	case v == "":
		c.add(s.At, fmt.Sprintf("%s: the %s is empty", what, name), "set the variable to the value the sender uses")
	}
	return v
}

// hmacPresets are how common platforms sign their webhooks: an HMAC over
// the raw body in a header.
var hmacPresets = map[string]Auth{
	"shopify":     {Header: "X-Shopify-Hmac-Sha256", Encoding: "base64"},
	"woocommerce": {Header: "X-WC-Webhook-Signature", Encoding: "base64"},
	"github":      {Header: "X-Hub-Signature-256", Encoding: "hex", Prefix: "sha256="},
}

// Verify reports whether a request with these headers and raw body passes
// the check. Comparisons take constant time.
func (a *Auth) Verify(header func(string) string, body []byte) bool {
	got := header(textproto.CanonicalMIMEHeaderKey(a.Header))
	switch a.Kind {
	case "hmac":
		if a.Prefix != "" {
			if !strings.HasPrefix(got, a.Prefix) {
				return false
			}
			got = got[len(a.Prefix):]
		}
		var sig []byte
		var err error
		if a.Encoding == "hex" {
			sig, err = hex.DecodeString(strings.ToLower(strings.TrimSpace(got)))
		} else {
			sig, err = base64.StdEncoding.DecodeString(strings.TrimSpace(got))
		}
		if err != nil || len(sig) == 0 {
			return false
		}
		ok := 0
		for _, secret := range a.Secrets {
			m := hmac.New(a.hash(), secret)
			m.Write(body)
			ok |= subtle.ConstantTimeCompare(m.Sum(nil), sig)
		}
		return ok == 1
	case "bearer":
		// The scheme is case-insensitive (RFC 9110 section 11.1):
		// clients send "bearer" too.
		scheme, tok, found := strings.Cut(got, " ")
		return found && tok != "" && strings.EqualFold(scheme, "Bearer") && a.anySecret([]byte(tok))
	case "api_key":
		return got != "" && a.anySecret([]byte(got))
	}
	return false
}

// Credential is the header that carries a secret of the sender's (a
// bearer token, an API key), "" for hmac (its signature is no secret).
// Once verified it is dropped from the message: it would be stored, and
// shown with the message to anyone who may read messages.
func (a *Auth) Credential() string {
	if a.Kind == "hmac" {
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(a.Header)
}

func (a *Auth) anySecret(v []byte) bool {
	ok := 0
	for _, s := range a.Secrets {
		ok |= subtle.ConstantTimeCompare(s, v)
	}
	return ok == 1
}

func (a *Auth) hash() func() hash.Hash {
	switch a.Algorithm {
	case "sha1":
		return sha1.New
	case "sha512":
		return sha512.New
	}
	return sha256.New
}
