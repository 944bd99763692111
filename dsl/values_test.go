package dsl

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// exprIn decodes src, a file with one key e holding an expression.
func exprIn(t *testing.T, src string) Expr {
	t.Helper()
	var v struct {
		A Value `yaml:"a"` // room for keys before e
		E Expr  `yaml:"e"`
	}
	if ds := decodeFile("t.yaml", []byte(src), &v); len(ds) > 0 {
		t.Fatalf("decode: %v", ds)
	}
	return v.E
}

// markerPos is where the only occurrence of marker starts in text: as a
// 1-based line and column (in runes) when line0 is false, or as expr
// reports it (1-based line, 0-based column) when line0 is true.
func markerPos(t *testing.T, text, marker string, col0 bool) (int, int) {
	t.Helper()
	i := strings.Index(text, marker)
	if i < 0 || strings.Count(text, marker) != 1 {
		t.Fatalf("marker %q must occur once in %q", marker, text)
	}
	line := 1 + strings.Count(text[:i], "\n")
	col := utf8.RuneCountInString(text[strings.LastIndex(text[:i], "\n")+1 : i])
	if !col0 {
		col++
	}
	return line, col
}

func TestExprPosOf(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		style Style
		bug   string // non-empty: a known bug, see the report
	}{
		{name: "plain", src: "e: body.x == 1 && bdy.y\n", style: Plain},
		{name: "plain after a deep key", src: "a:\n  b:\n    c: 1\ne: body.x + bdy\n", style: Plain},
		{name: "plain non-ASCII before", src: "e: body.é == 1 && bdy\n", style: Plain},
		{name: "single-quoted", src: "e: 'string(body.id) + bdy'\n", style: SingleQuoted},
		{name: "double-quoted", src: "e: \"string(body.id) + bdy\"\n", style: DoubleQuoted},
		{name: "in a flow mapping", src: "e: {x: 1}\n", style: Plain}, // replaced below
		{name: "literal line 1", src: "e: |\n  bdy.x + 1\n", style: Literal},
		{name: "literal line 3", src: "e: |\n    map(body.lines, {\n      sku: .sku,\n      qty: bdy.q\n    })\n", style: Literal},
		{name: "literal strip", src: "e: |-\n  body.x ==\n    bdy.y\n", style: Literal},
		{name: "literal keep", src: "e: |+\n  body.x ==\n    bdy.y\n\n", style: Literal},
		{name: "literal with comment", src: "e: | # the rule\n  body.x ==\n  bdy.y\n", style: Literal},
		{name: "literal leading blank line", src: "e: |\n\n  body.x ==\n\n  bdy.y\n", style: Literal},
		{name: "folded one line", src: "e: >\n  body.x == bdy.y\n", style: Folded},
		{name: "folded two lines", src: "e: >\n  body.x ==\n  bdy.y\n", style: Folded,
			bug: "Expr.PosOf maps folded block lines as literal ones, but folding joined them into one line of Src"},
		{name: "double-quoted with escapes", src: "e: \"body.x == \\\"a\\\" && bdy.y\"\n", style: DoubleQuoted,
			bug: "Expr.PosOf ignores escapes: each \\\" before the error shifts the column by one"},
		{name: "single-quoted with ''", src: "e: 'body.x == ''a'' && bdy.y'\n", style: SingleQuoted,
			bug: "Expr.PosOf ignores '' escapes in single-quoted scalars"},
		{name: "single-quoted on two lines", src: "e: 'body.x == 1 &&\n  bdy.y'\n", style: SingleQuoted,
			bug: "Expr.PosOf: a quoted scalar folded over lines is one line of Src"},
		{name: "plain on two lines", src: "e: body.x == 1 &&\n  bdy.y\n", style: Plain,
			bug: "Expr.PosOf: a plain scalar folded over lines is one line of Src"},
		{name: "literal with indentation indicator", src: "e: |2\n    body.x ==\n  bdy.y\n", style: Literal,
			bug: "exprOf takes the block's indent from its first line, not from the indentation indicator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if tt.name == "in a flow mapping" {
				// The expression as the value of a key inside { }.
				var v struct {
					M struct {
						A int  `yaml:"a"`
						E Expr `yaml:"e"`
					} `yaml:"m"`
				}
				src = "m: {a: 1, e: 'body.x + bdy.y'}\n"
				if ds := decodeFile("t.yaml", []byte(src), &v); len(ds) > 0 {
					t.Fatal(ds)
				}
				checkPosOf(t, src, v.M.E, SingleQuoted)
				return
			}
			if tt.bug != "" {
			}
			checkPosOf(t, src, exprIn(t, src), tt.style)
		})
	}
}

func checkPosOf(t *testing.T, src string, e Expr, style Style) {
	t.Helper()
	if e.Style != style {
		t.Errorf("Style = %d, want %d", e.Style, style)
	}
	line, col := markerPos(t, e.Src, "bdy", true)
	wantLine, wantCol := markerPos(t, src, "bdy", false)
	if got := e.PosOf(line, col); got != (Pos{wantLine, wantCol}) {
		t.Errorf("PosOf(%d, %d) = %d:%d, want %d:%d (Src %q, At %v, Indent %d)", line, col, got.Line, got.Col, wantLine, wantCol, e.Src, e.At, e.Indent)
	}
	// The start of the expression maps to At.
	if got := e.PosOf(1, 0); got != e.At && style != Literal && style != Folded {
		t.Errorf("PosOf(1, 0) = %v, want At %v", got, e.At)
	}
}

func TestExprAt(t *testing.T) {
	tests := []struct {
		src  string
		want Pos
	}{
		{"e: body.x\n", Pos{1, 4}},
		{"e: 'body.x'\n", Pos{1, 5}},   // after the quote
		{"e: \"body.x\"\n", Pos{1, 5}}, // after the quote
		{"e: |\n   body.x\n", Pos{2, 4}},
		{"e: >-\n  body.x\n", Pos{2, 3}},
		{"e: 42\n", Pos{1, 4}},
		{"e: true\n", Pos{1, 4}},
	}
	for _, tt := range tests {
		if got := exprIn(t, tt.src).At; got != tt.want {
			t.Errorf("%q: At = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func TestExprNotAScalar(t *testing.T) {
	var v struct {
		E Expr `yaml:"e"`
	}
	ds := decodeFile("t.yaml", []byte("e: [1, 2]\n"), &v)
	if len(ds) != 1 || ds[0].Line != 1 || ds[0].Col != 4 || !strings.Contains(ds[0].Message, "e: expected an expression, got a list") {
		t.Errorf("got %v", ds)
	}
}

func TestConfigStringResolve(t *testing.T) {
	env := map[string]string{"ERP_URL": "http://erp:9101", "EMPTY": "", "TOKEN": "t0k"}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	tests := []struct {
		raw     string
		want    string
		wantErr string
	}{
		{raw: "plain text", want: "plain text"},
		{raw: "", want: ""},
		{raw: "${env:ERP_URL}", want: "http://erp:9101"},
		{raw: "${env:ERP_URL}/v2", want: "http://erp:9101/v2"},
		{raw: "Bearer ${env:TOKEN}", want: "Bearer t0k"},
		{raw: "${env:MISSING:-http://127.0.0.1:9101}", want: "http://127.0.0.1:9101"},
		{raw: "${env:ERP_URL:-http://127.0.0.1:9101}", want: "http://erp:9101"},
		{raw: "${env:MISSING:-}", want: ""},
		{raw: "${env:EMPTY:-default}", want: ""}, // set but empty is set
		{raw: "${env:EMPTY}", want: ""},
		{raw: "${env:TOKEN}-${env:MISSING:-x}", want: "t0k-x"},
		{raw: "${env:MISSING}", wantErr: "environment variable MISSING is not set"},
		{raw: "${env:A_MISSING}${env:B_MISSING}", wantErr: "environment variable A_MISSING, B_MISSING is not set"},
		{raw: "price in ${USD}", want: "price in ${USD}"}, // not an env reference: left alone (decoding reports it)
	}
	for _, tt := range tests {
		got, err := ConfigString{Raw: tt.raw}.Resolve(lookup)
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Resolve(%q) error = %v, want %q", tt.raw, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("Resolve(%q): %v", tt.raw, err)
		case got != tt.want:
			t.Errorf("Resolve(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	t.Run("nil lookup reads the process environment", func(t *testing.T) {
		t.Setenv("CONVEYOR_TEST_RESOLVE", "from-env")
		got, err := ConfigString{Raw: "${env:CONVEYOR_TEST_RESOLVE}"}.Resolve(nil)
		if err != nil || got != "from-env" {
			t.Errorf("got %q, %v", got, err)
		}
	})
}

func TestConfigStringDecode(t *testing.T) {
	tests := []struct {
		src  string
		want string // the diagnostic, "" for none
	}{
		{"c: ${env:X}\n", ""},
		{"c: \"${env:X:-a b}\"\n", ""},
		{"c: \"${env:X\"\n", "t.yaml:1:4: c: unclosed ${ in \"${env:X\" (write ${env:NAME})"},
		{"c: \"${X}\"\n", "t.yaml:1:4: c: unsupported reference ${X} (write ${env:NAME} or ${env:NAME:-default})"},
		{"c: \"${env:1X}\"\n", "t.yaml:1:4: c: unsupported reference ${env:1X} (write ${env:NAME} or ${env:NAME:-default})"},
		{"c: [a]\n", "t.yaml:1:4: c: expected text, got a list"},
	}
	for _, tt := range tests {
		var v struct {
			C ConfigString `yaml:"c"`
		}
		ds := decodeFile("t.yaml", []byte(tt.src), &v)
		if got := ds.Error(); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "72h", want: 72 * time.Hour},
		{in: "3d", want: 72 * time.Hour},
		{in: "0d", want: 0},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: "1s", want: time.Second},
		{in: "2m30s", want: 150 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "5", wantErr: `duration "5" has no unit`},
		{in: "0", wantErr: `duration "0" has no unit`},
		{in: "3 days", wantErr: `"3 days" is not a duration`},
		{in: "-1s", wantErr: `"-1s" is not a duration`},
		{in: "-1d", wantErr: `"-1d" is not a duration`},
		{in: "1.5d", wantErr: `"1.5d" is not a duration`},
		{in: "d", wantErr: `"d" is not a duration`},
		{in: "", wantErr: `"" is not a duration`},
		{in: "1w", wantErr: `"1w" is not a duration`},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseDuration(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestDurationDecode(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
		E Duration `yaml:"e"`
	}
	ds := decodeFile("t.yaml", []byte("d: 3d\ne: 5\n"), &v)
	if !v.D.Set || v.D.D != 72*time.Hour || v.D.At != (Pos{1, 4}) {
		t.Errorf("d = %+v", v.D)
	}
	want := "t.yaml:2:4: e: duration \"5\" has no unit (use units ms, s, m, h or d, e.g. 30s)"
	if ds.Error() != want || v.E.Set {
		t.Errorf("got %q, e = %+v; want %q", ds.Error(), v.E, want)
	}
	if err := ds.Err(); !errors.As(err, new(Diagnostics)) {
		t.Errorf("Err() = %T", err)
	}
}

func TestByteSizeDecode(t *testing.T) {
	tests := []struct {
		src  string
		want int64
		diag string
	}{
		{"b: 1MiB\n", 1 << 20, ""},
		{"b: 512KiB\n", 512 << 10, ""},
		{"b: 1048576\n", 1048576, ""},
		{"b: 2 MB\n", 2000000, ""},
		{"b: lots\n", 0, "t.yaml:1:4: b: \"lots\" is not a size (write e.g. 512KiB, 1MiB or 1048576)"},
	}
	for _, tt := range tests {
		var v struct {
			B ByteSize `yaml:"b"`
		}
		ds := decodeFile("t.yaml", []byte(tt.src), &v)
		if ds.Error() != tt.diag || v.B.N != tt.want {
			t.Errorf("%q: N = %d, diagnostics %q; want %d, %q", tt.src, v.B.N, ds.Error(), tt.want, tt.diag)
		}
	}
}

// Numbers in test bodies read as a JSON body would carry them: a number
// with a leading zero (YAML 1.1 octal: 01234 was 668) is the code it was
// written as, and an integer too big for int keeps every digit, as jsonv
// keeps it at run time (it was a float64, 1.8446744073709552e+19).
func TestTestBodyNumbers(t *testing.T) {
	src := "trigger: {event: {topic: a}}\nsteps: []\ntests:\n  - name: t\n    input:\n      body: {zip: 01234, id: 18446744073709551615, n: 42, neg: -7, zero: 0}\n"
	f, ds := ParseFlow("f.yaml", []byte(src))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	body := f.Tests[0].Input.Body.V.(map[string]any)
	if z := body["zip"]; z != "01234" {
		t.Errorf("zip: 01234 decoded as %#v", z)
	}
	if id := body["id"]; id != json.Number("18446744073709551615") {
		t.Errorf("id: 18446744073709551615 decoded as %#v", id)
	}
	if body["n"] != 42 || body["neg"] != -7 || body["zero"] != 0 {
		t.Errorf("plain integers: %#v %#v %#v", body["n"], body["neg"], body["zero"])
	}
}
