package dsl

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Style is how a scalar was written, which decides how positions inside
// it map back to the file.
type Style int

// The scalar styles.
const (
	Plain Style = iota
	SingleQuoted
	DoubleQuoted
	Literal // | block
	Folded  // > block
)

// Expr is an expression as written: its source and where that source
// starts in the file.
type Expr struct {
	Src    string
	At     Pos // first character of Src
	Style  Style
	Indent int // block scalars: the column content lines start at
	// pos is the file position of every rune of Src, when Src is not a
	// plain copy of one line of the file (escapes, folded lines, blocks).
	pos []Pos
}

// sub is the expression src that starts at byte off of e.Src, placed in
// the file as e's runes are: a column counts characters, not bytes, and
// escapes (a doubled single quote) and folded lines move what follows.
func (e Expr) sub(off int, src string) Expr {
	r, n := utf8.RuneCountInString(e.Src[:off]), utf8.RuneCountInString(src)
	if e.pos != nil && r < len(e.pos) {
		return Expr{Src: src, At: e.pos[r], pos: e.pos[r:min(r+n, len(e.pos))]}
	}
	return Expr{Src: src, At: Pos{e.At.Line, e.At.Col + r}}
}

// IsSet reports whether the expression was written.
func (e *Expr) IsSet() bool { return e != nil && e.At.Line > 0 }

// PosOf maps a position inside Src (1-based line, 0-based column in runes,
// as expr reports them) to the file.
func (e Expr) PosOf(line, col int) Pos {
	if line < 1 {
		line = 1
	}
	if e.pos != nil {
		l, off := 1, 0
		for _, r := range e.Src {
			if l == line {
				break
			}
			if r == '\n' {
				l++
			}
			off++
		}
		if i := off + max(col, 0); i < len(e.pos) {
			return e.pos[i]
		}
		if len(e.pos) > 0 {
			return e.pos[len(e.pos)-1]
		}
	}
	switch e.Style {
	case Literal, Folded:
		return Pos{e.At.Line + line - 1, e.Indent + col}
	default:
		return Pos{e.At.Line + line - 1, e.At.Col + col}
	}
}

func (e *Expr) decodeYAML(d *decoder, n ast.Node) {
	*e = exprOf(d, n)
}

func exprOf(d *decoder, n ast.Node) Expr {
	e := exprOf1(d, n)
	e.pos = d.align(e)
	return e
}

// align finds the file position of every rune of e.Src by walking the
// file from where the scalar starts: unescaping \x and doubled single quotes as YAML does,
// and skipping the line breaks and indentation folding removed. It returns
// nil when Src is a plain copy of one line of the file.
func (d *decoder) align(e Expr) []Pos {
	if e.At.Line < 1 || e.At.Line > len(d.lines) {
		return nil
	}
	line, col := e.At.Line-1, e.At.Col-1
	if e.Style == Literal || e.Style == Folded {
		col = 0
	}
	src := []rune(e.Src)
	out := make([]Pos, 0, len(src)+1)
	simple := e.Style != Literal && e.Style != Folded
	at := func() rune { // the rune at line:col, '\n' at a line's end, 0 at the file's
		switch {
		case line >= len(d.lines):
			return 0
		case col < len(d.lines[line]):
			return d.lines[line][col]
		case line+1 < len(d.lines):
			return '\n'
		}
		return 0
	}
	next := func(n int) {
		for ; n > 0; n-- {
			if at() == '\n' {
				line, col = line+1, 0
			} else {
				col++
			}
		}
	}
	for _, r := range src {
		for {
			c := at()
			if c == 0 {
				return nil
			}
			if e.Style == DoubleQuoted && c == '\\' {
				p := Pos{line + 1, col + 1}
				next(1)
				if at() == '\n' { // an escaped line break produces nothing
					next(1)
					simple = false
					continue
				}
				esc := map[rune]int{'x': 3, 'u': 5, 'U': 9}[at()]
				next(max(esc, 1))
				out = append(out, p)
				simple = false
				break
			}
			if e.Style == SingleQuoted && c == '\'' {
				out = append(out, Pos{line + 1, col + 1})
				next(2)
				simple = false
				break
			}
			if c == r || (c == '\n' && (r == ' ' || r == '\n')) {
				if c == '\n' {
					simple = false
				}
				out = append(out, Pos{line + 1, col + 1})
				next(1)
				break
			}
			if c != ' ' && c != '\t' && c != '\n' {
				return nil // not where Src came from
			}
			if c == '\n' {
				simple = false
			}
			next(1)
		}
	}
	out = append(out, Pos{line + 1, col + 1}) // the end, where EOF errors point
	if simple {
		return nil
	}
	return out
}

func exprOf1(d *decoder, n ast.Node) Expr {
	switch x := n.(type) {
	case *ast.StringNode:
		e := Expr{Src: x.Value, At: posOf(x)}
		switch x.Token.Type {
		case token.SingleQuoteType:
			e.Style, e.At.Col = SingleQuoted, e.At.Col+1
		case token.DoubleQuoteType:
			e.Style, e.At.Col = DoubleQuoted, e.At.Col+1
		}
		return e
	case *ast.LiteralNode:
		e := Expr{At: Pos{posOf(x).Line + 1, 1}, Style: Literal}
		if x.Start != nil && strings.HasPrefix(x.Start.Value, ">") {
			e.Style = Folded
		}
		if x.Value != nil {
			e.Src = strings.TrimRight(x.Value.Value, "\n")
			origin := x.Value.GetToken().Origin
			for _, line := range strings.Split(origin, "\n") {
				if strings.TrimSpace(line) != "" {
					e.Indent = len(line) - len(strings.TrimLeft(line, " ")) + 1
					break
				}
			}
			e.At.Col = max(e.Indent, 1) // an empty block has no indent
		}
		return e
	case *ast.NullNode: // ~, null, Null, NULL
		return Expr{Src: "nil", At: posOf(x)}
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		return Expr{Src: x.GetToken().Value, At: posOf(x)}
	case nil:
		return Expr{Src: "nil", At: Pos{1, 1}}
	}
	hint := "quote the expression"
	if _, ok := n.(*ast.MappingNode); ok {
		hint = "an expression is text; to build an object use a map step, or write the object in expr syntax inside quotes: '{a: 1}'"
	}
	d.errorAt(n, "expected an expression, got "+describe(n), hint)
	return Expr{}
}

// Template is text with {{ expression }} parts, such as a call path.
type Template struct {
	Raw   string
	Parts []TemplatePart
	At    Pos
}

// TemplatePart is a literal (Expr nil) or an expression.
type TemplatePart struct {
	Lit  string
	Expr *Expr
}

func (t *Template) decodeYAML(d *decoder, n ast.Node) {
	s, ok := scalar(n)
	if !ok {
		d.errorAt(n, "expected text, got "+describe(n), "")
		return
	}
	e := exprOf(d, n)
	t.Raw, t.At = s, e.At
	rest, off := s, 0
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.Parts = append(t.Parts, TemplatePart{Lit: rest})
			break
		}
		if i > 0 {
			t.Parts = append(t.Parts, TemplatePart{Lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			d.errorPos(e.sub(off+i, rest[i:]).At, "unclosed {{ in template", "close it with }}")
			return
		}
		src := rest[i+2 : i+j]
		lead := len(src) - len(strings.TrimLeft(src, " "))
		inner := e.sub(off+i+2+lead, strings.TrimSpace(src))
		if inner.Src == "" {
			d.errorPos(inner.At, "empty {{ }} in template", "")
		}
		t.Parts = append(t.Parts, TemplatePart{Expr: &inner})
		off += i + j + 2
		rest = rest[i+j+2:]
	}
}

// ExprEntry is one name -> expression pair, in file order.
type ExprEntry struct {
	Key   string
	KeyAt Pos
	Value Expr
}

// ExprMap is an ordered mapping of names to expressions (headers, query).
type ExprMap []ExprEntry

func (m *ExprMap) decodeYAML(d *decoder, n ast.Node) {
	if isNull(n) {
		return
	}
	es, ok := d.entries(n)
	if !ok {
		d.errorAt(n, "expected a mapping of names to expressions, got "+describe(n), "")
		return
	}
	for _, e := range es {
		d.push(e.key, false)
		*m = append(*m, ExprEntry{Key: e.key, KeyAt: posOf(e.keyN), Value: exprOf(d, d.resolve(e.value))})
		d.pop()
	}
}

// MapTree is the value of a map step or mapping file.
type MapTree struct {
	Node MapNode
	At   Pos
}

// MapNode builds one value: an expression, an object from fields (which
// may start from a reusable mapping named by use:), or a list of items.
type MapNode struct {
	Use    string
	UseAt  Pos
	Expr   *Expr
	Fields []MapField
	Items  []MapNode
	IsList bool
	At     Pos
}

// MapField is one key of an object under construction.
type MapField struct {
	Key   string
	KeyAt Pos
	Value MapNode
}

func (t *MapTree) decodeYAML(d *decoder, n ast.Node) {
	t.At = posOf(n)
	t.Node = d.mapNode(n)
}

func (d *decoder) mapFields(n ast.Node, es []entry) MapNode {
	node := MapNode{At: posOf(n), Fields: make([]MapField, 0, len(es))}
	for _, e := range es {
		if e.key == "use" {
			s, ok := scalar(d.resolve(e.value))
			if !ok || s == "" {
				d.errorAt(e.value, "use: expected a mapping name", "the name of a file in mappings/ without .yaml")
			}
			node.Use, node.UseAt = s, posOf(e.value)
			continue
		}
		d.push(fmt.Sprintf("field %q", e.key), true)
		node.Fields = append(node.Fields, MapField{Key: e.key, KeyAt: posOf(e.keyN), Value: d.mapNode(e.value)})
		d.pop()
	}
	return node
}

func (d *decoder) mapNode(n ast.Node) MapNode {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.errorAt(n, "nesting is too deep", "")
		return MapNode{}
	}
	n = d.resolve(n)
	if es, ok := d.entries(n); ok {
		return d.mapFields(n, es)
	}
	if seq, ok := n.(*ast.SequenceNode); ok {
		node := MapNode{At: posOf(n), IsList: true}
		for i, item := range seq.Values {
			d.push(fmt.Sprintf("[%d]", i+1), true)
			node.Items = append(node.Items, d.mapNode(item))
			d.pop()
		}
		return node
	}
	e := exprOf(d, n)
	return MapNode{Expr: &e, At: e.At}
}

// SetEntry assigns an expression to a path.
type SetEntry struct {
	Path  []string // first element is "body" or "vars"
	At    Pos
	Value Expr
}

// SetSpec is the value of a set step, in file order.
type SetSpec []SetEntry

var pathRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$`)

func (s *SetSpec) decodeYAML(d *decoder, n ast.Node) {
	es, ok := d.entries(n)
	if !ok {
		d.errorAt(n, "expected a mapping of paths to expressions, got "+describe(n), "e.g. set: {body.status: '\"paid\"', vars.total: 'sum(body.lines, .qty)'}")
		return
	}
	for _, e := range es {
		d.push(e.key, false)
		path := strings.Split(e.key, ".")
		switch {
		case !pathRE.MatchString(e.key):
			d.errorAt(e.keyN, fmt.Sprintf("%q is not a path", e.key), "write names joined by dots, such as body.customer.email")
		case path[0] != "body" && path[0] != "vars":
			path = append([]string{"body"}, path...)
		case len(path) == 1 && path[0] == "vars":
			d.errorAt(e.keyN, "vars needs a name", "write vars.<name>")
		}
		*s = append(*s, SetEntry{Path: path, At: posOf(e.keyN), Value: exprOf(d, d.resolve(e.value))})
		d.pop()
	}
}

// LogStep writes a log line: `log: expr` or `log: {message: expr, level: warn}`.
type LogStep struct {
	Message Expr   `yaml:"message" required:"true" desc:"Expression giving the text"`
	Level   string `yaml:"level" enum:"debug,info,warn,error" default:"info" desc:"Log level"`
	At      Pos    `yaml:"-"`
}

func (l *LogStep) decodeYAML(d *decoder, n ast.Node) {
	if _, ok := d.entries(n); ok {
		type plain LogStep // decode the struct form without recursing here
		var p plain
		d.decodeStruct(n, reflectValue(&p))
		*l = LogStep(p)
		return
	}
	l.Message, l.At = exprOf(d, n), posOf(n)
}

// Mock is one response or a list of successive responses of a connection.
type Mock []MockResponse

func (m *Mock) decodeYAML(d *decoder, n ast.Node) {
	if _, ok := n.(*ast.SequenceNode); ok {
		var rs []MockResponse
		d.decodeSlice(n, reflectValue(&rs))
		*m = rs
		return
	}
	var r MockResponse
	d.decodeStruct(n, reflectValue(&r))
	*m = Mock{r}
}

// Value is plain data from the file (test inputs and expectations),
// decoded as JSON-like values: map[string]any, []any, string, int,
// float64, bool, nil.
type Value struct {
	V   any
	At  Pos
	Set bool
}

func (v *Value) decodeYAML(d *decoder, n ast.Node) {
	v.V, v.At, v.Set = d.plain(n), posOf(n), true
}

var (
	leadingZero = regexp.MustCompile(`^[-+]?0[0-9]+$`)
	decimalInt  = regexp.MustCompile(`^[-+]?[0-9]+$`)
)

func (d *decoder) plain(n ast.Node) any {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.errorAt(n, "nesting is too deep", "")
		return nil
	}
	n = d.resolve(n)
	if es, ok := d.entries(n); ok {
		m := make(map[string]any, len(es))
		for _, e := range es {
			m[e.key] = d.plain(e.value)
		}
		return m
	}
	switch x := n.(type) {
	case *ast.SequenceNode:
		out := make([]any, len(x.Values))
		for i, item := range x.Values {
			out[i] = d.plain(item)
		}
		return out
	case *ast.IntegerNode:
		text := ""
		if tk := x.GetToken(); tk != nil {
			text = tk.Value
		}
		if leadingZero.MatchString(text) {
			// YAML 1.1 reads 01234 as octal 668. JSON has no such number:
			// it is a code (a zip, an article number) written unquoted.
			return text
		}
		switch i := x.Value.(type) {
		case int64:
			return int(i)
		case uint64:
			if i <= math.MaxInt64 {
				return int(i)
			}
			if decimalInt.MatchString(text) {
				return json.Number(text) // as jsonv keeps it: every digit
			}
			return float64(i)
		}
	case *ast.FloatNode:
		return x.Value
	case *ast.BoolNode:
		return x.Value
	case nil, *ast.NullNode:
		return nil
	case *ast.InfinityNode, *ast.NanNode:
		d.errorAt(n, "infinity and NaN are not JSON values", "")
		return nil
	}
	s, _ := scalar(n)
	return s
}

// ConfigString is configuration text that may reference the environment
// as ${env:NAME} or ${env:NAME:-default}, resolved at load.
type ConfigString struct {
	Raw string
	At  Pos
}

var envRefRE = regexp.MustCompile(`\$\{([^}]*)\}`)
var envNameRE = regexp.MustCompile(`^env:([A-Za-z_][A-Za-z0-9_]*)(:-(.*))?$`)

func (c *ConfigString) decodeYAML(d *decoder, n ast.Node) {
	s, ok := scalar(n)
	if !ok {
		d.errorAt(n, "expected text, got "+describe(n), "")
		return
	}
	c.Raw, c.At = s, posOf(n)
	if strings.Count(s, "${") != len(envRefRE.FindAllString(s, -1)) {
		d.errorAt(n, "unclosed ${ in "+strconv.Quote(s), "write ${env:NAME}")
		return
	}
	for _, m := range envRefRE.FindAllStringSubmatch(s, -1) {
		if !envNameRE.MatchString(m[1]) {
			d.errorAt(n, fmt.Sprintf("unsupported reference ${%s}", m[1]), "write ${env:NAME} or ${env:NAME:-default}")
		}
	}
}

// Resolve substitutes the environment references using lookup (os.LookupEnv
// when nil). An unset variable without a default is an error.
func (c ConfigString) Resolve(lookup func(string) (string, bool)) (string, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var missing []string
	out := envRefRE.ReplaceAllStringFunc(c.Raw, func(ref string) string {
		m := envNameRE.FindStringSubmatch(ref[2 : len(ref)-1])
		if m == nil {
			return ref
		}
		if v, ok := lookup(m[1]); ok {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		missing = append(missing, m[1])
		return ""
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

func (du *Duration) decodeYAML(d *decoder, n ast.Node) {
	s, ok := scalar(n)
	if !ok || s == "" {
		d.errorAt(n, "expected a duration such as 500ms, 30s, 5m, 72h or 3d, got "+describe(n), "")
		return
	}
	v, err := ParseDuration(s)
	if err != nil {
		d.errorAt(n, err.Error(), "use units ms, s, m, h or d, e.g. 30s")
		return
	}
	*du = Duration{D: v, At: posOf(n), Set: true}
}

// ParseDuration reads a duration such as 1s, 2m30s, 72h or 3d.
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		days, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err == nil && days >= 0 && days < 100000 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	if _, err := strconv.Atoi(s); err == nil {
		return 0, fmt.Errorf("duration %q has no unit", s)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return v, nil
}

var sizeRE = regexp.MustCompile(`^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$`)

func (b *ByteSize) decodeYAML(d *decoder, n ast.Node) {
	s, _ := scalar(n)
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		d.errorAt(n, fmt.Sprintf("%q is not a size", s), "write e.g. 512KiB, 1MiB or 1048576")
		return
	}
	v, _ := strconv.ParseInt(m[1], 10, 64)
	mult := map[string]int64{"": 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 1000 * 1000, "MiB": 1 << 20, "GB": 1000 * 1000 * 1000, "GiB": 1 << 30}[m[2]]
	*b = ByteSize{N: v * mult, At: posOf(n), Set: true}
}
