// Package jsonv owns the JSON codec for payloads. Decode turns bytes into the
// plain values expressions read (map[string]any, []any, string, int, float64,
// bool, nil and json.Number), keeping every number exact and reporting syntax
// errors by line and column; it accepts exactly the documents encoding/json
// accepts. Append and Marshal write such values back as compact JSON with
// sorted object keys. Both directions are several times faster than
// encoding/json and allocate far less.
package jsonv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of objects and arrays Decode accepts, the
// same limit as encoding/json.
const maxDepth = 10000

// SyntaxError is a malformed JSON document. It locates the offending byte so
// that an analyst can find it in the payload.
type SyntaxError struct {
	Offset int64  // bytes before the offending byte; the input length at end of input
	Line   int    // 1-based line of Offset
	Column int    // 1-based column of Offset, in bytes
	Msg    string // what is wrong, e.g. "invalid character '}' after object key"
}

// Error returns the message prefixed with line and column.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Decode parses data, which must hold exactly one JSON value with optional
// surrounding whitespace. Objects become map[string]any (the last of duplicate
// keys wins), arrays []any, strings string, booleans bool and null nil.
//
// A number without fraction or exponent becomes int if it fits and
// json.Number holding the literal otherwise. Any other number becomes float64
// when the float's shortest decimal form has the same value as the literal
// (so 1.10 becomes 1.1 and 1e20 becomes 1e20), and json.Number otherwise, so
// no digit is ever lost.
//
// Escapes are decoded; invalid UTF-8 and unpaired surrogates become U+FFFD,
// as with encoding/json. Errors are of type *SyntaxError.
func Decode(data []byte) (any, error) {
	d := decoders.Get().(*decoder)
	d.data = data
	v, err := d.document()
	d.reset()
	decoders.Put(d)
	return v, err
}

// decoder holds the input and scratch space reused between calls.
type decoder struct {
	data  []byte
	depth int
	vals  []any       // elements of the arrays being decoded, innermost last
	buf   []byte      // unescaped string being built
	keys  [256]string // object keys seen recently
	strs  [256]any    // short string values seen recently
	sizes [64]uint8   // object sizes by hash of the first key
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// reset drops references into the last input and result, and oversized
// scratch, before the decoder goes back to the pool.
func (d *decoder) reset() {
	d.data, d.depth = nil, 0
	const keep = 1 << 12
	if cap(d.vals) > keep {
		d.vals = nil
	}
	clear(d.vals[:cap(d.vals)])
	d.vals = d.vals[:0]
	if cap(d.buf) > keep {
		d.buf = nil
	}
}

func (d *decoder) document() (any, error) {
	i := skipSpace(d.data, 0)
	v, i, err := d.value(i)
	if err != nil {
		return nil, err
	}
	if i = skipSpace(d.data, i); i < len(d.data) {
		return nil, d.unexpected(i, "after top-level value")
	}
	return v, nil
}

func skipSpace(data []byte, i int) int {
	for ; i < len(data); i++ {
		if c := data[i]; c > ' ' || c != ' ' && c != '\n' && c != '\t' && c != '\r' {
			break
		}
	}
	return i
}

// value decodes the value starting at data[i] and returns the index after it.
func (d *decoder) value(i int) (any, int, error) {
	if i >= len(d.data) {
		return nil, i, d.unexpected(i, "")
	}
	switch c := d.data[i]; c {
	case '"':
		b, j, err := d.str(i + 1)
		if err != nil || len(b) == 0 || len(b) > maxCached {
			return string(b), j, err
		}
		// Payloads repeat short values (codes, enums, units) as they
		// repeat keys: share them, boxed, to save two allocations.
		slot := &d.strs[hash(b)%uint(len(d.strs))]
		if s, ok := (*slot).(string); !ok || s != string(b) {
			*slot = string(b)
		}
		return *slot, j, nil
	case '{':
		return d.object(i)
	case '[':
		return d.array(i)
	case 't':
		j, err := d.literal(i, "true")
		return true, j, err
	case 'f':
		j, err := d.literal(i, "false")
		return false, j, err
	case 'n':
		j, err := d.literal(i, "null")
		return nil, j, err
	default:
		if c == '-' || c-'0' < 10 {
			return d.number(i)
		}
		return nil, i, d.unexpected(i, "looking for beginning of value")
	}
}

func (d *decoder) literal(i int, lit string) (int, error) {
	if end := i + len(lit); end <= len(d.data) && string(d.data[i:end]) == lit {
		return end, nil
	}
	for k := 1; ; k++ {
		if j := i + k; j >= len(d.data) || d.data[j] != lit[k] {
			return j, d.unexpected(j, fmt.Sprintf("in literal %s (expecting %s)", lit, quoteChar(lit[k:])))
		}
	}
}

func (d *decoder) object(i int) (any, int, error) {
	if d.depth++; d.depth > maxDepth {
		return nil, i, d.errorAt(i, fmt.Sprintf("exceeded max depth of %d", maxDepth))
	}
	data := d.data
	if i = skipSpace(data, i+1); i < len(data) && data[i] == '}' {
		d.depth--
		return map[string]any{}, i + 1, nil
	}
	var (
		m    map[string]any
		size *uint8 // members of the last object with the same first key
	)
	for {
		if i >= len(data) || data[i] != '"' {
			return nil, i, d.unexpected(i, "looking for beginning of object key string")
		}
		k, j, err := d.key(i + 1)
		if err != nil {
			return nil, j, err
		}
		if m == nil {
			// Objects with the same first key tend to have the same size.
			size = &d.sizes[hash(k)%uint(len(d.sizes))]
			m = make(map[string]any, *size)
		}
		if i = skipSpace(data, j); i >= len(data) || data[i] != ':' {
			return nil, i, d.unexpected(i, "after object key")
		}
		v, j, err := d.value(skipSpace(data, i+1))
		if err != nil {
			return nil, j, err
		}
		m[k] = v
		if i = skipSpace(data, j); i < len(data) {
			switch data[i] {
			case ',':
				i = skipSpace(data, i+1)
				continue
			case '}':
				*size = uint8(min(len(m), math.MaxUint8))
				d.depth--
				return m, i + 1, nil
			}
		}
		return nil, i, d.unexpected(i, "after object key:value pair")
	}
}

func (d *decoder) array(i int) (any, int, error) {
	if d.depth++; d.depth > maxDepth {
		return nil, i, d.errorAt(i, fmt.Sprintf("exceeded max depth of %d", maxDepth))
	}
	data, base := d.data, len(d.vals)
	if i = skipSpace(data, i+1); i < len(data) && data[i] == ']' {
		d.depth--
		return []any{}, i + 1, nil
	}
	for {
		v, j, err := d.value(i)
		if err != nil {
			return nil, j, err
		}
		d.vals = append(d.vals, v)
		if i = skipSpace(data, j); i < len(data) {
			switch data[i] {
			case ',':
				i = skipSpace(data, i+1)
				continue
			case ']':
				a := make([]any, len(d.vals)-base)
				copy(a, d.vals[base:])
				d.vals = d.vals[:base]
				d.depth--
				return a, i + 1, nil
			}
		}
		return nil, i, d.unexpected(i, "after array element")
	}
}

// key decodes an object key like str, sharing the memory of keys seen
// recently: payloads repeat the same few keys many times.
func (d *decoder) key(i int) (string, int, error) {
	b, j, err := d.str(i)
	if err != nil || len(b) == 0 || len(b) > maxCached {
		return string(b), j, err
	}
	slot := &d.keys[hash(b)%uint(len(d.keys))]
	if *slot != string(b) {
		*slot = string(b)
	}
	return *slot, j, nil
}

// maxCached is the length of the longest keys and string values that the
// decoder shares between occurrences.
const maxCached = 32

// hash is a cheap hash of a byte string for the caches of keys and
// values.
func hash[T string | []byte](b T) uint {
	n := len(b)
	if n == 0 {
		return 0
	}
	h := uint(n)*0x9e37 ^ uint(b[0])<<4 ^ uint(b[n/2])<<2 ^ uint(b[n-1])*0x45
	return h ^ h>>8
}

// plain reports the ASCII bytes that stand for themselves inside a string.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// special returns the bytes of x, eight bytes of a string read little-endian,
// that are not plain ASCII, as their top bits; the lowest one is exact.
func special(x uint64) uint64 {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q, bs := x^lsb*'"', x^lsb*'\\'
	return ((x-lsb*' ')&^x | (q-lsb)&^q | (bs-lsb)&^bs | x) & msb
}

// str decodes the string whose contents start at data[i] and returns its
// bytes, which alias the input or the decoder's scratch buffer, and the index
// after the closing quote.
func (d *decoder) str(i int) ([]byte, int, error) {
	data, start := d.data, i
	for ; i+8 <= len(data); i += 8 {
		if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			i += bits.TrailingZeros64(m) / 8
			break
		}
	}
	for i < len(data) {
		if c := data[i]; c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			if c == '"' {
				return data[start:i], i + 1, nil
			}
			break
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		i += size
	}
	return d.unquote(start, i)
}

// unquote is the slow path of str from data[i] on, which holds an escape,
// invalid UTF-8, a control character or the end of input.
func (d *decoder) unquote(start, i int) ([]byte, int, error) {
	data := d.data
	b := append(d.buf[:0], data[start:i]...)
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			d.buf = b
			return b, i + 1, nil
		case c == '\\':
			if i+1 >= len(data) {
				return nil, i + 1, d.unexpected(i+1, "")
			}
			switch e := data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := d.hex4(i + 2)
				if err != nil {
					return nil, i, err
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r1, ok := d.escapedRune(i); ok {
						if p := utf16.DecodeRune(r, r1); p != utf8.RuneError {
							b = utf8.AppendRune(b, p)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				return nil, i + 1, d.unexpected(i+1, "in string escape code")
			}
			i += 2
		case c < ' ':
			return nil, i, d.unexpected(i, "in string literal")
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, r)
			} else {
				b = append(b, data[i:i+size]...)
			}
			i += size
		}
	}
	return nil, i, d.unexpected(i, "")
}

// hex4 decodes the four hex digits of a \u escape at data[i].
func (d *decoder) hex4(i int) (rune, error) {
	var r rune
	for j := i; j < i+4; j++ {
		if j >= len(d.data) {
			return 0, d.unexpected(j, "")
		}
		h := unhex(d.data[j])
		if h < 0 {
			return 0, d.unexpected(j, `in \u hexadecimal character escape`)
		}
		r = r<<4 | h
	}
	return r, nil
}

// escapedRune decodes a well-formed \uXXXX escape at data[i], if there is one.
func (d *decoder) escapedRune(i int) (rune, bool) {
	if i+6 > len(d.data) || d.data[i] != '\\' || d.data[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range d.data[i+2 : i+6] {
		h := unhex(c)
		if h < 0 {
			return 0, false
		}
		r = r<<4 | h
	}
	return r, true
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// number decodes the number starting at data[i]; see Decode for the types.
func (d *decoder) number(i int) (any, int, error) {
	n, j, context := scanNumber(d.data, i)
	if context != "" {
		return nil, j, d.unexpected(j, context)
	}
	return n.value(d.data[i:j]), j, nil
}

// scannedNumber is a number literal taken apart by scanNumber.
type scannedNumber struct {
	mant  uint64 // the significant digits, unless trunc
	exp   int    // the literal is ±mant × 10^exp, unless trunc
	trunc bool   // more than 19 significant digits
	isInt bool   // no fraction or exponent
}

// scanNumber scans the number at data[i] and returns the index after it, or
// the index of the offending byte and what was expected there.
func scanNumber(data []byte, i int) (n scannedNumber, end int, context string) {
	nd := 0 // digits in mant
	n.isInt = true
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return n, i, "in numeric literal"
	case data[i] == '0':
		i++
	case data[i]-'1' < 9:
		for ; i < len(data) && data[i]-'0' < 10; i++ {
			if nd < 19 {
				n.mant = n.mant*10 + uint64(data[i]-'0')
				nd++
			} else {
				n.trunc = true
			}
		}
	default:
		return n, i, "in numeric literal"
	}
	if i < len(data) && data[i] == '.' {
		n.isInt = false
		if i++; i >= len(data) || data[i]-'0' >= 10 {
			return n, i, "after decimal point in numeric literal"
		}
		for ; i < len(data) && data[i]-'0' < 10; i++ {
			switch {
			case n.mant == 0 && data[i] == '0': // leading zero
				n.exp--
			case nd < 19:
				n.mant = n.mant*10 + uint64(data[i]-'0')
				nd++
				n.exp--
			default:
				n.trunc = true
			}
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		n.isInt = false
		neg := false
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			neg = data[i] == '-'
			i++
		}
		if i >= len(data) || data[i]-'0' >= 10 {
			return n, i, "in exponent of numeric literal"
		}
		e := 0
		for ; i < len(data) && data[i]-'0' < 10; i++ {
			if e < 1<<30 {
				e = e*10 + int(data[i]-'0')
			}
		}
		if neg {
			e = -e
		}
		n.exp += e
	}
	return n, i, ""
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// value returns the Go value of n, whose text is lit.
func (n scannedNumber) value(lit []byte) any {
	neg, mant, exp := lit[0] == '-', n.mant, n.exp
	switch {
	case n.isInt:
		v := int64(mant)
		if neg {
			v = int64(-mant)
		}
		if !n.trunc && (mant <= math.MaxInt64 || neg && mant == 1<<63) && int64(int(v)) == v {
			return int(v)
		}
		// An integer too big for int (an id, an account number) keeps its
		// digits: as float64 it would be written back as 1e+21.
		return json.Number(lit)
	case n.trunc:
	case mant == 0:
		if neg {
			return math.Copysign(0, -1)
		}
		return 0.0
	default:
		for mant >= 1e15 && mant%10 == 0 {
			mant /= 10
			exp++
		}
		// Exact operands and one correctly rounded operation give the
		// nearest float, and with at most 15 digits its shortest form is
		// the literal.
		if mant < 1e15 && -len(pow10) < exp && exp < len(pow10) {
			f := float64(mant)
			if exp < 0 {
				f /= pow10[-exp]
			} else {
				f *= pow10[exp]
			}
			if neg {
				f = -f
			}
			return f
		}
	}
	if f, err := strconv.ParseFloat(string(lit), 64); err == nil && sameValue(lit, f) {
		return f
	}
	return json.Number(lit)
}

// sameValue reports whether the shortest decimal form of f has the same value
// as the JSON number lit.
func sameValue(lit []byte, f float64) bool {
	var fb, lb [24]byte
	fd, fe, _ := digits(strconv.AppendFloat(fb[:0], f, 'e', -1, 64), &fb)
	ld, le, ok := digits(lit, &lb)
	return ok && bytes.Equal(fd, ld) && (len(ld) == 0 || fe == le)
}

// digits returns the significant digits of the number n without leading or
// trailing zeros, stored in buf, and e with n = ±0.digits × 10^e. ok is false
// if there are more than 17 digits, too many for a float64's shortest form.
func digits(n []byte, buf *[24]byte) (ds []byte, e int, ok bool) {
	var stored, last int
	frac := false
	for i, c := range n {
		switch {
		case c == '-':
			continue
		case c == '.':
			frac = true
			continue
		case c == 'e' || c == 'E':
			x, err := strconv.Atoi(string(n[i+1:]))
			if err != nil {
				return nil, 0, false // exponent beyond int: not a float64
			}
			return buf[:last], e + x, true
		case stored == 0 && c == '0':
			if frac {
				e--
			}
			continue
		}
		if !frac {
			e++
		}
		if stored < len(buf) {
			buf[stored] = c
		}
		if stored++; c != '0' {
			if last = stored; last > 17 {
				return nil, 0, false
			}
		}
	}
	return buf[:last], e, true
}

// errorAt returns a SyntaxError for data[off].
func (d *decoder) errorAt(off int, msg string) error {
	before := d.data[:off]
	line := 1 + bytes.Count(before, []byte{'\n'})
	col := off - bytes.LastIndexByte(before, '\n')
	return &SyntaxError{Offset: int64(off), Line: line, Column: col, Msg: msg}
}

// unexpected returns the error for the byte at data[off], which does not fit
// context, or for the end of input.
func (d *decoder) unexpected(off int, context string) error {
	if off >= len(d.data) {
		return d.errorAt(len(d.data), "unexpected end of JSON input")
	}
	if context == "" {
		context = "looking for beginning of value"
	}
	return d.errorAt(off, "invalid character "+quoteChar(string(d.data[off:min(off+utf8.UTFMax, len(d.data))]))+" "+context)
}

// quoteChar quotes the character at the start of s for an error message.
func quoteChar(s string) string {
	if r, size := utf8.DecodeRuneInString(s); r != utf8.RuneError || size != 1 {
		return strconv.QuoteRune(r)
	}
	return fmt.Sprintf(`'\x%02x'`, s[0])
}
