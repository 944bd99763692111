package jsonv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMarshal(t *testing.T) {
	type point struct {
		X    int    `json:"x"`
		Note string `json:"note"`
	}
	tests := []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{true, `true`},
		{"", `""`},
		{"a<b>&c", `"a<b>&c"`},
		{"🎉 grüße", `"🎉 grüße"`},
		{"\"\\/\b\f\n\r\t\x00\x1f\x7f", `"\"\\/\b\f\n\r\t\u0000\u001f` + "\x7f\""},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"a\xffb\xc3", `"a\ufffdb\ufffd"`},
		{0, `0`},
		{-42, `-42`},
		{int8(-8), `-8`},
		{int16(16), `16`},
		{int32(-32), `-32`},
		{int64(math.MinInt64), `-9223372036854775808`},
		{uint(7), `7`},
		{uint8(255), `255`},
		{uint16(16), `16`},
		{uint32(32), `32`},
		{uint64(math.MaxUint64), `18446744073709551615`},
		{19.99, `19.99`},
		{-0.0, `0`},
		{math.Copysign(0, -1), `-0`},
		{1e20, `100000000000000000000`},
		{1e21, `1e+21`},
		{1e-6, `0.000001`},
		{1e-7, `1e-7`},
		{123456789.0, `123456789`},
		{float32(0.1), `0.1`},
		{float32(1e21), `1e+21`},
		{json.Number("12.50"), `12.50`},
		{json.Number("-1E400"), `-1E400`},
		{json.Number(""), `0`},
		{map[string]any{"b": 1, "a": []any{}, "c": map[string]any{}}, `{"a":[],"b":1,"c":{}}`},
		{map[string]any(nil), `null`},
		{[]any(nil), `null`},
		{map[string]string{"z": "1", "y": "<2>"}, `{"y":"<2>","z":"1"}`},
		{[]string{"a", "\n"}, `["a","\n"]`},
		{[]int{1, -2}, `[1,-2]`},
		{[]map[string]any{{"a": 1}, nil}, `[{"a":1},null]`},
		{time.Date(2024, 3, 1, 12, 30, 0, 5000, time.UTC), `"2024-03-01T12:30:00.000005Z"`},
		{time.Date(2024, 3, 1, 12, 30, 0, 0, time.FixedZone("", 3600)), `"2024-03-01T12:30:00+01:00"`},
		{point{1, "<&>"}, `{"x":1,"note":"<&>"}`},
		{[]any{map[string]int{"b": 2, "a": 1}, []float64{1.5}}, `[{"a":1,"b":2},[1.5]]`},
		{[]byte("hi"), `"aGk="`},
		{largeObject(20), largeObjectJSON(20)},
		{largeObject(16), largeObjectJSON(16)},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("Marshal(%#v) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestMarshalErrors(t *testing.T) {
	deep := any(1)
	for range maxDepth + 1 {
		deep = []any{deep}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	tests := []struct {
		in   any
		want string
	}{
		{math.NaN(), "jsonv: unsupported value NaN"},
		{math.Inf(-1), "jsonv: unsupported value -Inf"},
		{float32(math.Inf(1)), "jsonv: unsupported value +Inf"},
		{map[string]any{"x": []any{math.NaN()}}, "jsonv: unsupported value NaN"},
		{json.Number("1.2.3"), `jsonv: invalid number literal "1.2.3"`},
		{json.Number("0x10"), `jsonv: invalid number literal "0x10"`},
		{json.Number(" 1"), `jsonv: invalid number literal " 1"`},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "year outside of range"},
		{make(chan int), "jsonv: json: unsupported type: chan int"},
		{deep, "jsonv: exceeded max depth of 10000"},
		{cyclic, "jsonv: exceeded max depth of 10000"},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Marshal(%T) = %.40s, %v; want error %q", tt.in, got, err, tt.want)
		}
	}
}

// TestMarshalLikeStd compares Marshal with encoding/json without HTML
// escaping, byte for byte, on values without json.Number.
func TestMarshalLikeStd(t *testing.T) {
	var order any
	if err := json.Unmarshal(orderJSON(t), &order); err != nil {
		t.Fatal(err)
	}
	values := []any{
		order,
		map[string]any{"s": "<\u2028\xff\x01é🎉>", "f": []any{0.1, 1e-7, 1e21, 5e-324, 1.7976931348623157e308, -0.0, 1e6}},
		[]any{float32(3.4e38), float32(1e-7), float32(16777216), int64(1) << 62},
	}
	for _, v := range values {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(v)
		if want := strings.TrimSuffix(buf.String(), "\n"); err != nil || string(got) != want {
			t.Errorf("Marshal = %.200s, %v\nencoding/json: %.200s", got, err, want)
		}
	}
}

func TestAppend(t *testing.T) {
	got, err := Append([]byte("x="), []any{1, "a"})
	if err != nil || string(got) != `x=[1,"a"]` {
		t.Errorf("Append = %s, %v", got, err)
	}
	got, err = Append([]byte("x="), []any{1, math.NaN()})
	if err == nil || string(got) != "x=" {
		t.Errorf("Append with NaN = %s, %v; want x= and an error", got, err)
	}
}

// largeObject returns an object with n members, keys k00 to k<n-1> inserted
// in reverse order.
func largeObject(n int) map[string]any {
	m := map[string]any{}
	for i := n - 1; i >= 0; i-- {
		m[fmt.Sprintf("k%02d", i)] = i
	}
	return m
}

func largeObjectJSON(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf(`"k%02d":%d`, i, i))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
