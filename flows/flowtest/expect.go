package flowtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
)

// CaseResult is the outcome of one flow test.
type CaseResult struct {
	Flow     string
	Name     string
	File     string
	At       dsl.Pos
	Failures []string
	Report   *Report
}

// Passed reports whether every expectation held.
func (c CaseResult) Passed() bool { return len(c.Failures) == 0 }

// RunCase runs one test case against f and checks its expectations.
func RunCase(ctx context.Context, f *flows.Flow, tc dsl.TestCase, file string) CaseResult {
	in := Input{Body: tc.Input.Body.V, Headers: tc.Input.Headers, Query: tc.Input.Query, Params: tc.Input.Params}
	rep := Run(ctx, f, in, Mocks(tc.Mocks))
	res := CaseResult{Flow: f.ID, Name: tc.Name, File: file, At: tc.At, Report: rep}
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	// A mock for a connection the flow never uses (a typo: epr for erp)
	// would leave the real call on the default 200 and the test passing.
	used := f.Connections()
	for _, name := range slices.Sorted(maps.Keys(tc.Mocks)) {
		if !slices.Contains(used, name) {
			hint := dsl.DidYouMean(name, used)
			if hint == "" {
				hint = "it uses: " + strings.Join(used, ", ")
				if len(used) == 0 {
					hint = "it calls none"
				}
			}
			fail("mocks: the flow uses no connection %q (%s)", name, hint)
		}
	}
	e := tc.Expect
	want := e.Outcome
	if want == "" {
		want = string(flows.Completed)
		if len(e.Errors) > 0 {
			want = string(flows.Rejected)
		}
	}
	if string(rep.Outcome) != want {
		detail := ""
		if rep.Error != "" {
			detail = ": " + rep.Error
		}
		fail("outcome: expected %s, got %s%s", want, rep.Outcome, detail)
	}
	if e.Errors != nil && !equalStrings(e.Errors, rep.Errors) {
		fail("errors: expected %s, got %s", quoteAll(e.Errors), quoteAll(rep.Errors))
	}
	if e.Body.Set {
		for _, d := range Subset(e.Body.V, rep.Body, "body") {
			fail("%s", d)
		}
	}
	if e.Vars.Set {
		for _, d := range Subset(e.Vars.V, map[string]any(rep.Vars), "vars") {
			fail("%s", d)
		}
	}
	if e.Status != 0 || e.Response.Set {
		if rep.Response == nil {
			fail("response: expected one, but no respond step ran")
		} else {
			if e.Status != 0 && rep.Response.Status != e.Status {
				fail("status: expected %d, got %d", e.Status, rep.Response.Status)
			}
			if e.Response.Set {
				for _, d := range Subset(e.Response.V, rep.Response.Body, "response") {
					fail("%s", d)
				}
			}
		}
	}
	if e.Calls != nil {
		if len(e.Calls) != len(rep.Calls) {
			fail("calls: expected %d, got %d: %s", len(e.Calls), len(rep.Calls), callList(rep.Calls))
		}
		for i := 0; i < min(len(e.Calls), len(rep.Calls)); i++ {
			want, got := e.Calls[i], rep.Calls[i]
			where := fmt.Sprintf("calls[%d]", i)
			if want.Connection != got.Connection {
				fail("%s.connection: expected %q, got %q", where, want.Connection, got.Connection)
			}
			if want.Method != "" && !strings.EqualFold(want.Method, got.Method) {
				fail("%s.method: expected %s, got %s", where, want.Method, got.Method)
			}
			if want.Path != "" && want.Path != got.Path {
				fail("%s.path: expected %q, got %q", where, want.Path, got.Path)
			}
			if want.Body.Set {
				for _, d := range Subset(want.Body.V, got.Body, where+".body") {
					fail("%s", d)
				}
			}
		}
	}
	if e.Published != nil {
		if len(e.Published) != len(rep.Published) {
			topics := make([]string, len(rep.Published))
			for i, p := range rep.Published {
				topics[i] = p.Topic
			}
			fail("published: expected %d, got %d %v", len(e.Published), len(rep.Published), topics)
		}
		for i := 0; i < min(len(e.Published), len(rep.Published)); i++ {
			want, got := e.Published[i], rep.Published[i]
			if want.Topic != got.Topic {
				fail("published[%d].topic: expected %q, got %q", i, want.Topic, got.Topic)
			}
			if want.Body.Set {
				for _, d := range Subset(want.Body.V, got.Body, fmt.Sprintf("published[%d].body", i)) {
					fail("%s", d)
				}
			}
		}
	}
	return res
}

func callList(calls []Call) string {
	parts := make([]string, len(calls))
	for i, c := range calls {
		parts[i] = fmt.Sprintf("%s %s %s", c.Connection, c.Method, c.Path)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Subset reports every way in which got does not contain want: objects
// need want's keys (others may be present), lists need the same length
// with each item a subset, numbers compare by value, other scalars equal.
func Subset(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: expected an object, got %s", path, show(got))}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, present := g[k]
			if !present {
				out = append(out, fmt.Sprintf("%s.%s: missing, expected %s", path, k, show(w[k])))
				continue
			}
			out = append(out, Subset(w[k], gv, path+"."+k)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: expected a list, got %s", path, show(got))}
		}
		if len(g) != len(w) {
			return []string{fmt.Sprintf("%s: expected %d items, got %d: %s", path, len(w), len(g), show(got))}
		}
		var out []string
		for i := range w {
			out = append(out, Subset(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if wn, ok := number(want); ok {
		if gn, ok := number(got); ok && wn.Cmp(gn) == 0 {
			return nil
		}
	} else if want == got {
		return nil
	}
	return []string{fmt.Sprintf("%s: expected %s, got %s", path, show(want), show(got))}
}

func number(v any) (*big.Rat, bool) {
	var s string
	switch x := v.(type) {
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case json.Number:
		s = string(x)
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
