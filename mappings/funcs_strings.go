package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// maxPad bounds the width pad_left and pad_right build, so that a typo
// cannot allocate gigabytes.
const maxPad = 10000

func init() {
	for _, f := range []Function{
		{Name: "to_str", Signature: "to_str(x) string", Fn: toStr,
			Description: "Formats any value as text: numbers without exponent, null as empty text, lists and objects as JSON.",
			Example:     `to_str(1234567.5) == "1234567.5"`},
		{Name: "pad_left", Signature: "pad_left(s, n[, ch]) string", Fn: pad(true),
			Description: "Pads s on the left with ch (default a space) to n characters; longer text is left as is.",
			Example:     `pad_left(42, 6, "0") == "000042"`},
		{Name: "pad_right", Signature: "pad_right(s, n[, ch]) string", Fn: pad(false),
			Description: "Pads s on the right with ch (default a space) to n characters; longer text is left as is.",
			Example:     `pad_right("AB", 4, ".") == "AB.."`},
		{Name: "substr", Signature: "substr(s, start[, length]) string", Fn: substr,
			Description: "Returns length characters of s from position start (0 is the first); positions past the end give less or empty text.",
			Example:     `substr("Conveyor", 0, 3) == "Con"`},
		{Name: "truncate", Signature: "truncate(s, n) string", Fn: truncate,
			Description: "Cuts s to at most n characters.",
			Example:     `truncate("Zürich Hauptbahnhof", 6) == "Zürich"`},
		{Name: "coalesce", Signature: "coalesce(a, ...) any", Fn: coalesce,
			Description: "Returns the first argument that is neither null nor empty text, or null.",
			Example:     `coalesce(nil, "", "fallback") == "fallback"`},
		{Name: "normalize_space", Signature: "normalize_space(s) string", Fn: textFunc(func(s string) string { return strings.Join(strings.Fields(s), " ") }),
			Description: "Trims s and replaces every run of spaces, tabs and line breaks with one space.",
			Example:     `normalize_space("  12  Main\n St ") == "12 Main St"`},
		{Name: "slug", Signature: "slug(s) string", Fn: textFunc(slug),
			Description: "Turns s into lower-case words joined by hyphens, with accents removed, for URLs and file names.",
			Example:     `slug("Crème Brûlée: 2 pcs!") == "creme-brulee-2-pcs"`},
		{Name: "digits", Signature: "digits(s) string", Fn: textFunc(digits),
			Description: "Keeps only the digits 0-9 of s.",
			Example:     `digits("+41 (0)44 123-45-67") == "410441234567"`},
		{Name: "title", Signature: "title(s) string", Fn: textFunc(title),
			Description: "Capitalises the first letter of every word of s and lower-cases the rest.",
			Example:     `title("JOHN o'neil-SMITH") == "John O'neil-Smith"`},
		{Name: "contains_any", Signature: "contains_any(s, list) bool", Fn: containsAny,
			Description: "Reports whether s contains any of the texts in list.",
			Example:     `contains_any("Express delivery", ["express", "Express"])`},
		{Name: "split_lines", Signature: "split_lines(s) []string", Fn: splitLines,
			Description: "Splits s into lines at \\n, \\r\\n or \\r; a final line break does not add an empty line.",
			Example:     `split_lines("a\r\nb\n") == ["a", "b"]`},
	} {
		registerLib(f)
	}
}

// registerLib registers f with the argument checks libFunction adds.
func registerLib(f Function) { registerFunc(libFunction(f)) }

var signatureRE = regexp.MustCompile(`^([a-z][a-z0-9_]*)\(([^()]*)\) (\S+)$`)

var returnTypes = map[string]reflect.Type{
	"any":       reflect.TypeFor[any](),
	"bool":      reflect.TypeFor[bool](),
	"int":       reflect.TypeFor[int](),
	"string":    reflect.TypeFor[string](),
	"[]string":  reflect.TypeFor[[]string](),
	"time.Time": reflect.TypeFor[time.Time](),
}

// libFunction completes f from its signature, so that nothing is written
// down twice: the argument counts are checked at compile time through expr
// types (every parameter is any, as payload values are) and again at run
// time, and errors are prefixed with the function name. It panics on a
// malformed signature.
func libFunction(f Function) Function {
	lo, hi, out := parseSignature(f.Name, f.Signature)
	anyT := reflect.TypeFor[any]()
	in := make([]reflect.Type, lo, lo+3)
	for i := range in {
		in[i] = anyT
	}
	f.Types = nil
	if hi < 0 {
		ft := reflect.FuncOf(append(in, reflect.TypeFor[[]any]()), []reflect.Type{out}, true)
		f.Types = append(f.Types, reflect.New(ft).Interface())
	}
	for n := lo; n <= hi; n++ {
		f.Types = append(f.Types, reflect.New(reflect.FuncOf(in, []reflect.Type{out}, false)).Interface())
		in = append(in, anyT)
	}
	impl, name := f.Fn, f.Name
	f.Fn = func(args ...any) (any, error) {
		if len(args) < lo || (hi >= 0 && len(args) > hi) {
			return nil, fmt.Errorf("%s: %s, got %d", name, arity(lo, hi), len(args))
		}
		v, err := impl(args...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return v, nil
	}
	return f
}

// parseSignature reads the argument counts and the result type from a
// signature such as "format_number(x, places[, dec_sep[, thousands_sep]]) string"
// or "dec_add(a, b, ...) string"; hi is -1 for a trailing "...".
func parseSignature(name, sig string) (lo, hi int, out reflect.Type) {
	m := signatureRE.FindStringSubmatch(sig)
	if m == nil || m[1] != name || returnTypes[m[3]] == nil {
		panic(fmt.Sprintf("mappings: function %q has malformed signature %q", name, sig))
	}
	required, optional, _ := strings.Cut(m[2], "[")
	for p := range strings.SplitSeq(required, ",") {
		if p = strings.TrimSpace(p); p != "" && p != "..." {
			lo++
		}
	}
	hi = lo + strings.Count(m[2], "[")
	if strings.HasSuffix(strings.TrimSpace(required), "...") {
		if optional != "" {
			panic(fmt.Sprintf("mappings: function %q has malformed signature %q", name, sig))
		}
		hi = -1
	}
	return lo, hi, returnTypes[m[3]]
}

func arity(lo, hi int) string {
	plural := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return strconv.Itoa(n) + " arguments"
	}
	switch {
	case hi < 0:
		return "needs at least " + plural(lo)
	case lo == hi:
		return "needs " + plural(lo)
	case hi == lo+1:
		return fmt.Sprintf("needs %d or %s", lo, plural(hi))
	}
	return fmt.Sprintf("needs %d to %s", lo, plural(hi))
}

// stringOf is the text form of a payload value used by to_str and
// wherever a function wants text: numbers are never in exponent notation,
// nil is "", lists and objects are compact JSON.
func stringOf(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32)
	case json.Number:
		return string(v)
	case bool:
		return strconv.FormatBool(v)
	case []byte:
		return string(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case decimal.Decimal:
		return decString(v)
	case fmt.Stringer:
		return v.String()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.String:
		return rv.String()
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// describe names a value in an error message the way an analyst sees it in
// a payload: text quoted and shortened, null, a list, an object.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(v) > 40 {
			v = string([]rune(v)[:40]) + "…"
		}
		return strconv.Quote(v)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return stringOf(v)
}

// intArg reads a whole number argument: an int of any size, a float or
// json.Number without fraction, or text holding a whole number.
func intArg(name string, v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= 1<<53 {
			return int(n), nil
		}
	case json.Number:
		if i, err := strconv.Atoi(string(n)); err == nil {
			return i, nil
		}
	case string:
		if i, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
			return i, nil
		}
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return int(rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if rv.Uint() <= math.MaxInt {
				return int(rv.Uint()), nil
			}
		}
	}
	return 0, fmt.Errorf("%s: %s is not a whole number", name, describe(v))
}

// countArg is intArg for a count that must be between 0 and limit.
func countArg(name string, v any, limit int) (int, error) {
	n, err := intArg(name, v)
	switch {
	case err != nil:
	case n < 0:
		err = fmt.Errorf("%s must not be negative, got %d", name, n)
	case n > limit:
		err = fmt.Errorf("%s must be at most %d, got %d", name, limit, n)
	}
	return n, err
}

func textFunc(f func(string) string) func(args ...any) (any, error) {
	return func(args ...any) (any, error) { return f(stringOf(args[0])), nil }
}

func toStr(args ...any) (any, error) { return stringOf(args[0]), nil }

func pad(left bool) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		s := stringOf(args[0])
		n, err := countArg("n", args[1], maxPad)
		if err != nil {
			return nil, err
		}
		ch := " "
		if len(args) > 2 {
			if ch = stringOf(args[2]); utf8.RuneCountInString(ch) != 1 {
				return nil, fmt.Errorf("ch must be one character, got %s", describe(args[2]))
			}
		}
		missing := n - utf8.RuneCountInString(s)
		if missing <= 0 {
			return s, nil
		}
		if left {
			return strings.Repeat(ch, missing) + s, nil
		}
		return s + strings.Repeat(ch, missing), nil
	}
}

func substr(args ...any) (any, error) {
	r := []rune(stringOf(args[0]))
	start, err := countArg("start", args[1], math.MaxInt)
	if err != nil {
		return nil, err
	}
	start = min(start, len(r))
	end := len(r)
	if len(args) > 2 {
		n, err := countArg("length", args[2], math.MaxInt)
		if err != nil {
			return nil, err
		}
		end = start + min(n, end-start)
	}
	return string(r[start:end]), nil
}

func truncate(args ...any) (any, error) {
	s := stringOf(args[0])
	n, err := countArg("n", args[1], math.MaxInt)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(s) <= n {
		return s, nil
	}
	return string([]rune(s)[:n]), nil
}

func coalesce(args ...any) (any, error) {
	for _, v := range args {
		if v != nil && v != "" {
			return v, nil
		}
	}
	return nil, nil
}

// foldAccents maps common accented Latin letters to ASCII for slug.
var foldAccents = strings.NewReplacer(
	"à", "a", "á", "a", "â", "a", "ã", "a", "ä", "a", "å", "a", "ā", "a", "ą", "a", "æ", "ae",
	"ç", "c", "ć", "c", "č", "c", "ď", "d", "đ", "d", "ð", "d",
	"è", "e", "é", "e", "ê", "e", "ë", "e", "ē", "e", "ę", "e", "ě", "e",
	"ğ", "g", "ì", "i", "í", "i", "î", "i", "ï", "i", "ī", "i", "ı", "i",
	"ł", "l", "ľ", "l", "ñ", "n", "ń", "n", "ň", "n",
	"ò", "o", "ó", "o", "ô", "o", "õ", "o", "ö", "o", "ø", "o", "ō", "o", "ő", "o", "œ", "oe",
	"ŕ", "r", "ř", "r", "ś", "s", "š", "s", "ş", "s", "ß", "ss", "ť", "t", "ţ", "t", "þ", "th",
	"ù", "u", "ú", "u", "û", "u", "ü", "u", "ū", "u", "ů", "u", "ű", "u",
	"ý", "y", "ÿ", "y", "ź", "z", "ż", "z", "ž", "z",
)

func slug(s string) string {
	var b strings.Builder
	sep := false
	for _, r := range foldAccents.Replace(strings.ToLower(s)) {
		if unicode.Is(unicode.Mn, r) {
			continue // an accent written apart from its letter (NFD): "e\u0301" is "é"
		}
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			sep = b.Len() > 0
			continue
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

func title(s string) string {
	inWord := false
	return strings.Map(func(r rune) rune {
		start := !inWord
		inWord = unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' || r == '’'
		if start {
			return unicode.ToTitle(r)
		}
		return unicode.ToLower(r)
	}, s)
}

func containsAny(args ...any) (any, error) {
	s := stringOf(args[0])
	list, ok := jsonv.AsList(args[1])
	if !ok {
		return nil, fmt.Errorf("list: %s is not a list", describe(args[1]))
	}
	for _, v := range list {
		if sub := stringOf(v); sub != "" && strings.Contains(s, sub) {
			return true, nil
		}
	}
	return false, nil
}

func splitLines(args ...any) (any, error) {
	s := strings.ReplaceAll(stringOf(args[0]), "\r\n", "\n")
	s = strings.TrimSuffix(strings.ReplaceAll(s, "\r", "\n"), "\n")
	if s == "" {
		return []string{}, nil
	}
	return strings.Split(s, "\n"), nil
}
