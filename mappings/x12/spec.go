package x12

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// Kinds of friendly fields.
const (
	kText = iota // text as is
	kNum         // a quantity or count: int, float64, or text when a float would not be exact
	kN2          // an amount with two implied decimals (X12 type N2), shown as decimal text: "2985" is "29.85"
)

// field maps element pos of a segment to a key of the friendly form.
type field struct {
	pos      int
	key      string
	kind     int
	required bool
	def      string // written when the segment is written without it; "$date" and "$time" are the build time
}

// spec is the friendly form of one segment: named elements, then optional
// qualifier/value pairs (PO106/PO107 "VP"/"W-1" becomes vendor_part: "W-1").
type spec struct {
	id     string
	fields []field
	pairs  *pairs
}

type pairs struct {
	from, max int
	names     [][2]string // qualifier and key, in writing order
	prefix    string      // key prefix for other qualifiers: "id_" + "ZZ"
}

// sp builds a spec from a layout of one word per element: "key", "key:n"
// (number), "key:2" (implied decimals), "key!" (required), "key=default",
// or "-" for an element the friendly form skips.
func sp(id, layout string, p ...*pairs) *spec {
	s := &spec{id: id}
	for i, w := range strings.Fields(layout) {
		if w == "-" {
			continue
		}
		f := field{pos: i + 1}
		w, f.def, _ = strings.Cut(w, "=")
		w, f.required = strings.CutSuffix(w, "!")
		w, kind, _ := strings.Cut(w, ":")
		f.key = w
		switch kind {
		case "n":
			f.kind = kNum
		case "2":
			f.kind = kN2
		}
		s.fields = append(s.fields, f)
	}
	if len(p) > 0 {
		s.pairs = p[0]
	}
	return s
}

func (p *pairs) key(q string) string {
	for _, n := range p.names {
		if n[0] == q {
			return n[1]
		}
	}
	return p.prefix + q
}

// read adds the non-empty elements of seg to m.
func (s *spec) read(seg *Segment, m map[string]any) {
	for _, f := range s.fields {
		if v := seg.Element(f.pos); v != "" {
			m[f.key] = fromX12(v, f.kind)
		}
	}
	if p := s.pairs; p != nil {
		for pos := p.from; pos < p.from+2*p.max; pos += 2 {
			if q, v := seg.Element(pos), seg.Element(pos+1); q != "" && v != "" {
				if k := p.key(q); m[k] == nil {
					m[k] = v
				}
			}
		}
	}
}

// obj returns the friendly object of seg, nil for no segment.
func (s *spec) obj(seg *Segment) map[string]any {
	if seg == nil {
		return nil
	}
	m := map[string]any{}
	s.read(seg, m)
	return m
}

// write writes the segment from the keys of o; nothing when o has none of
// them, unless always.
func (s *spec) write(w *writer, o *obj, always bool) error {
	els := make([]string, 0, 8)
	present := always
	vals := make([]string, len(s.fields))
	for i, f := range s.fields {
		v, err := o.text(f.key, f.kind)
		if err != nil {
			return err
		}
		vals[i] = v
		present = present || v != ""
	}
	var ids [][2]string
	if p := s.pairs; p != nil {
		for _, n := range p.names {
			v, err := o.text(n[1], kText)
			if err != nil {
				return err
			}
			if v != "" {
				ids = append(ids, [2]string{n[0], v})
			}
		}
		for _, k := range o.keysWithPrefix(p.prefix) {
			v, err := o.text(k, kText)
			if err != nil {
				return err
			}
			if v != "" {
				ids = append(ids, [2]string{strings.TrimPrefix(k, p.prefix), v})
			}
		}
		if len(ids) > p.max {
			return fmt.Errorf("%s: %d product or contact ids, %s takes at most %d", o.path, len(ids), s.id, p.max)
		}
		present = present || len(ids) > 0
	}
	if !present {
		return nil
	}
	for i, f := range s.fields {
		v := vals[i]
		if v == "" {
			v = w.defaultValue(f.def)
		}
		if v == "" && f.required {
			return fmt.Errorf("%s: %s is required (%s%02d)", o.path, f.key, s.id, f.pos)
		}
		for len(els) < f.pos {
			els = append(els, "")
		}
		els[f.pos-1] = v
	}
	if p := s.pairs; p != nil && len(ids) > 0 {
		for len(els) < p.from-1 {
			els = append(els, "")
		}
		els = els[:p.from-1]
		for _, id := range ids {
			els = append(els, id[0], id[1])
		}
	}
	return w.seg(o.path, s.id, els)
}

// fromX12 converts an element to its friendly value.
func fromX12(v string, kind int) any {
	switch kind {
	case kNum:
		return number(v)
	case kN2:
		return fromN2(v)
	}
	return v
}

// number reads a quantity: int when whole, float64 when the float is the
// exact decimal, else the text itself.
func number(s string) any {
	if !isDecimal(s) {
		return s
	}
	if i, err := strconv.Atoi(s); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(s, 64)
	exact, ok := new(big.Rat).SetString(s)
	if err != nil || !ok || math.IsInf(f, 0) {
		return s
	}
	if back, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64)); back != nil && back.Cmp(exact) == 0 {
		return f
	}
	return s
}

// isDecimal reports whether s is an X12 decimal: optional minus, digits,
// optional point and digits, at least one digit.
func isDecimal(s string) bool {
	i, f, dot := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if !dot {
		return isDigits(i)
	}
	return (i == "" || isDigits(i)) && (f == "" || isDigits(f)) && i+f != ""
}

// fromN2 shows an implied-decimal amount as decimal text.
func fromN2(s string) any {
	d := strings.TrimPrefix(s, "-")
	if !isDigits(d) {
		return s
	}
	for len(d) < 3 {
		d = "0" + d
	}
	out := strings.TrimLeft(d[:len(d)-2], "0")
	if out == "" {
		out = "0"
	}
	out += "." + d[len(d)-2:]
	if s[0] == '-' && strings.Trim(d, "0") != "" {
		out = "-" + out
	}
	return out
}

// toN2 writes decimal text with two implied decimals.
func toN2(s string) (string, error) {
	if !isDecimal(s) {
		return "", fmt.Errorf("%q is not a decimal number", s)
	}
	neg := strings.HasPrefix(s, "-")
	i, f, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if len(f) > 2 {
		if strings.Trim(f[2:], "0") != "" {
			return "", fmt.Errorf("%q has more than 2 decimals", s)
		}
		f = f[:2]
	}
	for len(f) < 2 {
		f += "0"
	}
	d := strings.TrimLeft(i+f, "0")
	if d == "" {
		return "0", nil
	}
	if neg {
		d = "-" + d
	}
	return d, nil
}

// obj is a friendly object being written: it remembers which keys were
// read so that a misspelt key is reported instead of dropped.
type obj struct {
	m    map[string]any
	used map[string]bool
	path string
}

func newObj(path string, v any) (*obj, error) {
	m, ok := asMap(v)
	if !ok && v != nil {
		return nil, fmt.Errorf("%s: must be an object, got %s", path, describe(v))
	}
	return &obj{m: m, used: map[string]bool{}, path: path}, nil
}

func (o *obj) has(k string) bool {
	v := o.m[k]
	return v != nil && v != ""
}

func (o *obj) val(k string) any {
	o.used[k] = true
	return o.m[k]
}

// text reads key k as element text of the given kind.
func (o *obj) text(k string, kind int) (string, error) {
	v := o.val(k)
	s, ok := toText(v)
	if !ok {
		return "", fmt.Errorf("%s: %s must be text or a number, got %s", o.path, k, describe(v))
	}
	if kind == kN2 && s != "" {
		n2, err := toN2(s)
		if err != nil {
			return "", fmt.Errorf("%s: %s: %v", o.path, k, err)
		}
		return n2, nil
	}
	return s, nil
}

func (o *obj) sub(k string) (*obj, error) {
	return newObj(join(o.path, k), o.val(k))
}

func (o *obj) list(k string) ([]*obj, error) {
	v := o.val(k)
	l, ok := jsonv.AsList(v)
	if !ok && v != nil {
		return nil, fmt.Errorf("%s: must be a list, got %s", join(o.path, k), describe(v))
	}
	out := make([]*obj, len(l))
	for i, x := range l {
		var err error
		if out[i], err = newObj(fmt.Sprintf("%s[%d]", join(o.path, k), i), x); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// keysWithPrefix returns the keys of o starting with prefix, sorted.
func (o *obj) keysWithPrefix(prefix string) []string {
	var ks []string
	for k := range o.m {
		if strings.HasPrefix(k, prefix) && len(k) > len(prefix) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

// check reports the keys nothing read.
func (o *obj) check() error {
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	what := "field"
	if len(unknown) > 1 {
		what = "fields"
	}
	return fmt.Errorf("%s: unknown %s %s", orTop(o.path), what, strings.Join(unknown, ", "))
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orTop(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// toText is the element text of a payload value.
func toText(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case int:
		return strconv.Itoa(v), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", false
		}
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10), true
	case reflect.Float32:
		return strconv.FormatFloat(rv.Float(), 'f', -1, 32), true
	case reflect.String:
		return rv.String(), true
	}
	return "", false
}

func asMap(v any) (map[string]any, bool) {
	if m, ok := v.(map[string]any); ok {
		return m, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return nil, false
	}
	m := make(map[string]any, rv.Len())
	for it := rv.MapRange(); it.Next(); {
		m[it.Key().String()] = it.Value().Interface()
	}
	return m, true
}

// describe names a value in an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return fmt.Sprint(v)
}
