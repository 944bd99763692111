package mappings

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/conveyor-run/conveyor/dsl"
)

// Lookups holds a workspace's cross-reference tables, each loaded from a CSV
// file whose first row names the columns and whose first column is the key.
// A nil *Lookups has no tables. It is read-only once built.
type Lookups struct {
	tables map[string]*lookupTable
	broken map[string]error // tables whose file has errors (absent from tables): the first, by name
}

type lookupTable struct {
	columns []string
	rows    map[string][]string
}

// LoadLookups reads every *.csv file in dir as a table named after the file
// without its extension. It returns every problem found, each naming
// file:line; tables with problems are left out. A missing dir is an empty set.
func LoadLookups(dir string) (*Lookups, []error) {
	l := &Lookups{tables: map[string]*lookupTable{}, broken: map[string]error{}}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, []error{err}
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".csv" || strings.HasPrefix(e.Name(), ".") { // .#x.csv: an editor's lock file
			continue
		}
		t, tErrs := readLookupFile(filepath.Join(dir, e.Name()))
		name := strings.TrimSuffix(e.Name(), ".csv")
		if errs = append(errs, tErrs...); len(tErrs) == 0 {
			l.tables[name] = t
		} else {
			l.broken[name] = tErrs[0]
		}
	}
	return l, errs
}

// LookupError is a problem of a lookup file, at a line (and a column)
// when one is known.
type LookupError struct {
	File      string
	Line, Col int // 1-based; 0 when not known
	Msg       string
}

func (e *LookupError) Error() string {
	switch {
	case e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

func lookupErr(file string, line, col int, format string, args ...any) error {
	return &LookupError{File: file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func readLookupFile(path string) (*lookupTable, []error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, []error{err}
	}
	defer f.Close()
	// A byte order mark (spreadsheet exports) goes before the CSV reader
	// sees it: before a quoted header it made the quote a bare one.
	br := bufio.NewReader(f)
	if bom, _ := br.Peek(3); string(bom) == "\ufeff" {
		br.Discard(3)
	}
	r := csv.NewReader(br)
	var (
		recs  [][]string
		lines []int
		errs  []error
	)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		switch {
		case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount):
			errs = append(errs, lookupErr(path, pe.Line, 0, "%d fields, but the header has %d", len(rec), len(recs[0])))
			continue
		case errors.As(err, &pe):
			return nil, append(errs, lookupErr(path, pe.Line, charColumn(path, pe.Line, pe.Column), "%v", pe.Err))
		case err != nil:
			return nil, append(errs, lookupErr(path, 0, 0, "%v", err))
		}
		line, _ := r.FieldPos(0)
		recs, lines = append(recs, rec), append(lines, line)
	}
	t, tErrs := newLookupTable(path, recs, lines)
	return t, append(errs, tErrs...)
}

// charColumn turns the byte column encoding/csv reports on line of file
// into a column of characters, as editors count them: an umlaut before
// the error otherwise moves it a column to the right. The file is read
// again on this error path only; a column it cannot place stays as it is.
func charColumn(file string, line, col int) int {
	src, err := os.ReadFile(file)
	if err != nil || line < 1 || col < 1 {
		return col
	}
	src = bytes.TrimPrefix(src, []byte("\ufeff")) // the CSV reader never saw it
	lines := bytes.Split(src, []byte("\n"))
	if line > len(lines) {
		return col
	}
	l := bytes.TrimSuffix(lines[line-1], []byte("\r"))
	before := min(col-1, len(l))
	return utf8.RuneCount(l[:before]) + (col - 1 - before) + 1 // past the end (end of file) byte for byte
}

// newLookupTable builds a table from its records, the header first; lines
// are the records' line numbers in file, or nil for 1, 2, 3...
func newLookupTable(file string, recs [][]string, lines []int) (*lookupTable, []error) {
	line := func(i int) int {
		if lines == nil {
			return i + 1
		}
		return lines[i]
	}
	if len(recs) == 0 {
		return nil, []error{lookupErr(file, 0, 0, "no header row")}
	}
	header := slices.Clone(recs[0])
	header[0] = strings.TrimPrefix(header[0], "\ufeff")
	var errs []error
	if len(header) < 2 {
		errs = append(errs, lookupErr(file, line(0), 0, "need at least two columns, the key and a value"))
	}
	for i, c := range header {
		if c == "" {
			errs = append(errs, lookupErr(file, line(0), 0, "column %d has no name", i+1))
		} else if slices.Index(header, c) < i {
			errs = append(errs, lookupErr(file, line(0), 0, "column %q appears twice", c))
		}
	}
	t := &lookupTable{columns: header, rows: make(map[string][]string, len(recs)-1)}
	first := make(map[string]int, len(recs)-1)
	for i := 1; i < len(recs); i++ {
		rec := recs[i]
		if len(rec) != len(header) {
			errs = append(errs, lookupErr(file, line(i), 0, "%d fields, but the header has %d", len(rec), len(header)))
			continue
		}
		if j, dup := first[rec[0]]; dup {
			errs = append(errs, lookupErr(file, line(i), 0, "duplicate key %q (first on line %d)", rec[0], line(j)))
			continue
		}
		first[rec[0]] = i
		t.rows[rec[0]] = rec
	}
	if errs != nil {
		return nil, errs
	}
	return t, nil
}

// NewLookups builds lookups from tables given as rows, the first row being
// the header. It panics on a malformed table; it is meant for tests.
func NewLookups(tables map[string][][]string) *Lookups {
	l := &Lookups{tables: make(map[string]*lookupTable, len(tables))}
	for name, rows := range tables {
		t, errs := newLookupTable(name, rows, nil)
		if errs != nil {
			panic(fmt.Sprintf("mappings: %v", errors.Join(errs...)))
		}
		l.tables[name] = t
	}
	return l
}

// Broken returns the first error of the file of table name when that file
// has errors (the table is then absent), or nil.
func (l *Lookups) Broken(name string) error {
	if l == nil {
		return nil
	}
	return l.broken[name]
}

// Names returns the table names, sorted.
func (l *Lookups) Names() []string {
	if l == nil {
		return nil
	}
	names := make([]string, 0, len(l.tables))
	for n := range l.tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Has reports whether there is a table called name.
func (l *Lookups) Has(name string) bool {
	return l != nil && l.tables[name] != nil
}

// Columns returns the column names of table name, key first, or nil when
// there is no such table.
func (l *Lookups) Columns(name string) []string {
	if !l.Has(name) {
		return nil
	}
	return slices.Clone(l.tables[name].columns)
}

// lookupFunction is lookup() over the tables of l.
func lookupFunction(l *Lookups) Function {
	return libFunction(Function{
		Name:        "lookup",
		Signature:   "lookup(table, key, default[, column]) any",
		Description: "Returns the second column (or the named column) of the row of table whose first column is key, or default when there is no such row. Tables are the CSV files in lookups/.",
		Example:     `lookup("currencies", "CHF", "?", "name") == "Swiss franc" && lookup("currencies", "XXX", "?") == "?"`,
		Fn:          l.lookup,
	})
}

func (l *Lookups) lookup(args ...any) (any, error) {
	name, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("table: %s is not a table name", describe(args[0]))
	}
	if !l.Has(name) {
		h := dsl.DidYouMean(name, l.Names())
		if h == "" {
			h = "tables are the CSV files in lookups/"
		}
		return nil, fmt.Errorf("unknown table %q (%s)", name, h)
	}
	t, col := l.tables[name], 1
	if len(args) > 3 {
		c, ok := args[3].(string)
		if !ok {
			return nil, fmt.Errorf("column: %s is not a column name", describe(args[3]))
		}
		if col = slices.Index(t.columns, c); col < 0 {
			h := dsl.DidYouMean(c, t.columns)
			if h == "" {
				h = "columns are " + strings.Join(t.columns, ", ")
			}
			return nil, fmt.Errorf("table %q has no column %q (%s)", name, c, h)
		}
	}
	row, ok := t.rows[stringOf(args[1])]
	if !ok {
		return args[2], nil
	}
	return row[col], nil
}
