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
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// Param turns a value an expression gave into the text PostgreSQL reads
// for $n: strings as they are; whole and decimal numbers (int, float64,
// json.Number) as their exact decimal text; booleans as true or false;
// nil as NULL; objects and lists as JSON (for json and jsonb columns);
// times as RFC 3339.
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

// textTypes are the result types read from their text form (see
// textResults), by OID: numeric becomes its decimal text, json and jsonb
// the decoded document, json[] and jsonb[] a list of decoded documents,
// the others their text as psql shows it.
var textTypes = map[uint32]bool{
	pgtype.NumericOID: true, pgtype.JSONOID: true, pgtype.JSONBOID: true,
	pgtype.JSONArrayOID: true, pgtype.JSONBArrayOID: true,
	pgtype.UUIDOID: true, pgtype.InetOID: true, pgtype.CIDROID: true, pgtype.MacaddrOID: true,
	pgtype.IntervalOID: true, pgtype.TimeOID: true, 1266 /* timetz */ : true, 790 /* money */ : true,
	pgtype.XMLOID: true, pgtype.BitOID: true, pgtype.VarbitOID: true, pgtype.PointOID: true,
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
				v, err = decodeJSONArray(raw[i])
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

// decodeJSONArray reads a json[] or jsonb[] value in the text form
// PostgreSQL writes ({elem,elem}, nested braces for more dimensions, an
// optional [lower:upper]= prefix, elements in double quotes with
// backslash escapes, NULL unquoted) into a list, nested for each
// dimension, decoding every element with jsonv.
func decodeJSONArray(text []byte) (any, error) {
	p := &arrayText{s: text}
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

// arrayText reads the text form of an array (see decodeJSONArray).
type arrayText struct {
	s []byte
	i int
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
// bare is SQL NULL), and decodes it as JSON.
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
	v, err := jsonv.Decode(buf)
	if err != nil {
		return nil, p.errorf("element: %v", err)
	}
	return v, nil
}
