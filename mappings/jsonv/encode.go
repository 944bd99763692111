package jsonv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Marshal returns the compact JSON encoding of v; see Append.
func Marshal(v any) ([]byte, error) {
	bp := buffers.Get().(*[]byte)
	b, err := Append((*bp)[:0], v)
	var out []byte
	if err == nil {
		out = bytes.Clone(b)
	}
	if cap(b) <= 1<<20 {
		*bp = b
		buffers.Put(bp)
	}
	return out, err
}

// buffers holds scratch buffers for Marshal.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// Append appends the compact JSON encoding of v to dst and returns the
// extended buffer. It writes nil, bool, string, the integer and float types,
// json.Number, map[string]any and map[string]string (keys sorted), []any,
// []string, []int, []map[string]any and time.Time (RFC 3339 with nanoseconds)
// itself and hands any other type to encoding/json. Output matches
// encoding/json except that <, > and & are not escaped. NaN and infinities,
// invalid json.Number values and nesting deeper than 10000 are errors; on
// error Append returns dst with its original length.
func Append(dst []byte, v any) ([]byte, error) {
	b, err := appendValue(dst, v, 0)
	if err != nil {
		return dst, err
	}
	return b, nil
}

var errDepth = fmt.Errorf("jsonv: exceeded max depth of %d", maxDepth)

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, errDepth
	}
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, v), nil
	case map[string]any:
		return appendObject(dst, v, depth)
	case []any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, x := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, x, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case float64:
		return appendFloat(dst, v, 64)
	case json.Number:
		return appendNumber(dst, v)
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int16:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int8:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10), nil
	case float32:
		return appendFloat(dst, float64(v), 32)
	case map[string]string:
		if v == nil {
			return append(dst, "null"...), nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(appendString(dst, k), ':')
			dst = appendString(dst, v[k])
		}
		return append(dst, '}'), nil
	case []string:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, s := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, s)
		}
		return append(dst, ']'), nil
	case []int:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, n := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(n), 10)
		}
		return append(dst, ']'), nil
	case []map[string]any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, m := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendObject(dst, m, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case time.Time:
		if y := v.Year(); y < 0 || y > 9999 {
			return dst, fmt.Errorf("jsonv: time %v: year outside of range [0,9999]", v)
		}
		dst = append(dst, '"')
		return append(v.AppendFormat(dst, time.RFC3339Nano), '"'), nil
	default:
		return appendOther(dst, v)
	}
}

// member is an object member.
type member struct {
	key string
	val any
}

func appendObject(dst []byte, m map[string]any, depth int) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	if len(m) > 16 {
		mems, order := make([]member, 0, len(m)), make([]int32, len(m))
		for k, v := range m {
			mems = append(mems, member{k, v})
		}
		for i := range order {
			order[i] = int32(i)
		}
		return appendMembers(dst, mems, order, depth)
	}
	// Collect small objects on the stack, where storing a member needs no
	// write barrier, and sort an index rather than moving the members.
	var (
		small [16]member
		index [16]int32
		n     int
	)
	for k, v := range m {
		small[n], index[n] = member{k, v}, int32(n)
		n++
	}
	return appendMembers(dst, small[:n], index[:n], depth)
}

// appendMembers appends an object with mems in the order of their keys.
// order is scratch space holding the indexes into mems.
func appendMembers(dst []byte, mems []member, order []int32, depth int) ([]byte, error) {
	if len(order) > 12 {
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(mems[a].key, mems[b].key) })
	} else {
		for i := 1; i < len(order); i++ {
			for j := i; j > 0 && mems[order[j]].key < mems[order[j-1]].key; j-- {
				order[j], order[j-1] = order[j-1], order[j]
			}
		}
	}
	dst = append(dst, '{')
	for i, o := range order {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(appendString(dst, mems[o].key), ':')
		var err error
		if dst, err = appendValue(dst, mems[o].val, depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// appendOther encodes v with encoding/json, without HTML escaping.
func appendOther(dst []byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return dst, fmt.Errorf("jsonv: %w", err)
	}
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...), nil
}

// appendFloat formats f like encoding/json: the shortest form, with an
// exponent only for very small and very large magnitudes.
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, fmt.Errorf("jsonv: unsupported value %s", strconv.FormatFloat(f, 'g', -1, bits))
	}
	format, abs := byte('f'), math.Abs(f)
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
		bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if n := len(dst); format == 'e' && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
		dst[n-2] = dst[n-1] // e-07 to e-7
		dst = dst[:n-1]
	}
	return dst, nil
}

func appendNumber(dst []byte, n json.Number) ([]byte, error) {
	if n == "" {
		n = "0"
	}
	if !validNumber(string(n)) {
		return dst, fmt.Errorf("jsonv: invalid number literal %q", string(n))
	}
	return append(dst, n...), nil
}

// validNumber reports whether s is a JSON number.
func validNumber(s string) bool {
	_, end, context := scanNumber([]byte(s), 0)
	return context == "" && end == len(s)
}

const hex = "0123456789abcdef"

// appendString appends s quoted, escaping like encoding/json does without
// HTML escaping: quotes, backslashes, control characters, U+2028 and U+2029,
// with invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			m := special(x)
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) / 8
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(append(dst, s[start:i]...), '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
