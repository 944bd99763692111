package fileconn

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
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
//     list of texts; a byte order mark is skipped, blank lines too; lines
//     may end in LF, CRLF or a bare CR; every row must have as many
//     fields as the first, be UTF-8 and be at most MaxLine bytes long;
//   - jsonl: every non-blank line is one value;
//   - json: the whole input is one value, read into memory; an array gives
//     its elements, any other value is the one record;
//   - x12: every transaction set is one record, shaped as the interchange
//     holding only it (see x12.Transaction.View); several interchanges may
//     follow each other.
//
// Only json holds the whole input; the others hold one record at a time.
//
// JSON and JSON Lines text that is not UTF-8 is taken as jsonv decodes it,
// each bad byte becoming U+FFFD, as encoding/json does. Unlike CSV it is
// not refused: JSON is UTF-8 by definition (RFC 8259), so the programs
// that write it do not export legacy encodings the way spreadsheets do,
// and refusing would turn away files that are read today for one stray
// byte in a free-text field.
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
func skipBOM(r io.Reader) *bufio.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	return br
}

// ---- CSV ----------------------------------------------------------------

type csvRecords struct {
	r      *csv.Reader
	in     *csvInput
	header []string
	opts   CSVOptions
	read   bool // header read
}

func newCSVRecords(r io.Reader, opts CSVOptions) *csvRecords {
	in := &csvInput{br: skipBOM(r), line: 1, rowLine: 1}
	cr := csv.NewReader(in)
	if opts.Delimiter != 0 {
		cr.Comma = opts.Delimiter
	}
	cr.ReuseRecord = true
	return &csvRecords{r: cr, in: in, opts: opts}
}

// row reads the next row and notes where the one after it starts.
func (c *csvRecords) row() ([]string, error) {
	row, err := c.r.Read()
	c.in.start = c.r.InputOffset()
	if n := len(row); n > 0 && (err == nil || errors.Is(err, csv.ErrFieldCount)) {
		line, _ := c.r.FieldPos(n - 1)
		c.in.rowLine = line + strings.Count(row[n-1], "\n") + 1
	}
	return row, err
}

func (c *csvRecords) Next() (any, error) {
	if c.opts.Header && !c.read {
		c.read = true
		row, err := c.row()
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, c.error(err, nil, true)
		}
		if err := c.checkUTF8(row, true); err != nil {
			return nil, err
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
	row, err := c.row()
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, c.error(err, row, false)
	}
	if err := c.checkUTF8(row, false); err != nil {
		return nil, err
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

// checkUTF8 refuses a row with a field that is not UTF-8, which is how a
// file exported in a legacy encoding (Windows-1252, Latin-1) looks: taken
// as it is, the bytes would turn into U+FFFD further on and the text would
// be lost without anyone noticing. A bad data row is skipped like a row
// with the wrong number of fields; a bad header stops reading.
func (c *csvRecords) checkUTF8(row []string, header bool) error {
	for i, f := range row {
		if utf8.ValidString(f) {
			continue
		}
		bad := f[0]
		for j, r := range f {
			if r == utf8.RuneError {
				if _, size := utf8.DecodeRuneInString(f[j:]); size == 1 {
					bad = f[j]
					break
				}
			}
		}
		what := fmt.Sprintf("field %d", i+1)
		if !header && i < len(c.header) {
			what = fmt.Sprintf("field %d (%q)", i+1, c.header[i])
		}
		line, col := c.r.FieldPos(i)
		e := &Error{Line: line, Column: col, Fatal: header,
			Msg: fmt.Sprintf("%s is not UTF-8 text (byte 0x%02X); the file looks like another encoding, such as Windows-1252: export it as UTF-8", what, bad)}
		if header {
			e.Msg = "header: " + e.Msg
		}
		return e
	}
	return nil
}

// error locates a csv.Reader error. A row with the wrong number of
// fields does not stop reading; a broken quote does, and so does a row
// longer than MaxLine.
func (c *csvRecords) error(err error, row []string, header bool) error {
	var pe *csv.ParseError
	var fe *Error
	if errors.As(err, &fe) { // from csvInput
		if header {
			e := *fe
			e.Msg = "header: " + e.Msg
			return &e
		}
		return fe
	}
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
		// csv says the same for a quote that is never closed and for a
		// closing quote followed by more text ("x"y). Reading stops here
		// anyway: when the rest of the input holds no further row and
		// an odd number of quotes, a quoted field runs to the end.
		if _, err := c.r.Read(); err == io.EOF && c.in.eof && c.in.quoted {
			e.Msg = fmt.Sprintf("a quoted field of the row starting on line %d is not closed before the end of the file", pe.StartLine)
		}
	}
	if header {
		e.Msg = "header: " + e.Msg
	}
	return e
}

// csvInput is what the csv.Reader reads. It does two things csv does not:
//
//   - A line break that is a bare CR (classic Mac OS, some exporters)
//     becomes LF outside quoted fields: csv ends rows only at LF, and such
//     a file would read as one long header row and no records. CRLF and
//     a CR inside quotes are left as they are.
//   - It stops with a fatal *Error once the row being read is longer than
//     MaxLine, as JSON Lines does: a stray quote would otherwise read the
//     rest of a file of any size into one field.
//
// It follows the quotes to know which CRs are inside a field: in valid
// CSV every quote opens or closes a quoted field or is one of a doubled
// pair, so the count is odd exactly inside quoted fields. After a quote
// csv refuses the count no longer matters; reading stops there.
type csvInput struct {
	br      *bufio.Reader
	n       int64 // bytes handed to csv
	start   int64 // csv's offset of the end of the last row read
	rowLine int   // the line the next row starts on (or a blank line before it)
	line    int   // lines handed to csv, plus one
	quoted  bool  // an odd number of quotes handed to csv
	eof     bool  // br has no more
}

func (c *csvInput) Read(p []byte) (int, error) {
	if c.n-c.start > MaxLine {
		return 0, &Error{Line: c.line, Fatal: true,
			Msg: fmt.Sprintf("the row starting on line %d is longer than %d bytes; is a quote not closed?", c.rowLine, MaxLine)}
	}
	n, err := c.br.Read(p)
	c.line += bytes.Count(p[:n], []byte{'\n'})
	// From CR to CR; bytes.Count and IndexByte are much faster than a
	// loop over every byte.
	for rest := p[:n]; ; {
		i := bytes.IndexByte(rest, '\r')
		if i < 0 {
			c.quoted = c.quoted != (bytes.Count(rest, []byte{'"'})%2 == 1)
			break
		}
		c.quoted = c.quoted != (bytes.Count(rest[:i], []byte{'"'})%2 == 1)
		if !c.quoted {
			var next byte
			if i+1 < len(rest) {
				next = rest[i+1]
			} else if b, err := c.br.Peek(1); err == nil {
				next = b[0]
			}
			if next != '\n' {
				rest[i] = '\n'
				c.line++
			}
		}
		rest = rest[i+1:]
	}
	c.n += int64(n)
	if err == io.EOF {
		c.eof = true
	}
	return n, err
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
