package mappings

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/google/uuid"
)

func init() {
	for _, f := range []Function{
		{Name: "uuid", Signature: "uuid() string", Fn: func(...any) (any, error) { return uuid.NewString(), nil },
			Description: "Returns a new random UUID (version 4), e.g. 0b5e3c1a-9f1e-4a8e-b2a7-3c9d5e7f1a2b.",
			Example:     `len(uuid()) == 36`},
		{Name: "sha256", Signature: "sha256(s) string", Fn: hashHex(sha256.New),
			Description: "Returns the SHA-256 hash of s as lower-case hex.",
			Example:     `sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"`},
		{Name: "sha1", Signature: "sha1(s) string", Fn: hashHex(sha1.New),
			Description: "Returns the SHA-1 hash of s as lower-case hex; use it only where a partner requires it.",
			Example:     `sha1("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"`},
		{Name: "md5", Signature: "md5(s) string", Fn: hashHex(md5.New),
			Description: "Returns the MD5 hash of s as lower-case hex; use it only where a partner requires it.",
			Example:     `md5("abc") == "900150983cd24fb0d6963f7d28e17f72"`},
		{Name: "hmac_sha256", Signature: "hmac_sha256(key, s[, encoding]) string", Fn: hmacSHA256,
			Description: `Signs s with key using HMAC-SHA256, as "hex" (default) or "base64", e.g. to sign or check webhooks.`,
			Example:     `hmac_sha256("key", "The quick brown fox jumps over the lazy dog") == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"`},
		{Name: "base64url_encode", Signature: "base64url_encode(s) string", Fn: textFunc(func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }),
			Description: "Encodes s as URL-safe base64 without padding (as in JWTs); toBase64 is the standard alphabet.",
			Example:     `base64url_encode("subjects?_d") == "c3ViamVjdHM_X2Q"`},
		{Name: "hex_encode", Signature: "hex_encode(s) string", Fn: textFunc(func(s string) string { return hex.EncodeToString([]byte(s)) }),
			Description: "Encodes the bytes of s as lower-case hex.",
			Example:     `hex_encode("Hi!") == "486921"`},
	} {
		registerLib(f)
	}
}

// hashInput is the text a hash is taken of; null is refused rather than
// hashed as empty text, since it is almost always a missing field.
func hashInput(v any) ([]byte, error) {
	if v == nil {
		return nil, errors.New("cannot hash null")
	}
	return []byte(stringOf(v)), nil
}

func hashHex(h func() hash.Hash) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		b, err := hashInput(args[0])
		if err != nil {
			return nil, err
		}
		sum := h()
		sum.Write(b)
		return hex.EncodeToString(sum.Sum(nil)), nil
	}
}

func hmacSHA256(args ...any) (any, error) {
	key := stringOf(args[0])
	if key == "" {
		return nil, errors.New("key is empty")
	}
	b, err := hashInput(args[1])
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write(b)
	sum := m.Sum(nil)
	enc := "hex"
	if len(args) > 2 {
		enc = stringOf(args[2])
	}
	switch enc {
	case "hex":
		return hex.EncodeToString(sum), nil
	case "base64":
		return base64.StdEncoding.EncodeToString(sum), nil
	}
	return nil, fmt.Errorf(`encoding %s is not "hex" or "base64"`, describe(args[2]))
}
