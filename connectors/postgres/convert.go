package pgconn

import (
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
// the decoded document, the others their text as psql shows it.
var textTypes = map[uint32]bool{
	pgtype.NumericOID: true, pgtype.JSONOID: true, pgtype.JSONBOID: true,
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
			if fd.DataTypeOID == pgtype.JSONOID || fd.DataTypeOID == pgtype.JSONBOID {
				v, err := jsonv.Decode(raw[i])
				if err != nil {
					return nil, fmt.Errorf("column %s: %w", fd.Name, err)
				}
				row[fd.Name] = v
			} else {
				row[fd.Name] = string(raw[i])
			}
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
