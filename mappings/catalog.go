package mappings

import (
	"fmt"
	"regexp"
	"sort"
)

// Function is one entry of the expression function library: the callable
// itself plus the documentation the editor API and the reference docs show.
// The catalogue is the single source for both.
type Function struct {
	Name        string // snake_case name used in expressions
	Signature   string // e.g. "dec_add(a, b) string"
	Description string // one sentence for analysts
	Example     string // an expression using it, e.g. `dec_add("1.10", "2.205")`
	Fn          func(params ...any) (any, error)
	// Types are optional expr type hints (e.g. new(func(string) string)).
	// With types, expr checks argument counts and types at compile time.
	Types []any
}

var (
	stdlib   []Function
	stdNames = map[string]bool{}
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// registerFunc adds f to the standard library. It is called from init()
// functions; a duplicate or malformed name panics at start-up.
func registerFunc(f Function) {
	if !nameRE.MatchString(f.Name) {
		panic(fmt.Sprintf("mappings: malformed function name %q", f.Name))
	}
	if stdNames[f.Name] {
		panic(fmt.Sprintf("mappings: function %q registered twice", f.Name))
	}
	if f.Fn == nil || f.Signature == "" || f.Description == "" || f.Example == "" {
		panic(fmt.Sprintf("mappings: function %q needs Fn, Signature, Description and Example", f.Name))
	}
	stdNames[f.Name] = true
	stdlib = append(stdlib, f)
}

// Catalogue returns every function available to expressions of a workspace
// whose lookup tables are l (nil for none), sorted by name.
func Catalogue(l *Lookups) []Function {
	out := make([]Function, 0, len(stdlib)+1)
	out = append(out, stdlib...)
	out = append(out, lookupFunction(l))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
