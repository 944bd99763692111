package jsonv

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{`null`, nil},
		{` true `, true},
		{"\t\r\nfalse\n", false},
		{`""`, ""},
		{`"plain ascii"`, "plain ascii"},
		{`"grüße, 東京 🎉"`, "grüße, 東京 🎉"},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{`"\u00e9\u00E9 \u0000"`, "éé \x00"},
		{`"\ud83c\udf89"`, "🎉"},
		{`"a\ud83c\udf89b\ud83d\ude00"`, "a🎉b😀"},
		{`"\ud83c"`, "\uFFFD"},
		{`"\ud83cx"`, "\uFFFDx"},
		{`"\ud83c\u0041"`, "\uFFFDA"},
		{`"\udf89\ud83c"`, "\uFFFD\uFFFD"},
		{`"\ud83c\ud83c\udf89"`, "\uFFFD🎉"},
		{`"\ud83c\n"`, "\uFFFD\n"},
		{"\"\xff\"", "\uFFFD"},
		{"\"a\xc3\"", "a\uFFFD"},
		{"\"\xed\xa0\x80\"", "\uFFFD\uFFFD\uFFFD"}, // UTF-8 encoded surrogate
		{"\"\xe2\x82\"", "\uFFFD\uFFFD"},
		{"\"\xff\\n\"", "\uFFFD\n"},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
		{`[1, "a", [true], {"b": null}]`, []any{1, "a", []any{true}, map[string]any{"b": nil}}},
		{`{"a":1,"a":2,"b":{"a":3}}`, map[string]any{"a": 2, "b": map[string]any{"a": 3}}},
		{`{"\u0061":1}`, map[string]any{"a": 1}},
		{`{"":""}`, map[string]any{"": ""}},
		{` { "x" : [ ] , "y" : { } } `, map[string]any{"x": []any{}, "y": map[string]any{}}},
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeNumbers(t *testing.T) {
	negZero := math.Copysign(0, -1)
	tests := []struct {
		in   string
		want any
	}{
		{"0", 0},
		{"-0", 0},
		{"7", 7},
		{"-42", -42},
		{"820982911946154777", 820982911946154777},
		{"9223372036854775807", math.MaxInt64},
		{"-9223372036854775808", math.MinInt64},
		{"9223372036854775808", json.Number("9223372036854775808")},
		{"-9223372036854775809", json.Number("-9223372036854775809")},
		{"18446744073709551615", json.Number("18446744073709551615")},
		{"12345678901234567890", json.Number("12345678901234567890")},
		{"123456789012345678901234", json.Number("123456789012345678901234")},
		{"100000000000000000000", json.Number("100000000000000000000")}, // an integer too big for int stays one
		{"-100000000000000000000", json.Number("-100000000000000000000")},
		{"9007199254740993", 9007199254740993},
		{"9007199254740993.0", json.Number("9007199254740993.0")},
		{"0.1", 0.1},
		{"19.99", 19.99},
		{"-2.5", -2.5},
		{"1.10", 1.1},
		{"1.0", 1.0},
		{"0.0", 0.0},
		{"-0.0", negZero},
		{"0e10", 0.0},
		{"1e20", 1e20},
		{"1E+2", 100.0},
		{"1.5e3", 1500.0},
		{"1e-7", 1e-7},
		{"-2.5e-3", -0.0025},
		{"0.000000000000000000001", 1e-21},
		{"123456789012345e-30", 123456789012345e-30},
		{"3.141592653589793", math.Pi},
		{"0.30000000000000004", 0.30000000000000004},
		{"0.3000000000000000444", json.Number("0.3000000000000000444")},
		{"0.12345678901234567890123", json.Number("0.12345678901234567890123")},
		{"1.0000000000000000000000000001", json.Number("1.0000000000000000000000000001")},
		{"1.0000000000000000000000000000", 1.0},
		{"1" + strings.Repeat("0", 400) + "e-400", 1.0},
		{"1.7976931348623157e308", math.MaxFloat64},
		{"5e-324", 5e-324},
		{"4.9e-324", json.Number("4.9e-324")},
		{"2.2250738585072014e-308", 2.2250738585072014e-308},
		{"1e400", json.Number("1e400")},
		{"-1e400", json.Number("-1e400")},
		{"1e-400", json.Number("1e-400")},
		{"1e99999999999999999999", json.Number("1e99999999999999999999")},
		{"0e99999999999999999999", 0.0},
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tt.in, err)
			continue
		}
		if reflect.TypeOf(got) != reflect.TypeOf(tt.want) || got != tt.want ||
			math.Signbit(toFloat(got)) != math.Signbit(toFloat(tt.want)) {
			t.Errorf("Decode(%s) = %T %#v, want %T %#v", tt.in, got, got, tt.want, tt.want)
		}
	}
}

// TestNumberSemantics checks Decode on random number literals against a
// reference of the rules: int if it fits, json.Number for any other integer,
// float64 if its shortest form has the literal's value, json.Number otherwise.
func TestNumberSemantics(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789"[rng.IntN(10)]
			if rng.IntN(4) == 0 {
				b[i] = '0' // runs of zeros
			}
		}
		return string(b)
	}
	for range 200000 {
		lit := digits(1 + rng.IntN(22))
		if len(lit) > 1 && lit[0] == '0' {
			lit = "0"
		}
		if rng.IntN(2) == 0 {
			lit += "." + digits(1+rng.IntN(22))
		}
		if rng.IntN(3) == 0 {
			lit += []string{"e", "E", "e+", "e-"}[rng.IntN(4)] + strconv.Itoa(rng.IntN(340))
		}
		if rng.IntN(2) == 0 {
			lit = "-" + lit
		}
		var want any = json.Number(lit)
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
			want = int(i)
		} else if f, err := strconv.ParseFloat(lit, 64); err == nil && strings.ContainsAny(lit, ".eE") &&
			reflect.DeepEqual(decimal(strconv.FormatFloat(f, 'e', -1, 64)), decimal(lit)) {
			want = f
		}
		got, err := Decode([]byte(lit))
		if err != nil || reflect.TypeOf(got) != reflect.TypeOf(want) || got != want {
			t.Fatalf("Decode(%s) = %T %v, %v; want %T %v", lit, got, got, err, want, want)
		}
		if f, ok := got.(float64); ok && math.Signbit(f) != strings.HasPrefix(lit, "-") {
			t.Fatalf("Decode(%s) = %v: wrong sign", lit, f)
		}
	}
}

func toFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		in        string
		line, col int
		msg       string
	}{
		{``, 1, 1, "unexpected end of JSON input"},
		{"  \n ", 2, 2, "unexpected end of JSON input"},
		{`{"a" 1}`, 1, 6, "invalid character '1' after object key"},
		{"{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3\n}", 4, 3, `invalid character '"' after object key:value pair`},
		{"{\n  \"id\": 7,\n  \"name\" }", 3, 10, "invalid character '}' after object key"},
		{`{,}`, 1, 2, "invalid character ',' looking for beginning of object key string"},
		{`{"a":1,}`, 1, 8, "invalid character '}' looking for beginning of object key string"},
		{`{a:1}`, 1, 2, "invalid character 'a' looking for beginning of object key string"},
		{`{"a":}`, 1, 6, "invalid character '}' looking for beginning of value"},
		{`{"a":1`, 1, 7, "unexpected end of JSON input"},
		{`[1,]`, 1, 4, "invalid character ']' looking for beginning of value"},
		{`[1 2]`, 1, 4, "invalid character '2' after array element"},
		{`[`, 1, 2, "unexpected end of JSON input"},
		{`]`, 1, 1, "invalid character ']' looking for beginning of value"},
		{`tru`, 1, 4, "unexpected end of JSON input"},
		{`trux`, 1, 4, "invalid character 'x' in literal true (expecting 'e')"},
		{`[nul1]`, 1, 5, "invalid character '1' in literal null (expecting 'l')"},
		{`fals`, 1, 5, "unexpected end of JSON input"},
		{`"abc`, 1, 5, "unexpected end of JSON input"},
		{"\"a\tb\"", 1, 3, `invalid character '\t' in string literal`},
		{"[\"a\nb\"]", 1, 4, `invalid character '\n' in string literal`},
		{`"\x"`, 1, 3, "invalid character 'x' in string escape code"},
		{`"\'"`, 1, 3, `invalid character '\'' in string escape code`},
		{`"\`, 1, 3, "unexpected end of JSON input"},
		{`"\u12G4"`, 1, 6, `invalid character 'G' in \u hexadecimal character escape`},
		{`"\u12`, 1, 6, "unexpected end of JSON input"},
		{`"\ud83c\uZZZZ"`, 1, 10, `invalid character 'Z' in \u hexadecimal character escape`},
		{`-`, 1, 2, "unexpected end of JSON input"},
		{`-a`, 1, 2, "invalid character 'a' in numeric literal"},
		{`+1`, 1, 1, "invalid character '+' looking for beginning of value"},
		{`.5`, 1, 1, "invalid character '.' looking for beginning of value"},
		{`1.`, 1, 3, "unexpected end of JSON input"},
		{`1.x`, 1, 3, "invalid character 'x' after decimal point in numeric literal"},
		{`1e`, 1, 3, "unexpected end of JSON input"},
		{`1e+x`, 1, 4, "invalid character 'x' in exponent of numeric literal"},
		{`01`, 1, 2, "invalid character '1' after top-level value"},
		{`[01]`, 1, 3, "invalid character '1' after array element"},
		{`1 2`, 1, 3, "invalid character '2' after top-level value"},
		{"{\"a\":1}\n}", 2, 1, "invalid character '}' after top-level value"},
		{`NaN`, 1, 1, "invalid character 'N' looking for beginning of value"},
		{`“quoted”`, 1, 1, "invalid character '“' looking for beginning of value"},
		{"\xff", 1, 1, `invalid character '\xff' looking for beginning of value`},
		{"\ufeff{}", 1, 1, `invalid character '\ufeff' looking for beginning of value`},
		{`'a'`, 1, 1, `invalid character '\'' looking for beginning of value`},
		{"{\"a\":\x00}", 1, 6, `invalid character '\x00' looking for beginning of value`},
		{"[1,\n\t2,\n\t3,,]", 3, 4, "invalid character ',' looking for beginning of value"},
	}
	for _, tt := range tests {
		v, err := Decode([]byte(tt.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Decode(%q) = %v, %v; want a *SyntaxError", tt.in, v, err)
			continue
		}
		if se.Line != tt.line || se.Column != tt.col || se.Msg != tt.msg {
			t.Errorf("Decode(%q): got %d:%d %q, want %d:%d %q", tt.in, se.Line, se.Column, se.Msg, tt.line, tt.col, tt.msg)
		}
		checkError(t, []byte(tt.in), err)
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Decode([]byte("{\n  \"order\": {\n    \"id\": 7,\n    \"lines\" }\n}"))
	const want = "line 4, column 13: invalid character '}' after object key"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	var se *SyntaxError
	if errors.As(err, &se) && se.Offset != 40 {
		t.Errorf("offset %d, want 40", se.Offset)
	}
}

func TestDecodeDepth(t *testing.T) {
	for _, open := range []string{"[", `{"a":`} {
		end := map[string]string{"[": "]", `{"a":`: "}"}[open]
		ok := strings.Repeat(open, maxDepth) + "1" + strings.Repeat(end, maxDepth)
		if _, err := Decode([]byte(ok)); err != nil {
			t.Errorf("depth %d: %v", maxDepth, err)
		}
		deep := strings.Repeat(open, maxDepth+1) + "1" + strings.Repeat(end, maxDepth+1)
		_, err := Decode([]byte(deep))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Msg != "exceeded max depth of 10000" || int(se.Offset) != maxDepth*len(open) {
			t.Errorf("depth %d: got %v", maxDepth+1, err)
		}
		if json.Valid([]byte(deep)) {
			t.Error("encoding/json accepts the deep document")
		}
	}
	// Far deeper input fails fast instead of exhausting the stack.
	if _, err := Decode([]byte(strings.Repeat("[", 1<<22))); err == nil {
		t.Error("no error for 4M open brackets")
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":[true,false,null],"c":{"z":"x","y":""}}`, `{"a":[true,false,null],"b":1,"c":{"y":"","z":"x"}}`},
		{` [ 1 , 2.50 , -0.0 , 1e3 , 1E-7 , 1e21 ] `, `[1,2.5,-0,1000,1e-7,1e+21]`},
		{`[820982911946154777,-9223372036854775808,18446744073709551615]`, `[820982911946154777,-9223372036854775808,18446744073709551615]`},
		{`[123456789012345678901234,0.12345678901234567890123,1e400,1E400]`, `[123456789012345678901234,0.12345678901234567890123,1e400,1E400]`},
		{`{"id":1000000000000000000000}`, `{"id":1000000000000000000000}`}, // an id too big for int keeps its digits
		{`["\ud83c\udf89","<a&b>","\u2028\u2029","\u0001\u001f","\"\\\/"]`, `["🎉","<a&b>","\u2028\u2029","\u0001\u001f","\"\\/"]`},
		{"[\"\xff\",\"\\ud800\"]", "[\"\uFFFD\",\"\uFFFD\"]"},
		{`{"a":{"a":{"a":[[[{}]]]}}}`, `{"a":{"a":{"a":[[[{}]]]}}}`},
	}
	for _, tt := range tests {
		v, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tt.in, err)
			continue
		}
		out, err := Marshal(v)
		if err != nil || string(out) != tt.want {
			t.Errorf("Marshal(Decode(%s)) = %s, %v; want %s", tt.in, out, err, tt.want)
		}
		again, err := Decode(out)
		if err != nil || !reflect.DeepEqual(canon(again), canon(v)) {
			t.Errorf("Decode(%s) = %#v, %v; want %#v", out, again, err, v)
		}
	}
}

// TestDecodeCopies checks that decoded strings do not alias the input or
// the decoder's scratch space.
func TestDecodeCopies(t *testing.T) {
	in := []byte(`{"key":"value","esc":"a\nb","k\u0065y2":["x"]}`)
	v, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	if _, err := Decode([]byte(`["zzzzzzzzzzzzzz\n", {"key": "other"}]`)); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"key": "value", "esc": "a\nb", "key2": []any{"x"}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v, want %#v", v, want)
	}
}

// TestDecodeConcurrent runs decoders, which are pooled, in parallel.
func TestDecodeConcurrent(t *testing.T) {
	order := orderJSON(t)
	want, err := Decode(order)
	if err != nil {
		t.Fatal(err)
	}
	docs := [][]byte{order, []byte(`{"status":"paid","lines":[{"status":"open"}]}`), []byte(`["paid",{"paid":"status"}]`)}
	wants := []any{want, nil, nil}
	for i := 1; i < len(docs); i++ {
		if err := json.Unmarshal(docs[i], &wants[i]); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				k := (g + i) % len(docs)
				got, err := Decode(docs[k])
				if err == nil && !reflect.DeepEqual(canon(got), canon(wants[k])) {
					err = errors.New("wrong result for document " + strconv.Itoa(k))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
