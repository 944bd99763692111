package flows_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/flows"
)

// authOf compiles a flow whose http trigger has the given auth (a YAML
// flow mapping) and returns the compiled check. Secrets come from env.
func authOf(t *testing.T, auth string, env map[string]string) *flows.Auth {
	t.Helper()
	e := compileEnv(t, nil)
	e.Getenv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	f := mustCompile(t, e, "trigger: {http: {path: /hook, auth: "+auth+"}}\nsteps: [{log: '\"x\"'}]\n")
	if f.Trigger.Auth == nil {
		t.Fatal("no auth compiled")
	}
	return f.Trigger.Auth
}

func sign(h func() hash.Hash, secret string, body []byte) []byte {
	m := hmac.New(h, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// verify runs a.Verify on a request carrying headers (name, value pairs).
func verify(a *flows.Auth, body []byte, headers ...string) bool {
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return a.Verify(h.Get, body)
}

var payload = []byte(`{"id": 820982911946154777, "email": "zoë@example.nl"}`)

func TestHMACPresets(t *testing.T) {
	b64 := func(s []byte) string { return base64.StdEncoding.EncodeToString(s) }
	for _, tc := range []struct {
		name, auth, header string
		encode             func([]byte) string // the signature as the platform sends it
	}{
		{"shopify", `{hmac: {preset: shopify, secret: shh}}`, "X-Shopify-Hmac-Sha256", b64},
		{"woocommerce", `{hmac: {preset: woocommerce, secret: shh}}`, "X-WC-Webhook-Signature", b64},
		{"github", `{hmac: {preset: github, secret: shh}}`, "X-Hub-Signature-256",
			func(s []byte) string { return "sha256=" + hex.EncodeToString(s) }},
		{"hex with a longer prefix", `{hmac: {header: X-Signature, encoding: hex, prefix: hmac-sha256-hex=, secret: shh}}`, "X-Signature",
			func(s []byte) string { return "hmac-sha256-hex=" + hex.EncodeToString(s) }},
		{"upper-case hex", `{hmac: {header: X-Signature, encoding: hex, prefix: "sha256=", secret: shh}}`, "X-Signature",
			func(s []byte) string { return "sha256=" + strings.ToUpper(hex.EncodeToString(s)) }},
		{"lower-case header name, padded value", `{hmac: {header: x-my-signature, secret: shh}}`, "X-My-Signature",
			func(s []byte) string { return " " + b64(s) + " " }},
		{"preset with its header overridden", `{hmac: {preset: github, header: X-Signature-256, secret: shh}}`, "X-Signature-256",
			func(s []byte) string { return "sha256=" + hex.EncodeToString(s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := authOf(t, tc.auth, nil)
			good := tc.encode(sign(sha256.New, "shh", payload))
			if !verify(a, payload, tc.header, good) {
				t.Fatalf("a correct signature in %s was refused", tc.header)
			}
			tampered := append([]byte(nil), payload...)
			tampered[len(tampered)-2] = 'X'
			for what, ok := range map[string]bool{
				"tampered body":   verify(a, tampered, tc.header, good),
				"wrong secret":    verify(a, payload, tc.header, tc.encode(sign(sha256.New, "other", payload))),
				"other header":    verify(a, payload, "X-Other", good),
				"no header":       verify(a, payload),
				"signed over nil": verify(a, payload, tc.header, tc.encode(sign(sha256.New, "shh", nil))),
			} {
				if ok {
					t.Errorf("%s: accepted", what)
				}
			}
		})
	}
}

func TestHMACPrefixRequired(t *testing.T) {
	a := authOf(t, `{hmac: {preset: github, secret: shh}}`, nil)
	sig := hex.EncodeToString(sign(sha256.New, "shh", payload))
	for _, v := range []string{sig, "sha1=" + sig, "SHA256=" + sig, "sha256 =" + sig, "sha256=", "sha256"} {
		if verify(a, payload, "X-Hub-Signature-256", v) {
			t.Errorf("%q accepted", v)
		}
	}
}

func TestHMACAlgorithms(t *testing.T) {
	for alg, h := range map[string]func() hash.Hash{"sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New} {
		a := authOf(t, `{hmac: {header: X-Sig, encoding: hex, algorithm: `+alg+`, secret: shh}}`, nil)
		if !verify(a, payload, "X-Sig", hex.EncodeToString(sign(h, "shh", payload))) {
			t.Errorf("%s: a correct signature was refused", alg)
		}
		other := sha256.New
		if alg == "sha256" {
			other = sha512.New
		}
		if verify(a, payload, "X-Sig", hex.EncodeToString(sign(other, "shh", payload))) {
			t.Errorf("%s: a signature made with another hash was accepted", alg)
		}
	}
}

// During a rotation the sender signs with the old or the new secret; both
// pass, wherever the matching one stands in the list, and nothing else does.
func TestHMACRotationAcceptsEverySecret(t *testing.T) {
	env := map[string]string{"OLD": "old-secret", "NEW": "new-secret"}
	a := authOf(t, `{hmac: {preset: shopify, secret: "${env:OLD}", secrets: ["${env:NEW}", third]}}`, env)
	if len(a.Secrets) != 3 {
		t.Fatalf("%d secrets compiled, want 3", len(a.Secrets))
	}
	for _, secret := range []string{"old-secret", "new-secret", "third"} {
		sig := base64.StdEncoding.EncodeToString(sign(sha256.New, secret, payload))
		if !verify(a, payload, "X-Shopify-Hmac-Sha256", sig) {
			t.Errorf("signed with %s: refused", secret)
		}
	}
	sig := base64.StdEncoding.EncodeToString(sign(sha256.New, "retired", payload))
	if verify(a, payload, "X-Shopify-Hmac-Sha256", sig) {
		t.Error("signed with a secret not in the list: accepted")
	}
}

// Malformed signatures are refused, never a panic: bad alphabet, wrong
// length, URL-safe base64 where standard is expected, empty values.
func TestHMACBadEncodings(t *testing.T) {
	sum := sign(sha256.New, "shh", payload)
	b64 := authOf(t, `{hmac: {header: X-Sig, secret: shh}}`, nil)
	hx := authOf(t, `{hmac: {header: X-Sig, encoding: hex, secret: shh}}`, nil)
	for _, tc := range []struct {
		a   *flows.Auth
		sig string
	}{
		{b64, ""},
		{b64, "   "},
		{b64, "%%%%"},
		{b64, base64.StdEncoding.EncodeToString(sum)[:20]},       // cut short: not valid base64
		{b64, base64.StdEncoding.EncodeToString(sum[:16])},       // valid base64, half the MAC
		{b64, base64.StdEncoding.EncodeToString(append(sum, 0))}, // one byte too many
		{b64, base64.RawStdEncoding.EncodeToString(sum)},         // padding missing
		{b64, hex.EncodeToString(sum)},                           // hex where base64 is expected
		{hx, "zz" + hex.EncodeToString(sum)[2:]},                 // not hex
		{hx, hex.EncodeToString(sum)[1:]},                        // odd length
		{hx, base64.StdEncoding.EncodeToString(sum)},             // base64 where hex is expected
		{hx, hex.EncodeToString(sum) + "00"},                     // one byte too many
		{hx, strings.Repeat("0", len(hex.EncodeToString(sum)))},  // right length, all zero
	} {
		if verify(tc.a, payload, "X-Sig", tc.sig) {
			t.Errorf("%s signature %q accepted", tc.a.Encoding, tc.sig)
		}
	}
	// URL-safe base64 differs from standard only where the MAC has bytes
	// that encode to + or /; find a body whose MAC has one.
	for i := 0; i < 1000; i++ {
		body := []byte(strings.Repeat("x", i))
		std := base64.StdEncoding.EncodeToString(sign(sha256.New, "shh", body))
		if url := base64.URLEncoding.EncodeToString(sign(sha256.New, "shh", body)); url != std {
			if verify(b64, body, "X-Sig", url) {
				t.Errorf("URL-safe base64 %q accepted for standard", url)
			}
			break
		}
	}
}

func TestBearerAndAPIKey(t *testing.T) {
	bearer := authOf(t, `{bearer: {token: "${env:TOKEN}"}}`, map[string]string{"TOKEN": "t0k"})
	for v, want := range map[string]bool{"Bearer t0k": true, "Bearer t0": false, "Bearer t0kk": false, "t0k": false, "bearer t0k": true, "BEARER t0k": true, "Basic t0k": false, "Bearer ": false, "": false} {
		if got := verify(bearer, nil, "Authorization", v); got != want {
			t.Errorf("Authorization %q: %v, want %v", v, got, want)
		}
	}
	key := authOf(t, `{api_key: {key: k3y}}`, nil)
	if !verify(key, nil, "X-API-Key", "k3y") || verify(key, nil, "X-API-Key", "k3") || verify(key, nil, "X-API-Key", "") || verify(key, nil, "X-Other", "k3y") {
		t.Error("api_key: wrong verdicts")
	}
	custom := authOf(t, `{api_key: {header: x-wms-key, key: k3y}}`, nil)
	if !verify(custom, nil, "X-Wms-Key", "k3y") {
		t.Error("api_key in a custom header refused")
	}
}

func TestAuthCompileErrors(t *testing.T) {
	e := compileEnv(t, nil)
	e.Getenv = func(k string) (string, bool) { return "", k == "EMPTY" }
	for src, want := range map[string]string{
		`{hmac: {secret: shh}}`:                           "needs a header or a preset",
		`{hmac: {header: X-Sig, secret: "${env:EMPTY}"}}`: "the secret is empty",
		`{hmac: {header: X-Sig, secret: "${env:UNSET}"}}`: "UNSET",
		// An empty token would let in every request that sends
		// "Authorization: Bearer " with nothing after it.
		`{bearer: {token: "${env:EMPTY}"}}`:   "trigger.http.auth.bearer: the token is empty",
		`{bearer: {token: "${env:EMPTY:-}"}}`: "trigger.http.auth.bearer: the token is empty",
		`{api_key: {key: "${env:EMPTY}"}}`:    "trigger.http.auth.api_key: the key is empty",
		`{bearer: {token: "${env:UNSET}"}}`:   "UNSET",
	} {
		_, ds := compileWith(t, e, "trigger: {http: {path: /hook, auth: "+src+"}}\nsteps: [{log: '\"x\"'}]\n")
		if !strings.Contains(ds.Error(), want) {
			t.Errorf("%s: diagnostics %q, want %q", src, ds.Error(), want)
		}
	}
}

// Verify computes the MAC of every secret whatever the outcome: the work
// (here, its allocations) is the same when the first, the last or no
// secret matches, so timing does not tell which secret is in use. The
// comparisons themselves are crypto/subtle's.
func TestHMACNoEarlyExit(t *testing.T) {
	a := authOf(t, `{hmac: {header: X-Sig, secret: s1, secrets: [s2, s3]}}`, nil)
	h := http.Header{}
	allocs := func(secret string) float64 {
		h.Set("X-Sig", base64.StdEncoding.EncodeToString(sign(sha256.New, secret, payload)))
		return testing.AllocsPerRun(100, func() { a.Verify(h.Get, payload) })
	}
	first, last, none := allocs("s1"), allocs("s3"), allocs("nope")
	if first != last || last != none {
		t.Errorf("allocations per Verify: first secret %v, last %v, none %v; want equal", first, last, none)
	}
}
