package pgconn

import (
	"bytes"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// Param turns a value an expression gave into the text PostgreSQL reads
// for $n: strings as they are; whole and decimal numbers (int, float64,
// json.Number) as their exact decimal text; booleans as true or false;
// nil as NULL; objects and lists as JSON (for json and jsonb columns; Call
// sends a list bound to an array parameter as an array); times as RFC 3339.
func Param(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v is not a number PostgreSQL reads from JSON", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case json.Number:
		return x.String(), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case []byte:
		return `\x` + hex.EncodeToString(x), nil
	}
	b, err := jsonv.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// arrayLiteral writes list as the text of a PostgreSQL array: each
// element as Param gives it, quoted, nil as NULL, a list inside a list as
// the next dimension ({{1,2},{3,4}}).
func arrayLiteral(list []any) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		if _, bytes := e.([]byte); !bytes {
			if inner, ok := jsonv.AsList(e); ok {
				s, err := arrayLiteral(inner)
				if err != nil {
					return "", err
				}
				b.WriteString(s)
				continue
			}
		}
		v, err := Param(e)
		if err != nil {
			return "", fmt.Errorf("element %d: %w", i, err)
		}
		s, ok := v.(string)
		if !ok {
			b.WriteString("NULL")
			continue
		}
		b.WriteByte('"')
		b.WriteString(arrayQuote.Replace(s))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// arrayQuote escapes an element of an array literal inside its quotes.
var arrayQuote = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// textTypes are the result types read from their text form (see
// textResults), by OID: numeric becomes its decimal text, json and jsonb
// the decoded document, json[] and jsonb[] a list of decoded documents,
// arrays of ranges and multiranges a list of their texts, the others
// their text as psql shows it. pgx decodes ranges into structs and "char"
// into a byte, which have no JSON form: printed, a range lost its bounds
// and its numbers ({{15 -1 false finite true} ...} for [1.5,2.5)).
var textTypes = map[uint32]bool{
	pgtype.NumericOID: true, pgtype.JSONOID: true, pgtype.JSONBOID: true,
	pgtype.JSONArrayOID: true, pgtype.JSONBArrayOID: true,
	pgtype.UUIDOID: true, pgtype.InetOID: true, pgtype.CIDROID: true, pgtype.MacaddrOID: true,
	pgtype.IntervalOID: true, pgtype.TimeOID: true, 1266 /* timetz */ : true, 790 /* money */ : true,
	pgtype.XMLOID: true, pgtype.BitOID: true, pgtype.VarbitOID: true, pgtype.PointOID: true,
	pgtype.QCharOID: true, pgtype.Int4rangeOID: true, pgtype.Int8rangeOID: true, pgtype.NumrangeOID: true,
	pgtype.DaterangeOID: true, pgtype.TsrangeOID: true, pgtype.TstzrangeOID: true,
	pgtype.Int4multirangeOID: true, pgtype.Int8multirangeOID: true, pgtype.NummultirangeOID: true,
	pgtype.DatemultirangeOID: true, pgtype.TsmultirangeOID: true, pgtype.TstzmultirangeOID: true,
}

// textArrays are the array types of textTypes whose elements are read as
// text (ranges and multiranges).
var textArrays = map[uint32]bool{
	pgtype.Int4rangeArrayOID: true, pgtype.Int8rangeArrayOID: true, pgtype.NumrangeArrayOID: true,
	pgtype.DaterangeArrayOID: true, pgtype.TsrangeArrayOID: true, pgtype.TstzrangeArrayOID: true,
	pgtype.Int4multirangeArrayOID: true, pgtype.Int8multirangeArrayOID: true, pgtype.NummultirangeArrayOID: true,
	pgtype.DatemultirangeArrayOID: true, pgtype.TsmultirangeArrayOID: true, pgtype.TstzmultirangeArrayOID: true,
}

func init() {
	for oid := range textArrays {
		textTypes[oid] = true
	}
}

// convertRow turns one row into an object, column name -> Convert.
func convertRow(m *pgtype.Map, fields []pgconn.FieldDescription, raw [][]byte) (map[string]any, error) {
	row := make(map[string]any, len(fields))
	for i := range fields {
		fd := &fields[i]
		if raw[i] == nil {
			row[fd.Name] = nil
			continue
		}
		if textTypes[fd.DataTypeOID] && fd.Format == pgtype.TextFormatCode {
			var v any = string(raw[i])
			var err error
			switch fd.DataTypeOID {
			case pgtype.JSONOID, pgtype.JSONBOID:
				v, err = jsonv.Decode(raw[i])
			case pgtype.JSONArrayOID, pgtype.JSONBArrayOID:
				// pgx would decode the elements with encoding/json, as
				// float64: read them as json and jsonb columns are read.
				v, err = decodeArray(raw[i], false)
			default:
				if textArrays[fd.DataTypeOID] {
					v, err = decodeArray(raw[i], true)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", fd.Name, err)
			}
			row[fd.Name] = v
			continue
		}
		var v any = string(raw[i])
		if dt, ok := m.TypeForOID(fd.DataTypeOID); ok {
			var err error
			if v, err = dt.Codec.DecodeValue(m, fd.DataTypeOID, fd.Format, raw[i]); err != nil {
				return nil, fmt.Errorf("column %s: %w", fd.Name, err)
			}
			if flat, ok := v.([]any); ok && fd.Format == pgtype.TextFormatCode {
				v = reshape(flat, raw[i])
			}
		} else if fd.Format != pgtype.TextFormatCode {
			v = append([]byte(nil), raw[i]...)
		}
		row[fd.Name] = Convert(fd.DataTypeOID, v)
	}
	return row, nil
}

// Convert turns a value pgx decoded from a column of type oid into a
// plain JSON value: integers int, floats float64 (NaN and infinities as
// text), numeric its exact decimal text, timestamp and timestamptz RFC 3339
// text in UTC (a timestamp without time zone is read as UTC), date
// 2006-01-02, bytea base64, arrays lists, NULL nil, anything else text.
func Convert(oid uint32, v any) any {
	switch x := v.(type) {
	case nil, string, bool, int, map[string]any:
		return x
	case int16:
		return int(x)
	case int32:
		return int(x)
	case int64:
		return int(x)
	case float32:
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return Convert(oid, f)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64) // NaN, +Inf, -Inf: JSON has no such numbers
		}
		return x
	case time.Time:
		if oid == pgtype.DateOID || oid == pgtype.DateArrayOID {
			return x.Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Convert(oid, e)
		}
		return out
	case [16]byte: // uuid inside an array
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case map[string]*string: // hstore
		out := make(map[string]any, len(x))
		for k, s := range x {
			if s == nil {
				out[k] = nil
			} else {
				out[k] = *s
			}
		}
		return out
	case driver.Valuer: // pgtype.Numeric (numeric[]), Date (infinity), Time, Interval ...
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprint(x)
		}
		if _, again := dv.(driver.Valuer); again {
			return fmt.Sprint(dv)
		}
		return Convert(oid, dv)
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v)
}

// reshape gives flat, the elements pgx decoded from the array text, the
// dimensions of text: pgx reads {{1,2},{3,4}} as one flat list, which lost
// the grid. The shape comes from reading text as an array of texts; should
// that fail (an element type with another delimiter, such as box), or
// count other elements than pgx did, flat is kept.
func reshape(flat []any, text []byte) any {
	p := 0
	if len(text) > 0 && text[0] == '[' { // bounds: [0:1][1:2]={...}
		p = bytes.IndexByte(text, '=') + 1
	}
	if p+1 >= len(text) || text[p] != '{' || text[p+1] != '{' {
		return flat // one dimension (an element starting with { is quoted)
	}
	shape, err := decodeArray(text, true)
	if err != nil {
		return flat
	}
	n := 0
	var fill func(v any) any
	fill = func(v any) any {
		if l, ok := v.([]any); ok {
			out := make([]any, len(l))
			for i, e := range l {
				out[i] = fill(e)
			}
			return out
		}
		n++
		if n > len(flat) {
			return nil
		}
		return flat[n-1]
	}
	out := fill(shape)
	if n != len(flat) {
		return flat
	}
	return out
}

// decodeArray reads an array value in the text form PostgreSQL writes
// ({elem,elem}, nested braces for more dimensions, an optional
// [lower:upper]= prefix, elements in double quotes with backslash escapes,
// NULL unquoted) into a list, nested for each dimension, decoding every
// element with jsonv (json[] and jsonb[]), or keeping its text when raw.
func decodeArray(text []byte, raw bool) (any, error) {
	p := &arrayText{s: text, raw: raw}
	if len(text) > 0 && text[0] == '[' {
		// Bounds other than 1 (e.g. [0:1]={...}); a list has no bounds.
		eq := bytes.IndexByte(text, '=')
		if eq < 0 {
			return nil, fmt.Errorf("array text %.40q has bounds but no =", text)
		}
		p.i = eq + 1
	}
	v, err := p.array()
	if err == nil && p.i != len(p.s) {
		err = p.errorf("unexpected text after the array")
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// arrayText reads the text form of an array (see decodeArray).
type arrayText struct {
	s   []byte
	i   int
	raw bool // elements are text, not JSON
}

func (p *arrayText) errorf(format string, args ...any) error {
	return fmt.Errorf("reading array text at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *arrayText) eat(c byte) bool {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *arrayText) array() ([]any, error) {
	if !p.eat('{') {
		return nil, p.errorf("want {")
	}
	out := []any{}
	if p.eat('}') {
		return out, nil
	}
	for {
		var v any
		var err error
		if p.eat('{') {
			p.i-- // array() reads the brace itself
			v, err = p.array()
		} else {
			v, err = p.element()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			return out, nil
		}
		return nil, p.errorf("want , or }")
	}
}

// element reads one element: quoted, or bare up to the next , or } (NULL
// bare is SQL NULL), and decodes it as JSON unless p.raw.
func (p *arrayText) element() (any, error) {
	var buf []byte
	if p.eat('"') {
		for {
			if p.i >= len(p.s) {
				return nil, p.errorf("unterminated quoted element")
			}
			c := p.s[p.i]
			p.i++
			if c == '"' {
				break
			}
			if c == '\\' {
				if p.i >= len(p.s) {
					return nil, p.errorf("unterminated quoted element")
				}
				c = p.s[p.i]
				p.i++
			}
			buf = append(buf, c)
		}
	} else {
		for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != '}' {
			c := p.s[p.i]
			p.i++
			if c == '\\' && p.i < len(p.s) {
				c = p.s[p.i]
				p.i++
			}
			buf = append(buf, c)
		}
		buf = bytes.TrimSpace(buf)
		if len(buf) == 0 {
			return nil, p.errorf("empty element")
		}
		if bytes.EqualFold(buf, []byte("NULL")) {
			return nil, nil
		}
	}
	if p.raw {
		return string(buf), nil
	}
	v, err := jsonv.Decode(buf)
	if err != nil {
		return nil, p.errorf("element: %v", err)
	}
	return v, nil
}
