package mappings

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/conveyor-run/conveyor/dsl"
)

// Want is the type an expression must produce.
type Want int

// The types an expression may be required to produce.
const (
	Any Want = iota
	Bool
)

// Scope says where an expression stands, which decides the names it may use.
type Scope struct {
	InSplit bool
	Want    Want
	// Vars, when not nil, are the names the flow stores in vars (as:,
	// set: vars.<name>, the watermark): vars.<other> is nil at every run,
	// a misspelling. nil when they are not known, as for a mapping file,
	// which serves several flows.
	Vars []string
}

// Compiler compiles expressions against one workspace's function library.
// It is safe for concurrent use.
type Compiler struct {
	lookups *Lookups
	opts    []expr.Option
	names   []string // every name an expression may use, for did-you-mean
	// configs holds expr configurations with every option applied. Building
	// one (the env's type, ~50 functions) costs more than compiling most
	// expressions, so each is reused by one compile at a time.
	configs sync.Pool
}

// NewCompiler returns a compiler whose lookup() reads the tables in l.
func NewCompiler(l *Lookups) *Compiler {
	c := &Compiler{lookups: l}
	c.opts = []expr.Option{expr.Env(Env{}), expr.MaxNodes(5000)}
	c.names = append(c.names, Names...)
	for _, f := range Catalogue(l) {
		c.opts = append(c.opts, expr.Function(f.Name, f.Fn, f.Types...))
		c.names = append(c.names, f.Name)
	}
	for _, b := range builtin.Builtins {
		c.names = append(c.names, b.Name)
	}
	c.names = append(c.names, "nil", "true", "false")
	c.configs.New = func() any {
		cfg := conf.CreateNew()
		for _, op := range c.opts {
			op(cfg)
		}
		return cfg
	}
	return c
}

// Program is a compiled expression. It is safe for concurrent use.
type Program struct {
	prog      *vm.Program
	Src       dsl.Expr
	File      string
	readsBody bool
	inserted  []int // braces objectPredicates added, to place run-time errors
}

// ReadsBody reports whether the expression reads the message body (body,
// or the whole environment through $env).
func (p *Program) ReadsBody() bool { return p.readsBody }

var vms = sync.Pool{New: func() any { return new(vm.VM) }}

// Eval runs the program against env.
func (p *Program) Eval(env *Env) (any, error) {
	m := vms.Get().(*vm.VM)
	out, err := m.Run(p.prog, env)
	vms.Put(m)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			at := p.Src.PosOf(lineCol(p.Src.Src, originalOffset(fe.From, p.inserted)))
			return nil, &EvalError{File: p.File, Expr: p.Src.Src, At: at, Msg: fe.Message}
		}
		return nil, &EvalError{File: p.File, Expr: p.Src.Src, At: p.Src.At, Msg: err.Error()}
	}
	return out, nil
}

// EvalError is an expression that failed at run time.
type EvalError struct {
	File string
	Expr string
	At   dsl.Pos
	Msg  string
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.At.Line, e.At.Col, e.Msg)
}

// Compile compiles one expression written in file. A failure comes back
// as a diagnostic at the place inside the file where the error is.
func (c *Compiler) Compile(path string, e dsl.Expr, scope Scope) (*Program, *dsl.Diagnostic) {
	if strings.TrimSpace(e.Src) == "" {
		return nil, &dsl.Diagnostic{File: path, Line: e.At.Line, Col: e.At.Col, Message: "empty expression", Hint: "write nil for nothing"}
	}
	check := &scopeCheck{c: c, scope: scope}
	base := c.configs.Get().(*conf.Config)
	defer c.configs.Put(base)
	cfg := *base
	if scope.Want == Bool {
		cfg.Expect, cfg.ExpectAny = reflect.Bool, true
	}
	src, inserted := objectPredicates(e.Src)
	prog, err := compileSafe(src, &cfg, check)
	if check.diag != nil {
		d := check.diag
		p := e.PosOf(lineCol(e.Src, originalOffset(check.at, inserted)))
		return nil, &dsl.Diagnostic{File: path, Line: p.Line, Col: p.Col, Message: d.Message, Hint: d.Hint}
	}
	if err != nil {
		return nil, c.diagnose(path, e, err, inserted, check.callees)
	}
	return &Program{prog: prog, Src: e, File: path, readsBody: check.readsBody, inserted: inserted}, nil
}

// compileSafe is expr.Compile over a prepared configuration. A panic
// inside the expression compiler becomes an error: hostile input must never
// take the process down.
//
// The scope check walks the parsed tree before type checking instead of
// being an expr patcher: with a patcher expr type-checks the tree twice,
// and the second pass no longer reports unknown names inside arguments of
// typed functions (dec_round(bdy.a, 1) compiled).
func compileSafe(src string, cfg *conf.Config, check *scopeCheck) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot compile expression: %v", r)
		}
	}()
	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil, err
	}
	ast.Walk(&tree.Node, check)
	if check.diag != nil {
		return nil, errors.New(check.diag.Message)
	}
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, err
	}
	if cfg.Optimize {
		if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				return nil, fe.Bind(tree.Source)
			}
			return nil, err
		}
	}
	return compiler.Compile(tree, cfg)
}

var (
	unknownNameRE = regexp.MustCompile(`^unknown name ([A-Za-z_][A-Za-z0-9_]*)`)
	unknownFuncRE = regexp.MustCompile(`^unknown func(?:tion)? ([A-Za-z_][A-Za-z0-9_]*)`)
	wordsRE       = regexp.MustCompile(`^[\p{L}0-9_ .,'!?&/:-]+$`)
	dottedRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$`)
)

// variables are the names an unknown name that is not called may be a
// misspelling of. header is left out: it is called, as header("X-Id").
var variables = append(slices.DeleteFunc(slices.Clone(Names), func(n string) bool { return n == "header" }), "nil", "true", "false")

// diagnose turns a compile error into a diagnostic. callees are the
// offsets in the rewritten source of names written as functions.
func (c *Compiler) diagnose(path string, e dsl.Expr, err error, inserted []int, callees map[int]bool) *dsl.Diagnostic {
	d := &dsl.Diagnostic{File: path, Line: e.At.Line, Col: e.At.Col, Message: err.Error()}
	var fe *file.Error
	if errors.As(err, &fe) {
		p := e.PosOf(lineCol(e.Src, originalOffset(fe.From, inserted)))
		d.Line, d.Col, d.Message = p.Line, p.Col, strings.TrimSpace(fe.Message)
	}
	looksLikeText := wordsRE.MatchString(e.Src) && !strings.ContainsAny(e.Src, `"`+"`")
	if m := unknownNameRE.FindStringSubmatch(d.Message); m != nil {
		d.Message = fmt.Sprintf("unknown name %q", m[1])
		// Only a name that is called may be a misspelt function: "total > 0"
		// is a field written without body., not today().
		called := fe != nil && callees[fe.From]
		if called {
			d.Hint = dsl.DidYouMean(m[1], c.names)
		} else {
			d.Hint = dsl.DidYouMean(m[1], variables)
		}
		if d.Hint == "" {
			switch {
			case looksLikeText && !dottedRE.MatchString(strings.TrimSpace(e.Src)): // line.sku is a path, not text
				d.Hint = fmt.Sprintf("literal text goes in quotes: '\"%s\"'", e.Src)
			case called:
				d.Hint = "expressions start from body, headers, query, params, vars, meta or item"
			default:
				d.Hint = fmt.Sprintf("did you mean body.%s?", m[1])
			}
		}
	} else if m := unknownFuncRE.FindStringSubmatch(d.Message); m != nil {
		d.Message = fmt.Sprintf("unknown function %q", m[1])
		d.Hint = dsl.DidYouMean(m[1], c.names)
	} else if looksLikeText && strings.Contains(strings.TrimSpace(e.Src), " ") {
		d.Hint = fmt.Sprintf("literal text goes in quotes: '\"%s\"'", e.Src)
	}
	return d
}

// lineCol converts a rune offset in src to expr's 1-based line and
// 0-based column.
func lineCol(src string, at int) (int, int) {
	line, col, i := 1, 0, 0
	for _, r := range src {
		if i == at {
			break
		}
		if r == '\n' {
			line, col = line+1, 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

// scopeCheck is an expr AST visitor for what expr's checker cannot know:
// item outside a split, and lookup tables that do not exist.
type scopeCheck struct {
	c     *Compiler
	scope Scope
	diag  *dsl.Diagnostic
	at    int
	// readsBody: the expression names body or $env (Program.ReadsBody)
	readsBody bool
	// callees are the offsets of names written as functions, name(...),
	// so that diagnose suggests functions only for those.
	callees map[int]bool
}

func (s *scopeCheck) fail(n ast.Node, msg, hint string) {
	if s.diag == nil {
		s.diag, s.at = &dsl.Diagnostic{Message: msg, Hint: hint}, n.Location().From
	}
}

func (s *scopeCheck) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == "body" || n.Value == "$env" {
			s.readsBody = true
		}
		if n.Value == "item" && !s.scope.InSplit {
			s.fail(n, "item is only defined inside a split", "use body here, or move the step into split.steps")
		}
	case *ast.MemberNode:
		// vars.name and vars["name"]: a name no step stores
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "vars" && s.scope.Vars != nil {
			if p, ok := n.Property.(*ast.StringNode); ok && !slices.Contains(s.scope.Vars, p.Value) {
				s.fail(p, fmt.Sprintf("vars.%s is never set in this flow", p.Value), varsHint(p.Value, s.scope.Vars))
			}
		}
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if s.callees == nil {
				s.callees = map[int]bool{}
			}
			s.callees[id.Location().From] = true
			s.literalArgs(id.Value, n.Arguments)
		}
	}
}

// varsHint is the hint for reading vars.name in a flow whose steps store
// the names stored and no other.
func varsHint(name string, stored []string) string {
	if s := dsl.Suggest(name, stored); s != "" {
		return "did you mean vars." + s + "?"
	}
	list := "none"
	if len(stored) > 0 {
		list = "vars." + strings.Join(slices.Sorted(slices.Values(stored)), ", vars.")
	}
	return "vars holds what steps store: as: of a call or split, set: vars.<name>, and the watermark; this flow stores " + list
}

// literalArgs checks the arguments written as text literals that a
// function would refuse only at run time (a table, a column, a rounding
// mode, a date pattern, a time zone), so that a flow with a typo in one
// never goes live.
func (s *scopeCheck) literalArgs(fn string, args []ast.Node) {
	lit := func(i int) (string, bool) {
		if i < len(args) {
			if v, ok := args[i].(*ast.StringNode); ok {
				return v.Value, true
			}
		}
		return "", false
	}
	zone := func(i int) {
		if z, ok := lit(i); ok {
			if _, err := locationArg(z); err != nil {
				s.fail(args[i], err.Error(), "")
			}
		}
	}
	switch fn {
	case "lookup":
		table, ok := lit(0)
		if !ok {
			return
		}
		if err := s.c.lookups.Broken(table); err != nil {
			s.fail(args[0], fmt.Sprintf("lookup table %q has errors: %v", table, err), "fix the CSV file")
			return
		}
		if !s.c.lookups.Has(table) {
			s.fail(args[0], fmt.Sprintf("unknown lookup table %q", table), cmp.Or(dsl.DidYouMean(table, s.c.lookups.Names()), "tables are the CSV files in lookups/"))
			return
		}
		cols := s.c.lookups.Columns(table)
		if col, ok := lit(3); ok && !slices.Contains(cols, col) {
			s.fail(args[3], fmt.Sprintf("lookup table %q has no column %q", table, col), cmp.Or(dsl.DidYouMean(col, cols), "columns are "+strings.Join(cols, ", ")))
		}
	case "dec_round":
		if mode, ok := lit(2); ok && roundModes[mode] == nil {
			modes := slices.Sorted(maps.Keys(roundModes))
			s.fail(args[2], fmt.Sprintf("unknown rounding mode %q", mode), cmp.Or(dsl.DidYouMean(mode, modes), "modes are "+strings.Join(modes, ", ")))
		}
	case "parse_date", "format_date":
		if pattern, ok := lit(1); ok {
			if _, err := compileDatePattern(pattern); err != nil {
				s.fail(args[1], err.Error(), "")
			}
		}
		zone(2)
	case "to_timezone":
		zone(1)
	case "today":
		zone(0)
	}
}
