package mappings

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var lookupsForTest = func() *Lookups {
	l, errs := LoadLookups("testdata/lookups")
	if errs != nil {
		panic(errs)
	}
	return l
}()

func TestLoadLookups(t *testing.T) {
	l := lookupsForTest
	if got, want := l.Names(), []string{"countries", "currencies"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if got, want := l.Columns("countries"), []string{"iso", "name", "vat_rate"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Columns(countries) = %q, want %q (byte order mark removed)", got, want)
	}
	if !l.Has("currencies") || l.Has("currency") || l.Columns("currency") != nil {
		t.Error("Has or Columns wrong for an unknown table")
	}

	empty, errs := LoadLookups(filepath.Join(t.TempDir(), "missing"))
	if errs != nil || len(empty.Names()) != 0 {
		t.Errorf("missing dir: %v, %v", empty.Names(), errs)
	}
	var none *Lookups
	if none.Has("x") || none.Names() != nil || none.Columns("x") != nil {
		t.Error("nil Lookups is not empty")
	}
}

func TestLoadLookupsErrors(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"ok.csv":        "k,v\na,1\n",
		"dup.csv":       "k,v\na,1\nb,2\n\na,3\nb,4\n",
		"fields.csv":    "k,v\na,1,x\nb,2\n",
		"quote.csv":     "k,v\na,\"1\n",
		"empty.csv":     "",
		"narrow.csv":    "k\na\n",
		"columns.csv":   "k,v,v,\na,1,2,3\n",
		"notes.txt":     "k,v\na,1\na,1\n",
		"sub.csv/x.csv": "k,v\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, errs := LoadLookups(dir)
	var got []string
	for _, err := range errs {
		got = append(got, strings.TrimPrefix(err.Error(), dir+string(filepath.Separator)))
	}
	want := []string{
		`columns.csv:1: column "v" appears twice`,
		`columns.csv:1: column 4 has no name`,
		`dup.csv:5: duplicate key "a" (first on line 2)`,
		`dup.csv:6: duplicate key "b" (first on line 3)`,
		`empty.csv: no header row`,
		`fields.csv:2: 3 fields, but the header has 2`,
		`narrow.csv:1: need at least two columns, the key and a value`,
		`quote.csv:2:6: extraneous or missing " in quoted-field`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := l.Names(); !reflect.DeepEqual(got, []string{"ok"}) {
		t.Errorf("Names() = %v, want only the good table", got)
	}
}

func TestNewLookups(t *testing.T) {
	l := NewLookups(map[string][][]string{"t": {{"k", "v"}, {"1", "one"}}})
	if v, err := lookupFunction(l).Fn("t", 1, nil); err != nil || v != "one" {
		t.Errorf("lookup = %v, %v", v, err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `t:3: duplicate key "1" (first on line 2)`) {
			t.Errorf("recover() = %v", r)
		}
	}()
	NewLookups(map[string][][]string{"t": {{"k", "v"}, {"1", "one"}, {"1", "uno"}}})
}

func TestLookup(t *testing.T) {
	runCalls(t, []callCase{
		{fn: "lookup", args: []any{"currencies", "EUR", nil}, want: "Euro"},
		{fn: "lookup", args: []any{"currencies", "EUR", nil, "decimals"}, want: "2"},
		{fn: "lookup", args: []any{"currencies", "EUR", nil, "code"}, want: "EUR"},
		{fn: "lookup", args: []any{"currencies", "XXX", "n/a"}, want: "n/a"},
		{fn: "lookup", args: []any{"currencies", nil, 0}, want: 0},
		{fn: "lookup", args: []any{"countries", 756, "?"}, want: "Switzerland (numeric)"},
		{fn: "lookup", args: []any{"countries", 756.0, "?"}, want: "Switzerland (numeric)"},
		{fn: "lookup", args: []any{"countries", "756", "?"}, want: "Switzerland (numeric)"},
		{fn: "lookup", args: []any{"currencie", "EUR", nil}, err: `lookup: unknown table "currencie" (did you mean "currencies"?)`},
		{fn: "lookup", args: []any{"rates", "EUR", nil}, err: `lookup: unknown table "rates" (tables are the CSV files in lookups/)`},
		{fn: "lookup", args: []any{"currencies", "EUR", nil, "nme"}, err: `lookup: table "currencies" has no column "nme" (did you mean "name"?)`},
		{fn: "lookup", args: []any{"currencies", "EUR", nil, "symbol"}, err: `lookup: table "currencies" has no column "symbol" (columns are code, name, decimals)`},
		{fn: "lookup", args: []any{1, "EUR", nil}, err: `lookup: table: 1 is not a table name`},
		{fn: "lookup", args: []any{"currencies", "EUR"}, err: `lookup: needs 3 or 4 arguments, got 2`},
	})
	if _, err := lookupFunction(nil).Fn("currencies", "EUR", nil); err == nil || err.Error() != `lookup: unknown table "currencies" (tables are the CSV files in lookups/)` {
		t.Errorf("nil lookups: %v", err)
	}
}

// A spreadsheet export starts with a byte order mark, often before a
// quoted header: the table loads. The mark reached the CSV reader, which
// took the quote after it as a bare one and refused the file.
func TestLookupWithBOMAndQuotedHeader(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "items.csv"), []byte("\ufeff\"sku\",\"item code\"\n\"A-1\",\"100\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, errs := LoadLookups(dir)
	if len(errs) > 0 {
		t.Fatalf("load: %v", errs)
	}
	if got := l.Columns("items"); !reflect.DeepEqual(got, []string{"sku", "item code"}) {
		t.Errorf("columns %q; want sku and item code", got)
	}
}

// A column in a lookup error counts characters, as editors do: an
// article description with umlauts before the error moved it right by a
// column per extra byte (encoding/csv counts bytes). A byte order mark
// is no column.
func TestLookupErrorColumnCountsCharacters(t *testing.T) {
	dir := t.TempDir()
	// each stray quote is the 8th character of its line, its 10th byte
	for name, text := range map[string]string{
		"header.csv": "\ufeffGröße,a\"b\nx,1\n",
		"row.csv":    "\ufeffsize,code\nGröße,a\"b\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errs := LoadLookups(dir)
	var got []string
	for _, err := range errs {
		got = append(got, strings.TrimPrefix(err.Error(), dir+string(filepath.Separator)))
	}
	want := []string{
		`header.csv:1:8: bare " in non-quoted-field`,
		`row.csv:2:8: bare " in non-quoted-field`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
