package dsl

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// union is implemented by structs of which exactly one kind-tagged field
// must be set (a step, a trigger, an auth method).
type union interface{ union() string }

// unmarshaler is implemented by types with their own YAML form.
type unmarshaler interface {
	decodeYAML(d *decoder, n ast.Node)
}

// decoder walks a goccy/go-yaml AST into the tagged types of this package,
// collecting every diagnostic instead of stopping at the first.
type decoder struct {
	file    string
	lines   [][]rune // the file, for mapping positions inside scalars
	diags   Diagnostics
	ctx     []segment
	anchors map[string]ast.Node
	depth   int

	// expanded counts the nodes reached through aliases, and sizes
	// remembers how many nodes each anchored value holds. An alias to a
	// list of aliases multiplies, so a few hundred bytes can stand for
	// millions of values; past maxExpanded the rest are not followed.
	expanded int
	sizes    map[ast.Node]int
}

type segment struct {
	text  string
	label bool // "step 2 (map)" rather than a key
}

const maxDepth = 200

// maxExpanded is how many nodes aliases may stand for in one file. A flow
// that repeats a block through anchors stays far below it; six levels of
// ten aliases each (a million values from 456 bytes) took 1.8 s and 661 MB.
const maxExpanded = 100_000

// tooDeep finds where flow collections ([ ] and { }) nest deeper than
// maxDepth, outside quoted scalars and comments. The YAML parser takes
// memory that grows with the square of the nesting (30 KB of "[" took
// 2 GB) and decode's own depth check comes after it, so a file or an API
// request that deep is refused before it is parsed.
func tooDeep(src []byte) (line, col int, deep bool) {
	depth, line, col := 0, 1, 0
	var quote byte
	comment := false
	prev := byte('\n')
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c&0xC0 != 0x80 { // not a UTF-8 continuation byte
			col++
		}
		switch {
		case c == '\n':
			line, col, comment = line+1, 0, false
		case comment:
		case quote != 0:
			switch {
			case quote == '"' && c == '\\':
				i++ // an escaped character
			case c == quote && quote == '\'' && i+1 < len(src) && src[i+1] == '\'':
				i++ // '' is a quote inside single quotes
			case c == quote:
				quote = 0
			}
		case c == '#' && (prev == ' ' || prev == '\t' || prev == '\n'):
			comment = true
		case (c == '"' || c == '\'') && strings.IndexByte(" \t\n[{,:-", prev) >= 0:
			quote = c // a quoted scalar starts (an apostrophe inside a plain one does not)
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return line, col, true
			}
		case (c == ']' || c == '}') && depth > 0:
			depth--
		}
		prev = c
	}
	return 0, 0, false
}

// decodeFile parses src and decodes its single document into out.
func decodeFile(file string, src []byte, out any) Diagnostics {
	d := &decoder{file: file, anchors: map[string]ast.Node{}}
	src = []byte(strings.TrimPrefix(string(src), "\ufeff")) // a byte order mark is not part of the first key
	for _, l := range strings.Split(string(src), "\n") {
		d.lines = append(d.lines, []rune(l))
	}
	if line, col, deep := tooDeep(src); deep {
		d.diags = append(d.diags, Diagnostic{File: file, Line: line, Col: col,
			Message: fmt.Sprintf("nested deeper than %d levels", maxDepth), Hint: "a flow is never this deep: check the brackets"})
		return d.diags
	}
	f, err := parser.ParseBytes(src, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		d.syntaxError(err)
		return d.diags
	}
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if _, directive := doc.Body.(*ast.DirectiveNode); !directive { // %YAML 1.2
			docs = append(docs, doc)
		}
	}
	switch {
	case len(docs) == 0:
		d.diags = append(d.diags, Diagnostic{File: file, Line: 1, Col: 1, Message: "file is empty"})
		return d.diags
	case len(docs) > 1:
		d.errorAt(docs[1].Body, "a file holds one document", "remove the second --- or split the file")
	}
	d.decode(docs[0].Body, reflect.ValueOf(out).Elem())
	d.diags.Sort()
	return d.diags
}

func (d *decoder) syntaxError(err error) {
	var se *yaml.SyntaxError
	diag := Diagnostic{File: d.file, Line: 1, Col: 1, Message: "yaml: " + err.Error()}
	if errors.As(err, &se) {
		diag.Message = "yaml: " + se.Message
		if se.Token != nil && se.Token.Position != nil {
			diag.Line, diag.Col = se.Token.Position.Line, max(se.Token.Position.Column, 1)
		}
	}
	if strings.Contains(diag.Message, "tab") || strings.Contains(diag.Message, "\t") {
		diag.Hint = "indent with spaces, not tabs"
	}
	d.diags = append(d.diags, diag)
}

// prefix renders the context as `step 2 (call): rate_limit.limit: `.
func (d *decoder) prefix() string {
	var b strings.Builder
	for i, s := range d.ctx {
		if i > 0 && !strings.HasPrefix(s.text, "[") {
			if s.label || d.ctx[i-1].label {
				b.WriteString(": ")
			} else {
				b.WriteString(".")
			}
		}
		b.WriteString(s.text)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	return b.String()
}

func (d *decoder) push(text string, label bool) { d.ctx = append(d.ctx, segment{text, label}) }
func (d *decoder) pop()                         { d.ctx = d.ctx[:len(d.ctx)-1] }

// errorAt records a diagnostic at n's position with the current context.
func (d *decoder) errorAt(n ast.Node, msg, hint string) {
	d.errorPos(posOf(n), msg, hint)
}

func (d *decoder) errorPos(p Pos, msg, hint string) {
	d.diags = append(d.diags, Diagnostic{File: d.file, Line: p.Line, Col: p.Col, Message: d.prefix() + msg, Hint: hint})
}

// posOf is where a node starts in the file.
func posOf(n ast.Node) Pos {
	switch x := n.(type) {
	case nil:
		return Pos{1, 1}
	case *ast.MappingNode:
		if !x.IsFlowStyle && len(x.Values) > 0 {
			return posOf(x.Values[0].Key)
		}
		if x.Start != nil {
			return tokPos(x.Start.Position)
		}
	case *ast.MappingValueNode:
		return posOf(x.Key)
	case *ast.SequenceNode:
		if x.Start != nil {
			return tokPos(x.Start.Position)
		}
	case *ast.LiteralNode:
		return tokPos(x.Start.Position)
	case *ast.AnchorNode:
		return tokPos(x.Start.Position)
	case *ast.TagNode:
		return tokPos(x.Start.Position)
	}
	if t := n.GetToken(); t != nil && t.Position != nil {
		return tokPos(t.Position)
	}
	return Pos{1, 1}
}

func tokPos(p *token.Position) Pos {
	if p == nil {
		return Pos{1, 1}
	}
	return Pos{p.Line, max(p.Column, 1)}
}

// resolve follows tags, anchors and aliases to the node that holds a value.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for i := 0; i < 100; i++ {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			if name, ok := x.Name.(*ast.StringNode); ok {
				d.anchors[name.Value] = x.Value
			} else if x.Name != nil {
				d.anchors[x.Name.GetToken().Value] = x.Value
			}
			n = x.Value
		case *ast.AliasNode:
			name := ""
			if x.Value != nil {
				name = x.Value.GetToken().Value
			}
			target, ok := d.anchors[name]
			if !ok {
				d.errorAt(x, fmt.Sprintf("unknown alias *%s", name), "define the anchor &"+name+" before using it")
				return nil
			}
			if !d.expand(x, target) {
				return nil
			}
			n = target
		default:
			return n
		}
	}
	return n
}

// expand counts the nodes of an alias's target against maxExpanded. The
// first alias past the budget is reported; it and every later one are
// read as nothing, so the report is not repeated for each of them.
func (d *decoder) expand(alias, target ast.Node) bool {
	if d.expanded > maxExpanded {
		return false
	}
	size, ok := d.sizes[target]
	if !ok {
		size = nodeCount(target)
		if d.sizes == nil {
			d.sizes = map[ast.Node]int{}
		}
		d.sizes[target] = size
	}
	if d.expanded += size; d.expanded > maxExpanded {
		d.errorAt(alias, fmt.Sprintf("aliases expand to too many values (more than %d)", maxExpanded),
			"aliases to lists of aliases multiply: repeat the value, or move it into a mapping file and use: it")
		return false
	}
	return true
}

// nodeCount is how many nodes n holds, not following its aliases.
func nodeCount(n ast.Node) int {
	var c counter
	if n != nil {
		ast.Walk(&c, n)
	}
	return int(c)
}

type counter int

func (c *counter) Visit(ast.Node) ast.Visitor {
	*c++
	return c
}

// entry is one key of a mapping node.
type entry struct {
	key   string
	keyN  ast.Node
	value ast.Node
}

// entries lists the keys of a mapping node, reporting duplicate and
// non-string keys. ok is false when n is not a mapping.
func (d *decoder) entries(n ast.Node) ([]entry, bool) {
	var values []*ast.MappingValueNode
	switch x := n.(type) {
	case *ast.MappingNode:
		values = x.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{x}
	default:
		return nil, false
	}
	seen := make(map[string]ast.Node, len(values))
	out := make([]entry, 0, len(values))
	for _, mv := range values {
		if mv.Key == nil {
			continue
		}
		if mv.Key.IsMergeKey() {
			d.errorAt(mv.Key, "merge keys (<<) are not supported", "repeat the fields, or move them into a mapping file and use: it")
			continue
		}
		keyN := d.resolve(mv.Key)
		var key string
		switch k := keyN.(type) {
		case *ast.StringNode:
			key = k.Value
		case nil:
			continue
		default:
			key = k.GetToken().Value
		}
		if first, dup := seen[key]; dup {
			d.errorAt(mv.Key, fmt.Sprintf("duplicate key %q", key), fmt.Sprintf("first defined at line %d", posOf(first).Line))
			continue
		}
		seen[key] = mv.Key
		out = append(out, entry{key: key, keyN: mv.Key, value: mv.Value})
	}
	return out, true
}

// describe names a node's type for "expected X, got Y" messages.
func describe(n ast.Node) string {
	switch x := n.(type) {
	case nil, *ast.NullNode:
		return "nothing"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.StringNode:
		return fmt.Sprintf("%q", x.Value)
	case *ast.LiteralNode:
		return "a block of text"
	}
	return "a value"
}

// scalar returns the text of a scalar node; ok is false for collections.
func scalar(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.NullNode:
		return "", true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return x.GetToken().Value, true
	}
	return "", false
}

func isNull(n ast.Node) bool {
	_, ok := n.(*ast.NullNode)
	return n == nil || ok
}

var unmarshalerType = reflect.TypeOf((*unmarshaler)(nil)).Elem()

// decode fills v from n.
func (d *decoder) decode(n ast.Node, v reflect.Value) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.errorAt(n, "nesting is too deep", "")
		return
	}
	if _, alias := n.(*ast.AliasNode); alias {
		if n = d.resolve(n); n == nil {
			return // an unknown alias, reported by resolve
		}
	}
	n = d.resolve(n)
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		v.Addr().Interface().(unmarshaler).decodeYAML(d, n)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			if v.Type().Elem().Kind() == reflect.Struct && !reflect.PointerTo(v.Type().Elem()).Implements(unmarshalerType) {
				// `log:` with nothing after it still names the kind.
				v.Set(reflect.New(v.Type().Elem()))
				d.decodeStruct(n, v.Elem())
			}
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem())
	case reflect.Struct:
		d.decodeStruct(n, v)
	case reflect.Slice:
		d.decodeSlice(n, v)
	case reflect.Map:
		d.decodeMap(n, v)
	case reflect.String:
		s, ok := scalar(n)
		if !ok {
			d.errorAt(n, "expected text, got "+describe(n), "")
			return
		}
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		x, ok := n.(*ast.IntegerNode)
		if !ok {
			d.errorAt(n, "expected a whole number, got "+describe(n), "")
			return
		}
		i, err := strconv.ParseInt(x.GetToken().Value, 0, 64)
		if err != nil {
			d.errorAt(n, "number out of range", "")
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		x, ok := n.(*ast.BoolNode)
		if !ok {
			d.errorAt(n, "expected true or false, got "+describe(n), "")
			return
		}
		v.SetBool(x.Value)
	default:
		panic(fmt.Sprintf("dsl: cannot decode into %s", v.Type()))
	}
}

func (d *decoder) decodeSlice(n ast.Node, v reflect.Value) {
	if isNull(n) {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		return
	}
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.errorAt(n, "expected a list, got "+describe(n), "start each item on its own line with \"- \"")
		return
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	noun := listNouns[v.Type().Elem()]
	for i, item := range seq.Values {
		switch {
		case noun == "step":
			d.push(fmt.Sprintf("step %d%s", i+1, stepKindLabel(item)), true)
		case noun != "":
			d.push(fmt.Sprintf("%s %d", noun, i+1), true)
		default:
			d.push(fmt.Sprintf("[%d]", i+1), false)
		}
		d.decode(item, out.Index(i))
		d.pop()
	}
	v.Set(out)
}

// stepKindLabel peeks at a step's keys for "(map)" in messages.
func stepKindLabel(n ast.Node) string {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		return ""
	}
	for _, mv := range m.Values {
		if k, ok := mv.Key.(*ast.StringNode); ok && stepKinds[k.Value] {
			return " (" + k.Value + ")"
		}
	}
	return ""
}

// listNouns label the items of lists whose items are best named by their
// number in messages: "step 2 (map)", "rule 1", "branch 2", "test 3".
var listNouns = map[reflect.Type]string{
	reflect.TypeOf(Step{}):     "step",
	reflect.TypeOf(Rule{}):     "rule",
	reflect.TypeOf(Branch{}):   "branch",
	reflect.TypeOf(TestCase{}): "test",
}

var stepKinds = func() map[string]bool {
	out := map[string]bool{}
	for _, f := range structFields(reflect.TypeOf(Step{})) {
		if f.kind {
			out[f.name] = true
		}
	}
	return out
}()

func (d *decoder) decodeMap(n ast.Node, v reflect.Value) {
	if isNull(n) {
		return
	}
	es, ok := d.entries(n)
	if !ok {
		d.errorAt(n, "expected a mapping of names to values, got "+describe(n), "")
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(es))
	for _, e := range es {
		d.push(e.key, false)
		ev := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.value, ev)
		m.SetMapIndex(reflect.ValueOf(e.key), ev)
		d.pop()
	}
	v.Set(m)
}

// field is the decoded form of one struct field's tags.
type field struct {
	index    int
	name     string
	desc     string
	required bool
	kind     bool
	enum     []string
	def      string
	min      string
	pattern  string
}

var fieldCache sync.Map // reflect.Type -> []field

// Enum is the values the YAML field name of v's type may take (its enum
// tag), or nil: the runtime asks rather than spell a list again.
func Enum(v any, name string) []string {
	for _, f := range structFields(reflect.TypeOf(v)) {
		if f.name == name {
			return f.enum
		}
	}
	return nil
}

// structFields lists the YAML fields of t, read from its tags.
func structFields(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		f := field{index: i, name: name, desc: sf.Tag.Get("desc"), required: sf.Tag.Get("required") == "true",
			kind: sf.Tag.Get("kind") == "true", def: sf.Tag.Get("default"), min: sf.Tag.Get("min"), pattern: sf.Tag.Get("pattern")}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, ",")
		}
		fs = append(fs, f)
	}
	fieldCache.Store(t, fs)
	return fs
}

func (d *decoder) decodeStruct(n ast.Node, v reflect.Value) {
	t := v.Type()
	fields := structFields(t)
	if at := v.FieldByName("At"); at.IsValid() && at.Type() == reflect.TypeOf(Pos{}) {
		at.Set(reflect.ValueOf(posOf(n)))
	}
	u, isUnion := v.Addr().Interface().(union)
	var es []entry
	if !isNull(n) {
		var ok bool
		if es, ok = d.entries(n); !ok {
			hint := ""
			if isUnion {
				hint = "write one of: " + strings.Join(kindNames(fields), ", ")
			}
			d.errorAt(n, "expected a mapping, got "+describe(n), hint)
			return
		}
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	present := map[string]ast.Node{}
	var kinds []entry
	flowStyle := false
	if m, ok := n.(*ast.MappingNode); ok {
		flowStyle = m.IsFlowStyle
	}
	unknown := false
	for _, e := range es {
		f, ok := fieldByName(fields, e.key)
		if !ok {
			d.unknownField(e, fields, isUnion, u, flowStyle)
			unknown = true
			continue
		}
		present[e.key] = e.keyN
		if f.kind {
			kinds = append(kinds, e)
		}
		fv := v.Field(f.index)
		// A numbered list or a step kind is named by its label alone.
		quiet := (fv.Kind() == reflect.Slice && listNouns[fv.Type().Elem()] != "") || (f.kind && t == reflect.TypeOf(Step{}))
		if !quiet {
			d.push(e.key, false)
		}
		before := len(d.diags)
		d.decode(e.value, fv)
		if len(d.diags) == before {
			d.checkField(f, e.value, fv)
		}
		// A field FooAt of type Pos holds where the value of Foo is, or its
		// key when no value is written (as:): past the colon is nothing to
		// point at.
		if at := v.FieldByName(t.Field(f.index).Name + "At"); at.IsValid() && at.Type() == reflect.TypeOf(Pos{}) {
			p := posOf(e.value)
			if isNull(e.value) {
				p = posOf(e.keyN)
			}
			at.Set(reflect.ValueOf(p))
		}
		// filter:, map:, log: with nothing after them set no kind.
		if f.kind && fv.Kind() == reflect.Pointer && fv.IsNil() && len(d.diags) == before {
			d.errorAt(e.keyN, fmt.Sprintf("%s needs a value", e.key), "")
		}
		if !quiet {
			d.pop()
		}
	}
	for _, f := range fields {
		if f.required && present[f.name] == nil {
			d.errorAt(n, fmt.Sprintf("missing required field %q", f.name), f.desc)
		}
	}
	if isUnion {
		switch {
		case len(kinds) == 0 && !unknown:
			d.errorAt(n, fmt.Sprintf("%s needs one of: %s", u.union(), strings.Join(kindNames(fields), ", ")), "")
		case len(kinds) > 1:
			hint := ""
			if u.union() == "step" {
				hint = "a step does one thing: split it into one step per kind"
			} else {
				hint = fmt.Sprintf("a flow has exactly one %s", u.union())
			}
			d.errorAt(kinds[1].keyN, fmt.Sprintf("has both %q and %q", kinds[0].key, kinds[1].key), hint)
		}
	}
}

func kindNames(fields []field) []string {
	var out []string
	for _, f := range fields {
		if f.kind {
			out = append(out, f.name)
		}
	}
	return out
}

func fieldByName(fields []field, name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func (d *decoder) unknownField(e entry, fields []field, isUnion bool, u union, flowStyle bool) {
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		names = append(names, f.name)
	}
	hint := DidYouMean(e.key, names)
	if flowStyle && isNull(e.value) && hint == "" {
		// {rule: all(x, .y > 0), message: m} splits at the comma.
		hint = "inside { } a comma ends a value: quote values that contain commas"
	}
	if hint == "" {
		hint = "known fields: " + strings.Join(names, ", ")
	}
	what := "unknown field"
	if isUnion && u.union() == "step" {
		what = "unknown step kind"
	} else if isUnion {
		what = "unknown " + u.union() + " kind"
	}
	d.errorAt(e.keyN, fmt.Sprintf("%s %q", what, e.key), hint)
}

// checkField applies enum, min and pattern constraints.
func (d *decoder) checkField(f field, n ast.Node, v reflect.Value) {
	if len(f.enum) > 0 && v.Kind() == reflect.String && v.String() != "" {
		s := v.String()
		for _, e := range f.enum {
			if s == e {
				return
			}
		}
		for _, e := range f.enum {
			if strings.EqualFold(s, e) {
				d.errorAt(n, fmt.Sprintf("%q is not one of %s", s, strings.Join(f.enum, ", ")), fmt.Sprintf("write %q", e))
				return
			}
		}
		hint := DidYouMean(s, f.enum)
		d.errorAt(n, fmt.Sprintf("%q is not one of %s", s, strings.Join(f.enum, ", ")), hint)
	}
	if f.min != "" && v.Kind() == reflect.Int && !isNull(n) {
		m, _ := strconv.ParseInt(f.min, 10, 64)
		if v.Int() < m {
			d.errorAt(n, fmt.Sprintf("must be at least %d", m), "")
		}
	}
	if f.pattern == "^/" && v.Kind() == reflect.String && v.String() != "" && !strings.HasPrefix(v.String(), "/") {
		d.errorAt(n, fmt.Sprintf("%q must start with /", v.String()), fmt.Sprintf("write %q", "/"+v.String()))
	}
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

func mustRE(s string) *regexp.Regexp { return regexp.MustCompile(s) }
