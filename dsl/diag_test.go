package dsl

import (
	"reflect"
	"testing"
)

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"order", "order", 0},
		{"ordr", "order", 1},  // deletion
		{"oredr", "order", 1}, // transposition of neighbours
		{"roder", "order", 1}, // transposition at the start
		{"ordre", "order", 1}, // transposition at the end
		{"odrer", "order", 1}, // transposition in the middle
		{"bdy", "body", 1},    // deletion
		{"boyd", "body", 1},   // transposition
		{"mapp", "map", 1},    // insertion
		{"steps", "setps", 1}, // transposition
		{"kitten", "sitting", 3},
		{"ca", "abc", 3},          // optimal string alignment, not full Damerau (2)
		{"währung", "wahrung", 1}, // runes, not bytes
		{"trigger", "description", 9},
	}
	for _, tt := range tests {
		if got := levenshtein(tt.a, tt.b); got != tt.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := levenshtein(tt.b, tt.a); got != tt.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d (not symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	fields := []string{"flow", "description", "trigger", "dedup", "rate_limit", "retry", "concurrency", "steps", "tests"}
	names := []string{"body", "headers", "query", "params", "vars", "meta", "item", "header", "order", "lower", "upper"}
	tests := []struct {
		word       string
		candidates []string
		want       string
	}{
		{"ordr", names, "order"},
		{"oredr", names, "order"},
		{"bdy", names, "body"},
		{"Body", names, "body"}, // case does not count
		{"hedaers", names, "headers"},
		{"setps", fields, "steps"},
		{"descripton", fields, "description"},
		{"ratelimit", fields, "rate_limit"},
		{"concurency", fields, "concurrency"},
		{"triger", fields, "trigger"},
		{"trgr", fields, ""},       // two edits on a short word: too far
		{"xyz", names, ""},         // nothing close
		{"customer", names, ""},    // far from everything
		{"completely", fields, ""}, // long, still too far
		{"steps", fields, ""},      // the word itself is no suggestion
		{"", names, ""},
		{"bdy", nil, ""},
		{"qeury", names, "query"},
		{"uper", names, "upper"},
		{"lowr", names, "lower"},
		{"itme", names, "item"},
		{"var", names, "vars"},
		{"paramz", names, "params"},
		{"tests", []string{"test", "texts"}, "test"}, // ties: the smaller name
	}
	for _, tt := range tests {
		if got := Suggest(tt.word, tt.candidates); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got, want := DidYouMean("bdy", names), `did you mean "body"?`; got != want {
		t.Errorf("DidYouMean = %q, want %q", got, want)
	}
	if got := DidYouMean("zzzz", names); got != "" {
		t.Errorf("DidYouMean(zzzz) = %q, want none", got)
	}
}

func TestDiagnosticString(t *testing.T) {
	tests := []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{File: "flows/a.yaml", Line: 14, Col: 9, Message: `unknown name "qantity"`, Hint: `did you mean "quantity"?`},
			`flows/a.yaml:14:9: unknown name "qantity" (did you mean "quantity"?)`},
		{Diagnostic{File: "flows/a.yaml", Line: 1, Col: 1, Message: "file is empty"}, "flows/a.yaml:1:1: file is empty"},
		{Diagnostic{File: "lookups", Message: "bad table"}, "lookups: bad table"}, // no position
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	var none Diagnostics
	if none.Err() != nil {
		t.Error("empty Diagnostics.Err() is not nil")
	}
	two := Diagnostics{tests[0].d, tests[1].d}
	if got, want := two.Err().Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestDiagnosticsSort(t *testing.T) {
	ds := Diagnostics{
		{File: "b.yaml", Line: 1, Col: 1, Message: "b"},
		{File: "a.yaml", Line: 3, Col: 1, Message: "a3"},
		{File: "a.yaml", Line: 2, Col: 9, Message: "a2 late"},
		{File: "a.yaml", Line: 2, Col: 1, Message: "a2 first"},
		{File: "a.yaml", Line: 2, Col: 1, Message: "a2 second"},
	}
	ds.Sort()
	var got []string
	for _, d := range ds {
		got = append(got, d.Message)
	}
	if want := []string{"a2 first", "a2 second", "a2 late", "a3", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Sort: %q, want %q", got, want)
	}
}
