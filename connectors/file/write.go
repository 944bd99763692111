package fileconn

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/mappings/x12"
)

// Encode writes body in format to w:
//
//   - json: the body as one JSON document;
//   - jsonl: a list gives one line per element, any other body one line;
//   - csv: a list of objects (columns: the keys of all rows, sorted), a
//     list of lists, or {"columns": [names], "rows": [objects or lists]}
//     to set the column order; a header row unless opts.Header is false;
//     numbers and booleans are written as JSON writes them, null as an
//     empty field, objects and lists as JSON text;
//   - x12: text is written as it is, after checking it is X12; an object
//     (a friendly document, {"transactions": [...]} or a parsed
//     interchange) is built with x12.Build, its control numbers ISA13,
//     GS06 and ST02 (counting up from there) taken from next when next is
//     not nil, whatever the document says.
//
// Errors are the body's fault, not the file system's.
func Encode(w io.Writer, format string, body any, opts CSVOptions, next func(string) (int64, error)) error {
	switch format {
	case JSON:
		b, err := jsonv.Marshal(body)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case JSONL:
		items, ok := body.([]any)
		if !ok {
			items = []any{body}
		}
		bw := bufio.NewWriter(w)
		var buf []byte
		for i, it := range items {
			var err error
			if buf, err = jsonv.Append(buf[:0], it); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
			bw.Write(append(buf, '\n'))
		}
		return bw.Flush()
	case CSV:
		return encodeCSV(w, body, opts)
	case X12:
		switch b := body.(type) {
		case string:
			if err := x12.Validate(strings.NewReader(b)); err != nil {
				return fmt.Errorf("the text is not a well-formed X12 interchange: %w", err)
			}
			_, err := io.WriteString(w, b)
			return err
		case map[string]any:
			opts := x12.BuildOptions{NextControl: next}
			if next != nil { // the outbox numbers what it sends, whatever the document says
				var err error
				for _, c := range []struct {
					kind string
					n    *int64
				}{{"ISA", &opts.InterchangeControl}, {"GS", &opts.GroupControl}, {"ST", &opts.TransactionControl}} {
					if *c.n, err = next(c.kind); err != nil {
						return fmt.Errorf("control number: %w", err)
					}
				}
			}
			out, err := x12.Build(b, opts)
			if err != nil {
				return err
			}
			_, err = w.Write(out)
			return err
		}
		return fmt.Errorf("an x12 body is text or an object (an X12 document), got %s", kindOf(body))
	}
	return fmt.Errorf("unknown format %q (known: csv, json, jsonl, x12)", format)
}

func encodeCSV(w io.Writer, body any, opts CSVOptions) error {
	var columns []string
	rows, ok := body.([]any)
	if m, isMap := body.(map[string]any); isMap {
		cols, ok1 := m["columns"].([]any)
		rs, ok2 := m["rows"].([]any)
		if !ok1 || !ok2 || len(m) != 2 {
			return fmt.Errorf(`a csv body is a list of rows or {"columns": [...], "rows": [...]}, got an object with keys %v`, slices.Sorted(maps.Keys(m)))
		}
		for i, c := range cols {
			s, ok := c.(string)
			if !ok {
				return fmt.Errorf("columns[%d]: a column name is text, got %s", i, kindOf(c))
			}
			columns = append(columns, s)
		}
		rows, ok = rs, true
	}
	if !ok {
		return fmt.Errorf("a csv body is a list of rows, got %s", kindOf(body))
	}
	if columns == nil {
		seen := map[string]bool{}
		for _, r := range rows {
			if m, ok := r.(map[string]any); ok {
				for k := range m {
					if !seen[k] {
						seen[k] = true
						columns = append(columns, k)
					}
				}
			}
		}
		slices.Sort(columns)
	}
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if opts.Delimiter != 0 {
		cw.Comma = opts.Delimiter
	}
	if opts.Header && len(columns) > 0 {
		header := columns
		if opts.EscapeFormulas { // the names are the rows' keys: data too
			header = make([]string, len(columns))
			for i, c := range columns {
				header[i] = escapeFormula(c)
			}
		}
		if err := cw.Write(header); err != nil {
			return err
		}
	}
	var rec []string
	for i, r := range rows {
		rec = rec[:0]
		switch x := r.(type) {
		case map[string]any:
			for _, c := range columns {
				s, err := csvText(x[c], opts.EscapeFormulas)
				if err != nil {
					return fmt.Errorf("rows[%d].%s: %w", i, c, err)
				}
				rec = append(rec, s)
			}
		case []any:
			for j, v := range x {
				s, err := csvText(v, opts.EscapeFormulas)
				if err != nil {
					return fmt.Errorf("rows[%d][%d]: %w", i, j, err)
				}
				rec = append(rec, s)
			}
		default:
			return fmt.Errorf("rows[%d]: a row is an object or a list, got %s", i, kindOf(r))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// csvText is a value as a CSV field; escape: a text that a spreadsheet
// would run as a formula gets a leading ' (see CSVOptions).
func csvText(v any, escape bool) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		if escape {
			return escapeFormula(x), nil
		}
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", fmt.Errorf("%v is not a number JSON can write", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case json.Number:
		return x.String(), nil
	case fmt.Stringer: // decimals
		return x.String(), nil
	}
	b, err := jsonv.Marshal(v)
	return string(b), err
}

// escapeFormula puts a ' before a text a spreadsheet would run as a
// formula (see CSVOptions.EscapeFormulas).
func escapeFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "text"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case int, int64, float64, json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
