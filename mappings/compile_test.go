package mappings

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/conveyor-run/conveyor/dsl"
)

// TestMessageSpace: some expr messages end in a space, which
// then stands before the hint or at the end of the line.
func TestMessageSpace(t *testing.T) {
	_, d := NewCompiler(nil).Compile("f.yaml", at(`lower(1)`), Scope{})
	if d == nil || d.Message != strings.TrimSpace(d.Message) {
		t.Errorf("message %q", d.Message)
	}
}

// at places src in a file as a plain scalar starting at line 7, column 12.
func at(src string) dsl.Expr { return dsl.Expr{Src: src, At: dsl.Pos{Line: 7, Col: 12}} }

// evalAt compiles src placed by at, with no variables in scope, and
// evaluates it against body.
func evalAt(t *testing.T, src string, body any) (any, error) {
	t.Helper()
	p, d := NewCompiler(nil).Compile("f.yaml", at(src), Scope{})
	if d != nil {
		t.Fatalf("compile %s: %v", src, d)
	}
	return p.Eval(NewEnv(body, nil, Meta{}))
}

// markerCol is the file column of marker's first rune in a one-line plain
// expression placed by at.
func markerCol(t *testing.T, src, marker string) int {
	t.Helper()
	i := strings.Index(src, marker)
	if i < 0 {
		t.Fatalf("no %q in %q", marker, src)
	}
	return 12 + utf8.RuneCountInString(src[:i])
}

func TestCompileDiagnostics(t *testing.T) {
	c := NewCompiler(lookupsForTest)
	tests := []struct {
		src    string
		scope  Scope
		marker string // where the diagnostic must point; "" for the start
		msg    string // "" when the expression compiles
		hint   string
	}{
		{src: `"SHP-" + string(body.id)`},
		{src: `bdy.id`, marker: "bdy", msg: `unknown name "bdy"`, hint: `did you mean "body"?`},
		{src: `"x" + string(bdy.id)`, marker: "bdy", msg: `unknown name "bdy"`, hint: `did you mean "body"?`},
		{src: `vars.total + qantity`, marker: "qantity", msg: `unknown name "qantity"`, hint: `did you mean body.qantity?`},
		{src: `upperr_case(body.name)`, marker: "upperr_case", msg: `unknown name "upperr_case"`, hint: `expressions start from body, headers, query, params, vars, meta or item`},
		{src: `bdy`, marker: "bdy", msg: `unknown name "bdy"`, hint: `did you mean "body"?`},
		{src: `USD`, marker: "USD", msg: `unknown name "USD"`, hint: `literal text goes in quotes: '"USD"'`},
		{src: `order received`, marker: "received", msg: "unexpected token Identifier(\"received\")", hint: `literal text goes in quotes: '"order received"'`},
		{src: `upperr(body.name)`, marker: "upperr", msg: `unknown name "upperr"`, hint: `did you mean "upper"?`},
		{src: `item.sku`, marker: "item", msg: "item is only defined inside a split", hint: "use body here, or move the step into split.steps"},
		{src: `item.sku`, scope: Scope{InSplit: true}},
		{src: `meta.index + len(body.lines)`},
		{src: `lookup("sku_to_item", body.sku, "?")`, marker: `"sku_to_item"`, msg: `unknown lookup table "sku_to_item"`, hint: "tables are the CSV files in lookups/"},
		{src: `lookup("currency", body.cur, "?")`, marker: `"currency"`, msg: `unknown lookup table "currency"`, hint: `did you mean "currencies"?`},
		{src: `lookup("currencies", body.cur, "?", "name")`},
		// Literal arguments a function would refuse only at run time.
		{src: `lookup("countries", body.c, "?", "vat_rat")`, marker: `"vat_rat"`, msg: `lookup table "countries" has no column "vat_rat"`, hint: `did you mean "vat_rate"?`},
		{src: `lookup("countries", body.c, "?", "zone")`, marker: `"zone"`, msg: `lookup table "countries" has no column "zone"`, hint: "columns are iso, name, vat_rate"},
		{src: `dec_round(body.x, 2, "half_uo")`, marker: `"half_uo"`, msg: `unknown rounding mode "half_uo"`, hint: `did you mean "half_up"?`},
		{src: `dec_round(body.x, 2, "half_even")`},
		{src: `to_timezone(body.at, "Europe/Amsterdm")`, marker: `"Europe/Amsterdm"`, msg: `timezone: "Europe/Amsterdm" is not a time zone (use an IANA name such as "Europe/Zurich" or "UTC")`},
		{src: `format_date(body.at, "yyyy-MM-dd", "Europe/Amsterdam")`},
		{src: `format_date(body.at, "yyyy-MM-dd", body.tz)`},
		{src: `body.total > > 3`, marker: "> 3", msg: `unexpected token Operator(">")`},
		{src: `body.total +`, marker: "+", msg: "unexpected token EOF"},
		{src: `"a" + 1`, scope: Scope{Want: Bool}, marker: "+", msg: "invalid operation: + (mismatched types string and int)"},
		{src: `body.x`, scope: Scope{Want: Bool}},
		{src: `1 + 2`, scope: Scope{Want: Bool}, msg: "expected bool, but got int"},
		{src: `   `, msg: "empty expression", hint: "write nil for nothing"},
		// An object literal in predicate position is rewritten to {{...}};
		// positions after it still point into what the analyst wrote.
		{src: `map(body.lines, {sku: .sku}) + bdy`, marker: "bdy", msg: `unknown name "bdy"`, hint: `did you mean "body"?`},
		{src: `map(body.lines, {sku: lookup("skus", .sku, .sku)})`, marker: `"skus"`, msg: `unknown lookup table "skus"`, hint: "tables are the CSV files in lookups/"},
		{src: `map(body.lines, {sku: .sku, qty: bdy.q})`, marker: "bdy", msg: `unknown name "bdy"`, hint: `did you mean "body"?`},
		{src: `map(body.lines, {sku: .sku, qty: .quantity})`},
		{src: `all(body.lines, .q > 0) && none(body.lines, {.q < 0})`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			p, d := c.Compile("flows/f.yaml", at(tt.src), tt.scope)
			if tt.msg == "" {
				if d != nil {
					t.Fatalf("unexpected diagnostic %v", d)
				}
				if p == nil || p.Src.Src != tt.src || p.File != "flows/f.yaml" {
					t.Fatalf("program %+v", p)
				}
				return
			}
			if d == nil {
				t.Fatal("compiled, want a diagnostic")
			}
			col := 12
			if tt.marker != "" {
				col = markerCol(t, tt.src, tt.marker)
			}
			want := dsl.Diagnostic{File: "flows/f.yaml", Line: 7, Col: col, Message: tt.msg, Hint: tt.hint}
			if *d != want {
				t.Errorf("got  %v\nwant %v", d, want)
			}
		})
	}
}

// An unknown name that is not called is a misspelt or missing field, not a
// function: "name" must not suggest date(), nor "line" find().
func TestUnknownFieldSuggestsNoFunction(t *testing.T) {
	for _, c := range []struct{ src, not string }{
		{`name != ""`, `"date"`},
		{`total > 0`, `"today"`},
		{`amount > 0`, `"count"`},
		{`line.sku`, `"find"`},
	} {
		_, d := NewCompiler(nil).Compile("f.yaml", at(c.src), Scope{})
		if d == nil {
			t.Errorf("%s compiled", c.src)
			continue
		}
		if strings.Contains(d.Hint, c.not) {
			t.Errorf("%s: hint %q suggests the function %s", c.src, d.Hint, c.not)
		}
		name, _, _ := strings.Cut(strings.Fields(c.src)[0], ".")
		if want := "did you mean body." + name + "?"; d.Hint != want {
			t.Errorf("%s: hint %q, want %q", c.src, d.Hint, want)
		}
	}
}

// TestCompileBlockPositions: an expression in a | block reports lines and
// columns inside the block.
func TestCompileBlockPositions(t *testing.T) {
	c := NewCompiler(lookupsForTest)
	e := dsl.Expr{Src: "map(body.lines, {\n  sku: .sku,\n  qty: .quantity +* 2\n})", At: dsl.Pos{Line: 6, Col: 9}, Style: dsl.Literal, Indent: 9}
	_, d := c.Compile("f.yaml", e, Scope{})
	want := dsl.Diagnostic{File: "f.yaml", Line: 8, Col: 9 + len("  qty: .quantity +"), Message: `unexpected token Operator("*")`}
	if d == nil || *d != want {
		t.Errorf("got %v, want %v", d, want)
	}
}

func sampleEnv() *Env {
	body := map[string]any{
		"id":       1001,
		"email":    " Ann@Example.com ",
		"currency": "EUR",
		"total":    "12.50",
		"created":  "2024-03-01T10:00:00Z",
		"lines": []any{
			map[string]any{"sku": "TSHIRT-RED-M", "quantity": 2, "price": "5.00", "q": 1},
			map[string]any{"sku": "MUG", "quantity": 1, "price": "2.50", "q": 0},
		},
		"nested": map[string]any{"list": []any{1, "two", 3.5, nil, true}},
	}
	env := NewEnv(body, map[string]string{"x-shop": "demo", "Content-Type": "application/json"},
		Meta{ID: "m-1", Flow: "orders", Revision: 3, ReceivedAt: time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), Attempt: 1})
	env.Query["page"] = "2"
	env.Params["id"] = "1001"
	env.Vars["erp"] = map[string]any{"status": 200, "body": map[string]any{"sales_order": "SO-1"}}
	env.Item = body["lines"].([]any)[0]
	return env
}

func TestProgramEval(t *testing.T) {
	c := NewCompiler(lookupsForTest)
	tests := []struct {
		src  string
		want any
	}{
		{`"SHP-" + string(body.id)`, "SHP-1001"},
		{`lower(trim(body.email))`, "ann@example.com"},
		{`header("X-SHOP") + headers["Content-Type"]`, "demoapplication/json"},
		{`len(map(body.lines, {sku: .sku, qty: .quantity}))`, 2},
		{`map(body.lines, {sku: .sku})[1].sku`, "MUG"},
		{`vars.erp.body.sales_order`, "SO-1"},
		{`meta.flow + ":" + meta.id + ":" + string(meta.revision)`, "orders:m-1:3"},
		{`lookup("currencies", body.currency, "?", "name")`, "Euro"},
		{`query.page + params.id`, "21001"},
	}
	env := sampleEnv()
	for _, tt := range tests {
		p, d := c.Compile("f.yaml", at(tt.src), Scope{InSplit: true})
		if d != nil {
			t.Errorf("%s: %v", tt.src, d)
			continue
		}
		got, err := p.Eval(env)
		if err != nil || !equalValue(got, tt.want) {
			t.Errorf("%s = %#v, %v; want %#v", tt.src, got, err, tt.want)
		}
	}
}

func TestEvalErrorPosition(t *testing.T) {
	c := NewCompiler(lookupsForTest)
	src := `body.id + dec_add(body.total, "x")`
	p, d := c.Compile("flows/f.yaml", at(src), Scope{})
	if d != nil {
		t.Fatal(d)
	}
	_, err := p.Eval(sampleEnv())
	var ee *EvalError
	if !errors.As(err, &ee) {
		t.Fatalf("error %T %v, want *EvalError", err, err)
	}
	if ee.File != "flows/f.yaml" || ee.Expr != src || ee.At.Line != 7 || ee.At.Col < 12 || ee.At.Col >= 12+len(src) {
		t.Errorf("EvalError %+v", ee)
	}
	if !strings.HasPrefix(err.Error(), "flows/f.yaml:7:") {
		t.Errorf("Error() = %q", err.Error())
	}
}

// A run-time error after map(list, {a: .x}) points at the analyst's own
// text: the braces the compiler inserts around the object do not shift it.
func TestEvalErrorPositionAfterObjectPredicate(t *testing.T) {
	src := `string(len(map(body.lines, {a: .sku}))) + dec_add(body.total, "x")`
	_, err := evalAt(t, src, map[string]any{"lines": []any{map[string]any{"sku": "A"}}, "total": "1.5"})
	var ee *EvalError
	if !errors.As(err, &ee) {
		t.Fatalf("error %T %v, want *EvalError", err, err)
	}
	if want := markerCol(t, src, "dec_add"); ee.At != (dsl.Pos{Line: 7, Col: want}) {
		t.Errorf("error at %d:%d, want 7:%d (%v)", ee.At.Line, ee.At.Col, want, err)
	}
}

// FuzzCompileExpr: no text makes Compile panic, a diagnostic always has a
// position inside the file, and a program that compiled evaluates against
// a sample message without panicking. Seeds: testdata/fuzz/FuzzCompileExpr.
// Run: go test -run XXX -fuzz FuzzCompileExpr -fuzztime 75s ./mappings/
func FuzzCompileExpr(f *testing.F) {
	f.Add(`map(body.lines, {sku: lookup("currencies", .sku, .sku), qty: .quantity})`, false, false)
	f.Add(`item.q > 0`, true, true)
	c := NewCompiler(lookupsForTest)
	f.Fuzz(func(t *testing.T, src string, inSplit, wantBool bool) {
		scope := Scope{InSplit: inSplit}
		if wantBool {
			scope.Want = Bool
		}
		for _, e := range []dsl.Expr{
			{Src: src, At: dsl.Pos{Line: 3, Col: 9}},
			{Src: src, At: dsl.Pos{Line: 3, Col: 10}, Style: dsl.DoubleQuoted},
			{Src: src, At: dsl.Pos{Line: 4, Col: 5}, Style: dsl.Literal, Indent: 5},
		} {
			p, d := c.Compile("f.yaml", e, scope)
			if (p == nil) == (d == nil) {
				t.Fatalf("Compile(%q) = %v, %v: want exactly one", src, p, d)
			}
			if d != nil {
				if d.File != "f.yaml" || d.Line < e.At.Line || d.Col < 1 || d.Message == "" {
					t.Fatalf("Compile(%q): malformed diagnostic %+v", src, d)
				}
				continue
			}
			out, err := p.Eval(sampleEnv())
			var ee *EvalError
			if err != nil && (!errors.As(err, &ee) || ee.At.Line < e.At.Line || ee.At.Col < 1) {
				t.Fatalf("Eval(%q): error %T %v", src, err, err)
			}
			if err == nil && wantBool {
				if _, ok := out.(bool); !ok {
					t.Fatalf("Eval(%q) = %#v with Want Bool", src, out)
				}
			}
		}
	})
}
