package jsonv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// stdDecode decodes data with encoding/json, numbers as json.Number.
func stdDecode(data []byte) (any, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// canon normalises a decoded value for comparison: every number, whatever
// its Go type, becomes the canonical text of its decimal value.
func canon(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = canon(x)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = canon(x)
		}
		return a
	case int:
		return decimal(strconv.Itoa(v))
	case float64:
		return decimal(strconv.FormatFloat(v, 'e', -1, 64))
	case json.Number:
		return decimal(string(v))
	}
	return v
}

// number is the canonical form of a decimal value: ±0.digits × 10^exp, with
// no leading or trailing zeros in digits.
type number struct {
	neg    bool
	digits string
	exp    string
}

// decimal returns the canonical form of the number literal s. The exponent
// is computed with big.Int, as a literal's exponent may have any length.
func decimal(s string) any {
	n := number{neg: strings.HasPrefix(s, "-")}
	s = strings.TrimPrefix(s, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	e, ok := new(big.Int).SetString(cmpOr(exp, "0"), 10)
	if !ok {
		panic("bad exponent in " + s)
	}
	ds := intPart + frac
	e.Add(e, big.NewInt(int64(len(intPart))))
	trimmed := strings.TrimLeft(ds, "0")
	e.Sub(e, big.NewInt(int64(len(ds)-len(trimmed))))
	n.digits = strings.TrimRight(trimmed, "0")
	if n.digits == "" {
		return number{digits: "0"} // zero, whatever its sign
	}
	n.exp = e.String()
	return n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkAgainstStd checks Decode against encoding/json on data and that
// Marshal's output decodes to the same value.
func checkAgainstStd(t *testing.T, data []byte) {
	t.Helper()
	got, err := Decode(data)
	want, stdErr := stdDecode(data)
	if (err == nil) != (stdErr == nil) {
		t.Fatalf("Decode(%q): err %v, encoding/json: %v", data, err, stdErr)
	}
	if err != nil {
		checkError(t, data, err)
		return
	}
	if !reflect.DeepEqual(canon(got), canon(want)) {
		t.Fatalf("Decode(%q) = %#v, encoding/json: %#v", data, got, want)
	}
	out, err := Marshal(got)
	if err != nil {
		t.Fatalf("Marshal(Decode(%q)): %v", data, err)
	}
	again, err := Decode(out)
	if err != nil || !reflect.DeepEqual(canon(again), canon(got)) {
		t.Fatalf("Decode(Marshal(Decode(%q))) = %#v, %v; want %#v (marshalled %s)", data, again, err, got, out)
	}
	stdOut, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	a, errA := stdDecode(out)
	b, errB := stdDecode(stdOut)
	if errA != nil || errB != nil || !reflect.DeepEqual(canon(a), canon(b)) {
		t.Fatalf("Marshal(Decode(%q)) = %s, encoding/json: %s", data, out, stdOut)
	}
}

// checkError checks that err, from decoding data, is a SyntaxError at the
// place encoding/json reports, with the same message (where encoding/json's
// is right: it quotes bytes as Latin-1 and reports the end of input as a
// space).
func checkError(t *testing.T, data []byte, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) || se.Offset < 0 || int(se.Offset) > len(data) || se.Line < 1 || se.Column < 1 {
		t.Fatalf("Decode(%q): bad error %#v", data, err)
	}
	var v any
	var std *json.SyntaxError
	if !errors.As(json.Unmarshal(data, &v), &std) {
		t.Fatalf("Decode(%q): encoding/json gives no SyntaxError", data)
	}
	switch off := int(se.Offset); {
	case off == len(data):
		if std.Offset != int64(off) {
			t.Fatalf("Decode(%q): end of input, encoding/json: %d: %v", data, std.Offset, std)
		}
	case std.Offset != int64(off)+1:
		t.Fatalf("Decode(%q): offset %d: %v, encoding/json: %d: %v", data, off, se, std.Offset, std)
	case data[off] < utf8.RuneSelf && std.Error() != se.Msg && !strings.HasPrefix(se.Msg, "exceeded max depth"):
		t.Fatalf("Decode(%q): %v, encoding/json: %v", data, se, std)
	}
}

var diffInputs = []string{
	`null`, `true`, `false`, `0`, `-0`, `-0.0`, `1.10`, `1e400`, `-1e-400`, `4.9e-324`,
	`820982911946154777`, `-9223372036854775808`, `18446744073709551615`,
	`123456789012345678901234`, `0.12345678901234567890123`, `0.30000000000000004`,
	`1e21`, `1e-7`, `100000000000000000000`, `9007199254740993`,
	`""`, `"\ud83c\udf89"`, `"\ud83c"`, `"\udf89\ud83c"`, "\"\xff\xfe\"", "\"\xed\xa0\x80\"",
	`"<script>&amp;</script>"`, `"\u2028\u2029"`, `"\u0000\u001f\u007f"`, `"\/\b\f"`,
	`{"a":1,"a":{"b":[1,2,{"c":null}]}}`, `[[],{},[{}],{"":[]}]`,
	` {"order": {"id": "A-1", "total": 19.99, "lines": [{"sku": "x", "qty": 2}]}} `,
	// Invalid documents.
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `01`, `1.`, `.1`, `1e`, `-`, `+1`,
	`"abc`, "\"a\nb\"", `"\x"`, `"\u12"`, `tru`, `nul`, `[1 2]`, `{"a":1}x`, `NaN`,
	`Infinity`, "\ufeff1", `'a'`, `{a:1}`, `[1,,2]`, `"\'"`,
}

func TestDifferential(t *testing.T) {
	for _, in := range diffInputs {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) { checkAgainstStd(t, []byte(in)) })
	}
	t.Run("order", func(t *testing.T) { checkAgainstStd(t, orderJSON(t)) })
}

func FuzzDecode(f *testing.F) {
	for _, in := range diffInputs {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstStd(t, data)
	})
}
