package mappings

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
)

// callCase is one call of a library function and what it must give.
type callCase struct {
	fn   string
	args []any
	want any
	err  string // the whole error message, when an error is expected
}

func runCalls(t *testing.T, cases []callCase) {
	t.Helper()
	funcs := map[string]Function{}
	for _, f := range Catalogue(lookupsForTest) {
		funcs[f.Name] = f
	}
	for _, c := range cases {
		f, ok := funcs[c.fn]
		if !ok {
			t.Fatalf("no function %q", c.fn)
		}
		got, err := f.Fn(c.args...)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s%v: error %v, want %q", c.fn, c.args, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s%v: unexpected error %v", c.fn, c.args, err)
		case c.err == "" && !equalValue(got, c.want):
			t.Errorf("%s%v = %#v, want %#v", c.fn, c.args, got, c.want)
		}
	}
}

func equalValue(got, want any) bool {
	if w, ok := want.(time.Time); ok {
		g, ok := got.(time.Time)
		return ok && g.Equal(w) && g.Format(time.RFC3339Nano) == w.Format(time.RFC3339Nano)
	}
	return reflect.DeepEqual(got, want)
}

// exprOptions makes every function of the catalogue callable, as the
// compiler does.
func exprOptions(l *Lookups) []expr.Option {
	var opts []expr.Option
	for _, f := range Catalogue(l) {
		opts = append(opts, expr.Function(f.Name, f.Fn, f.Types...))
	}
	return opts
}

func TestCatalogueExamples(t *testing.T) {
	opts := exprOptions(lookupsForTest)
	for _, f := range Catalogue(lookupsForTest) {
		if slices.Contains(builtin.Names, f.Name) {
			t.Errorf("%s: shadows the expr builtin of the same name", f.Name)
		}
		if !strings.Contains(f.Example, f.Name+"(") {
			t.Errorf("%s: example %q does not call it", f.Name, f.Example)
		}
		prog, err := expr.Compile(f.Example, opts...)
		if err != nil {
			t.Errorf("%s: example %q: %v", f.Name, f.Example, err)
			continue
		}
		out, err := expr.Run(prog, nil)
		if err != nil {
			t.Errorf("%s: example %q: %v", f.Name, f.Example, err)
		} else if out != true {
			t.Errorf("%s: example %q gives %#v, want true", f.Name, f.Example, out)
		}
	}
}

func TestCompileChecks(t *testing.T) {
	env := map[string]any{"n": 7, "s": "1.5", "h": map[string]string{"X-Id": "a"}, "body": map[string]any{}}
	opts := append(exprOptions(nil), expr.Env(env))
	for _, c := range []struct{ src, err string }{
		{`dec_round("1")`, "not enough arguments to call dec_round"},
		{`dec_round("1", 2, "up", 4)`, "too many arguments to call dec_round"},
		{`dec_sub("1")`, "not enough arguments to call dec_sub"},
		{`dec_add("1")`, "not enough arguments to call dec_add"},
		{`uuid(1)`, "too many arguments to call uuid"},
		{`dec_add("1", 2) + 1`, "invalid operation"},
		{`dec_add("1", 2, 3, 4) == "10"`, ""},
		{`lookup("x", 1, nil)`, ""},
		{`parse_date("2024", "yyyy") > now()`, ""},
		{`pad_left(len("abc"), 5, "0") == "00003"`, ""},
		{`pad_left(n, 3, "0") + sha256(h["X-Id"]) + dec_add(n, s, body.total)`, ""},
		{`format_date(add_days(body.date, n), "yyyy-MM-dd")`, ""},
		{`unix(body.date) + n`, ""},
	} {
		_, err := expr.Compile(c.src, opts...)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: error %v, want %q", c.src, err, c.err)
		}
	}
}

func TestRunTimeArity(t *testing.T) {
	runCalls(t, []callCase{
		{fn: "dec_round", args: []any{"1"}, err: "dec_round: needs 2 or 3 arguments, got 1"},
		{fn: "format_number", args: []any{"1"}, err: "format_number: needs 2 to 4 arguments, got 1"},
		{fn: "dec_add", args: []any{"1"}, err: "dec_add: needs at least 2 arguments, got 1"},
		{fn: "to_str", args: nil, err: "to_str: needs 1 argument, got 0"},
		{fn: "uuid", args: []any{1}, err: "uuid: needs 0 arguments, got 1"},
	})
}

func TestParseSignature(t *testing.T) {
	for _, c := range []struct {
		sig    string
		lo, hi int
	}{
		{"f() string", 0, 0},
		{"f(x) string", 1, 1},
		{"f([tz]) string", 0, 1},
		{"f(a, b, ...) string", 2, -1},
		{"f(a, ...) any", 1, -1},
		{"f(x, places[, dec[, thou]]) string", 2, 4},
	} {
		lo, hi, _ := parseSignature("f", c.sig)
		if lo != c.lo || hi != c.hi {
			t.Errorf("%s: %d..%d, want %d..%d", c.sig, lo, hi, c.lo, c.hi)
		}
	}
	for _, sig := range []string{"g(x) string", "f(x)", "f(x) float", "f(a, ...[, b]) string"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", sig)
				}
			}()
			parseSignature("f", sig)
		}()
	}
}

func TestStrings(t *testing.T) {
	tenth, fifth := 0.1, 0.2
	runCalls(t, []callCase{
		{fn: "to_str", args: []any{nil}, want: ""},
		{fn: "to_str", args: []any{42}, want: "42"},
		{fn: "to_str", args: []any{int64(-7)}, want: "-7"},
		{fn: "to_str", args: []any{1e21}, want: "1000000000000000000000"},
		{fn: "to_str", args: []any{0.000001}, want: "0.000001"},
		{fn: "to_str", args: []any{tenth + fifth}, want: "0.30000000000000004"},
		{fn: "to_str", args: []any{json.Number("820982911946154777.01")}, want: "820982911946154777.01"},
		{fn: "to_str", args: []any{true}, want: "true"},
		{fn: "to_str", args: []any{[]any{1, "a<b", nil}}, want: `[1,"a<b",null]`},
		{fn: "to_str", args: []any{map[string]any{"b": 1, "a": 2.5}}, want: `{"a":2.5,"b":1}`},
		{fn: "to_str", args: []any{time.Date(2024, 1, 31, 9, 30, 0, 0, time.UTC)}, want: "2024-01-31T09:30:00Z"},

		{fn: "pad_left", args: []any{"7", 3, "0"}, want: "007"},
		{fn: "pad_left", args: []any{1234, 3.0, "0"}, want: "1234"},
		{fn: "pad_left", args: []any{"é", json.Number("3")}, want: "  é"},
		{fn: "pad_left", args: []any{nil, 2, "*"}, want: "**"},
		{fn: "pad_right", args: []any{"ab", 4, "·"}, want: "ab··"},
		{fn: "pad_left", args: []any{"7", 3, "00"}, err: `pad_left: ch must be one character, got "00"`},
		{fn: "pad_left", args: []any{"7", -1}, err: "pad_left: n must not be negative, got -1"},
		{fn: "pad_left", args: []any{"7", 1e9}, err: "pad_left: n must be at most 10000, got 1000000000"},
		{fn: "pad_right", args: []any{"7", "x"}, err: `pad_right: n: "x" is not a whole number`},
		{fn: "pad_right", args: []any{"7", 2.5}, err: "pad_right: n: 2.5 is not a whole number"},

		{fn: "substr", args: []any{"Grüezi", 2, 3}, want: "üez"},
		{fn: "substr", args: []any{"Grüezi", 2}, want: "üezi"},
		{fn: "substr", args: []any{"Grüezi", 4, 100}, want: "zi"},
		{fn: "substr", args: []any{"Grüezi", 10, 2}, want: ""},
		{fn: "substr", args: []any{12345, 1, 2}, want: "23"},
		{fn: "substr", args: []any{"abc", -1}, err: "substr: start must not be negative, got -1"},
		{fn: "substr", args: []any{"abc", 0, -2}, err: "substr: length must not be negative, got -2"},

		{fn: "truncate", args: []any{"Zürich", 3}, want: "Zür"},
		{fn: "truncate", args: []any{"Zürich", 30}, want: "Zürich"},
		{fn: "truncate", args: []any{"Zürich", 0}, want: ""},
		{fn: "truncate", args: []any{"Zürich", nil}, err: "truncate: n: null is not a whole number"},

		{fn: "coalesce", args: []any{nil, "", 0, "x"}, want: 0},
		{fn: "coalesce", args: []any{nil, ""}, want: nil},
		{fn: "coalesce", args: []any{false}, want: false},

		{fn: "normalize_space", args: []any{"\t a \n\n b  c "}, want: "a b c"},
		{fn: "normalize_space", args: []any{nil}, want: ""},
		{fn: "slug", args: []any{"  Ærøskøbing & Łódź — 2024 "}, want: "aeroskobing-lodz-2024"},
		{fn: "slug", args: []any{"--Hello, World!--"}, want: "hello-world"},
		{fn: "slug", args: []any{"Straße"}, want: "strasse"},
		{fn: "slug", args: []any{"Cre\u0301me Bru\u0302le\u0301e"}, want: "creme-brulee"}, // decomposed (NFD) accents
		{fn: "digits", args: []any{"CH-8004 Zürich"}, want: "8004"},
		{fn: "digits", args: []any{12.50}, want: "125"},
		{fn: "title", args: []any{"hello WORLD, mary-jane o'neil"}, want: "Hello World, Mary-Jane O'neil"},
		{fn: "title", args: []any{"élan 2nd"}, want: "Élan 2nd"},

		{fn: "contains_any", args: []any{"Express delivery", []any{"express", "delivery"}}, want: true},
		{fn: "contains_any", args: []any{"Standard", []string{"Express", ""}}, want: false},
		{fn: "contains_any", args: []any{"Order 42", []any{42}}, want: true},
		{fn: "contains_any", args: []any{"abc", "a"}, err: `contains_any: list: "a" is not a list`},

		{fn: "split_lines", args: []any{"a\r\nb\rc\n\nd\n"}, want: []string{"a", "b", "c", "", "d"}},
		{fn: "split_lines", args: []any{""}, want: []string{}},
		{fn: "split_lines", args: []any{nil}, want: []string{}},
	})
}
