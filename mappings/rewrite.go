package mappings

import (
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser/lexer"
)

// predicateBuiltins take a predicate as their second argument.
var predicateBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"find": true, "findIndex": true, "findLast": true, "findLastIndex": true, "count": true,
	"sum": true, "groupBy": true, "sortBy": true, "reduce": true, "mean": true, "median": true,
}

// objectPredicates rewrites `map(list, {a: .x})` to `map(list, {{a: .x}})`.
// expr reads braces in predicate position as the predicate's own brackets,
// so an object literal there is a syntax error, while analysts (and our
// design) write it the natural way. A `{` in predicate position followed by
// `name:` or `"name":` cannot be a valid predicate block, so the rewrite
// never changes the meaning of an expression that compiled before.
//
// It returns the new source and, for mapping error positions back, the
// rune offsets in the new source at which braces were inserted.
func objectPredicates(src string) (string, []int) {
	toks, err := lexer.Lex(file.NewSource(src))
	if err != nil {
		return src, nil
	}
	type call struct {
		name  string
		arg   int
		depth int
	}
	var calls []call
	depth := 0
	var opens, closes []int
	var pending []int // stack: index into closes to fill for braces we double
	var braceStack []bool
	for i, t := range toks {
		switch {
		case t.Kind == lexer.Bracket && (t.Value == "(" || t.Value == "[" || t.Value == "{"):
			depth++
			if t.Value == "(" && i > 0 && toks[i-1].Kind == lexer.Identifier {
				calls = append(calls, call{name: toks[i-1].Value, depth: depth})
			}
			if t.Value == "{" {
				doubled := false
				if n := len(calls); n > 0 && calls[n-1].depth == depth-1 && calls[n-1].arg == 1 && predicateBuiltins[calls[n-1].name] &&
					i+2 < len(toks) && (toks[i+1].Kind == lexer.Identifier || toks[i+1].Kind == lexer.String) &&
					toks[i+2].Kind == lexer.Operator && toks[i+2].Value == ":" {
					opens = append(opens, t.From)
					pending = append(pending, len(closes))
					closes = append(closes, -1)
					doubled = true
				}
				braceStack = append(braceStack, doubled)
			}
		case t.Kind == lexer.Bracket && (t.Value == ")" || t.Value == "]" || t.Value == "}"):
			if t.Value == "}" && len(braceStack) > 0 {
				if braceStack[len(braceStack)-1] {
					closes[pending[len(pending)-1]] = t.From
					pending = pending[:len(pending)-1]
				}
				braceStack = braceStack[:len(braceStack)-1]
			}
			if t.Value == ")" && len(calls) > 0 && calls[len(calls)-1].depth == depth {
				calls = calls[:len(calls)-1]
			}
			depth--
		case t.Kind == lexer.Operator && t.Value == ",":
			if n := len(calls); n > 0 && calls[n-1].depth == depth {
				calls[n-1].arg++
			}
		}
	}
	if len(opens) == 0 {
		return src, nil
	}
	marks := map[int][]rune{}
	for _, o := range opens {
		marks[o] = append(marks[o], '{')
	}
	for _, c := range closes {
		if c < 0 {
			return src, nil // unbalanced: let the compiler report it
		}
		marks[c] = append(marks[c], '}')
	}
	var out []rune
	var inserted []int
	for i, r := range []rune(src) {
		for _, m := range marks[i] {
			inserted = append(inserted, len(out))
			out = append(out, m)
		}
		out = append(out, r)
	}
	return string(out), inserted
}

// originalOffset maps a rune offset in rewritten source back to the source
// the analyst wrote.
func originalOffset(at int, inserted []int) int {
	n := 0
	for _, i := range inserted {
		if i < at {
			n++
		}
	}
	return at - n
}
