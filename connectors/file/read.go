package fileconn

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/mappings/x12"
)

// The formats of inbox and outbox files.
const (
	JSON  = "json"  // one JSON value
	JSONL = "jsonl" // JSON Lines: one value per line
	CSV   = "csv"   // comma-separated values, optionally with a header row
	X12   = "x12"   // ANSI X12 EDI interchanges
)

// MaxLine is the longest JSON Lines line a reader takes.
const MaxLine = 16 << 20

// CSVOptions describe a CSV file: the field delimiter and whether the
// first row names the columns.
type CSVOptions struct {
	Delimiter rune // default ','
	Header    bool
	// EscapeFormulas (writing only) puts a ' before a text field that
	// starts with =, +, -, @, a tab or a carriage return, so a
	// spreadsheet opening the file shows it instead of running it as a
	// formula (CSV injection). Off by default: the ' is part of the field
	// for every other reader, and a text like "-5" gets one too.
	EscapeFormulas bool
}

// DefaultCSV is a comma-separated file with a header row.
var DefaultCSV = CSVOptions{Delimiter: ',', Header: true}

// Error is malformed input, located for an analyst: a line and column
// (CSV, JSON, JSON Lines) or an X12 segment and byte offset.
type Error struct {
	Line      int    // 1-based line; 0 when not known
	Column    int    // 1-based column in bytes; 0 when not known
	Segment   int    // X12: 1-based segment index in the interchange (the ISA is 1)
	SegmentID string // X12: e.g. "SE"
	Offset    int64  // X12: byte offset in the file
	Msg       string // what is wrong
	Fatal     bool   // reading cannot go on after it
}

// Error returns e.g. "line 3, column 7: bare \" in non-quoted field" or
// "segment 14 (SE) at byte 812: SE01 says 12 segments, ...".
func (e *Error) Error() string {
	switch {
	case e.Segment > 0 && e.SegmentID != "":
		return fmt.Sprintf("segment %d (%s) at byte %d: %s", e.Segment, e.SegmentID, e.Offset, e.Msg)
	case e.Segment > 0:
		return fmt.Sprintf("segment %d at byte %d: %s", e.Segment, e.Offset, e.Msg)
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Records reads the records of a file one at a time: CSV rows, JSON Lines
// lines, X12 transaction sets, or the elements of a JSON array. Next
// returns io.EOF after the last record; other errors are *Error, after
// which Next may be called again unless the error is Fatal.
type Records interface {
	Next() (any, error)
}

// NewRecords returns a reader of the records of r in format:
//
//   - csv: a row becomes an object of header name -> text (header), or a
//     list of texts; a byte order mark is skipped, blank lines too; every
//     row must have as many fields as the first;
//   - jsonl: every non-blank line is one value;
//   - json: the whole input is one value, read into memory; an array gives
//     its elements, any other value is the one record;
//   - x12: every transaction set is one record, shaped as the interchange
//     holding only it (see x12.Transaction.View); several interchanges may
//     follow each other.
//
// Only json holds the whole input; the others hold one record at a time.
func NewRecords(r io.Reader, format string, opts CSVOptions) (Records, error) {
	switch format {
	case CSV:
		return newCSVRecords(r, opts), nil
	case JSONL:
		return &jsonlRecords{br: bufio.NewReaderSize(skipBOM(r), 64<<10)}, nil
	case JSON:
		return &jsonRecords{r: r}, nil
	case X12:
		return &x12Records{rd: x12.NewReader(r)}, nil
	}
	return nil, fmt.Errorf("unknown format %q (known: csv, json, jsonl, x12)", format)
}

// ReadAll reads a whole file into one value: the JSON value (json), the
// interchange's JSON view (x12: one interchange), or the list of records
// (csv, jsonl). Errors are *Error.
func ReadAll(r io.Reader, format string, opts CSVOptions) (any, error) {
	switch format {
	case JSON:
		return decodeJSON(r)
	case X12:
		ic, err := x12.Parse(r)
		if err != nil {
			return nil, x12Error(err)
		}
		return ic.JSON(), nil
	}
	rs, err := NewRecords(r, format, opts)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for {
		v, err := rs.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

// skipBOM drops a UTF-8 byte order mark at the start of r.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	return br
}

// ---- CSV ----------------------------------------------------------------

type csvRecords struct {
	r      *csv.Reader
	header []string
	opts   CSVOptions
	read   bool // header read
}

func newCSVRecords(r io.Reader, opts CSVOptions) *csvRecords {
	cr := csv.NewReader(skipBOM(r))
	if opts.Delimiter != 0 {
		cr.Comma = opts.Delimiter
	}
	cr.ReuseRecord = true
	return &csvRecords{r: cr, opts: opts}
}

func (c *csvRecords) Next() (any, error) {
	if c.opts.Header && !c.read {
		c.read = true
		row, err := c.r.Read()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, c.error(err, nil, true)
		}
		c.header = make([]string, len(row))
		seen := map[string]int{}
		for i, name := range row {
			if j, dup := seen[name]; dup {
				return nil, &Error{Line: 1, Msg: fmt.Sprintf("header: columns %d and %d are both named %q", j+1, i+1, name), Fatal: true}
			}
			seen[name] = i
			c.header[i] = name
		}
	}
	row, err := c.r.Read()
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, c.error(err, row, false)
	}
	if c.header == nil {
		out := make([]any, len(row))
		for i, f := range row {
			out[i] = f
		}
		return out, nil
	}
	out := make(map[string]any, len(row))
	for i, f := range row {
		out[c.header[i]] = f
	}
	return out, nil
}

// error locates a csv.Reader error. A row with the wrong number of
// fields does not stop reading; a broken quote does.
func (c *csvRecords) error(err error, row []string, header bool) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return &Error{Msg: err.Error(), Fatal: true}
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		want, what := c.r.FieldsPerRecord, "the first row has"
		if c.header != nil {
			what = "the header has"
		}
		return &Error{Line: pe.StartLine, Msg: fmt.Sprintf("the row has %d fields, %s %d", len(row), what, want)}
	}
	e := &Error{Line: pe.Line, Column: pe.Column, Msg: pe.Err.Error(), Fatal: true}
	if pe.StartLine != pe.Line {
		e.Msg += fmt.Sprintf(" (in the row starting on line %d)", pe.StartLine)
	}
	if errors.Is(pe.Err, csv.ErrQuote) {
		// Reading stops here anyway: look whether the quote ran to the end.
		if _, err := c.r.Read(); err == io.EOF {
			e.Msg = fmt.Sprintf("a quoted field of the row starting on line %d is not closed before the end of the file", pe.StartLine)
		}
	}
	if header {
		e.Msg = "header: " + e.Msg
	}
	return e
}

// ---- JSON Lines -----------------------------------------------------------

type jsonlRecords struct {
	br   *bufio.Reader
	line int
	buf  []byte
}

func (j *jsonlRecords) Next() (any, error) {
	for {
		j.buf = j.buf[:0]
		for {
			chunk, err := j.br.ReadSlice('\n')
			j.buf = append(j.buf, chunk...)
			if err == bufio.ErrBufferFull {
				if len(j.buf) > MaxLine {
					return nil, &Error{Line: j.line + 1, Msg: fmt.Sprintf("the line is longer than %d bytes", MaxLine), Fatal: true}
				}
				continue
			}
			if err != nil && err != io.EOF {
				return nil, &Error{Line: j.line + 1, Msg: err.Error(), Fatal: true}
			}
			if err == io.EOF && len(j.buf) == 0 {
				return nil, io.EOF
			}
			break
		}
		j.line++
		line := bytes.TrimSpace(j.buf)
		if len(line) == 0 {
			continue
		}
		v, err := jsonv.Decode(line)
		if err != nil {
			e := &Error{Line: j.line, Msg: err.Error()}
			var se *jsonv.SyntaxError
			if errors.As(err, &se) {
				// Columns count from the line as written, leading blanks included.
				e.Column, e.Msg = se.Column+len(j.buf)-len(bytes.TrimLeft(j.buf, " \t\r\n")), se.Msg
			}
			return nil, e
		}
		return v, nil
	}
}

// ---- JSON ---------------------------------------------------------------

type jsonRecords struct {
	r     io.Reader
	items []any
	i     int
	done  bool
}

func (j *jsonRecords) Next() (any, error) {
	if !j.done {
		j.done = true
		v, err := decodeJSON(j.r)
		if err != nil {
			return nil, err
		}
		if list, ok := v.([]any); ok {
			j.items = list
		} else {
			j.items = []any{v}
		}
	}
	if j.i >= len(j.items) {
		return nil, io.EOF
	}
	v := j.items[j.i]
	j.items[j.i] = nil
	j.i++
	return v, nil
}

func decodeJSON(r io.Reader) (any, error) {
	data, err := io.ReadAll(skipBOM(r))
	if err != nil {
		return nil, &Error{Msg: err.Error(), Fatal: true}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Line: 1, Column: 1, Msg: "the file is empty, expected a JSON value", Fatal: true}
	}
	v, err := jsonv.Decode(data)
	if err != nil {
		var se *jsonv.SyntaxError
		if errors.As(err, &se) {
			return nil, &Error{Line: se.Line, Column: se.Column, Offset: se.Offset, Msg: se.Msg, Fatal: true}
		}
		return nil, &Error{Msg: err.Error(), Fatal: true}
	}
	return v, nil
}

// ---- X12 ----------------------------------------------------------------

type x12Records struct{ rd *x12.Reader }

func (x *x12Records) Next() (any, error) {
	tx, err := x.rd.Next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, x12Error(err)
	}
	return tx.View(), nil
}

// x12Error turns the first x12.Error in err into an *Error.
func x12Error(err error) error {
	es := x12.Errors(err)
	if len(es) == 0 {
		return &Error{Msg: err.Error(), Fatal: true}
	}
	e := es[0]
	out := &Error{Segment: e.Segment, SegmentID: e.SegmentID, Offset: e.Offset, Msg: e.Msg, Fatal: e.Fatal()}
	if n := len(es); n > 1 {
		out.Msg += fmt.Sprintf(" (and %d more)", n-1)
	}
	if out.Segment == 0 {
		out.Segment = 1
	}
	return out
}

// validRune reports whether a CSV delimiter is usable.
func validRune(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && r != utf8.RuneError
}
