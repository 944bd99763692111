package mappings

import (
	"testing"

	"github.com/google/uuid"
)

func TestIDs(t *testing.T) {
	runCalls(t, []callCase{
		{fn: "sha256", args: []any{""}, want: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{fn: "sha256", args: []any{42}, want: "73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049"},
		{fn: "sha256", args: []any{nil}, err: "sha256: cannot hash null"},
		{fn: "sha1", args: []any{"abc"}, want: "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{fn: "md5", args: []any{""}, want: "d41d8cd98f00b204e9800998ecf8427e"},
		{fn: "md5", args: []any{nil}, err: "md5: cannot hash null"},
		{fn: "hmac_sha256", args: []any{"key", "The quick brown fox jumps over the lazy dog", "base64"}, want: "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg="},
		{fn: "hmac_sha256", args: []any{"", "body"}, err: "hmac_sha256: key is empty"},
		{fn: "hmac_sha256", args: []any{nil, "body"}, err: "hmac_sha256: key is empty"},
		{fn: "hmac_sha256", args: []any{"key", nil}, err: "hmac_sha256: cannot hash null"},
		{fn: "hmac_sha256", args: []any{"key", "body", "base32"}, err: `hmac_sha256: encoding "base32" is not "hex" or "base64"`},
		{fn: "base64url_encode", args: []any{"\xfb\xff"}, want: "-_8"},
		{fn: "base64url_encode", args: []any{nil}, want: ""},
		{fn: "hex_encode", args: []any{"\x00\xff"}, want: "00ff"},
		{fn: "hex_encode", args: []any{12}, want: "3132"},
	})
	f := map[string]Function{}
	for _, fn := range Catalogue(nil) {
		f[fn.Name] = fn
	}
	a, _ := f["uuid"].Fn()
	b, _ := f["uuid"].Fn()
	u, err := uuid.Parse(a.(string))
	if err != nil || u.Version() != 4 || a == b {
		t.Errorf("uuid() = %v, %v (version %d, second %v)", a, err, u.Version(), b)
	}
}
