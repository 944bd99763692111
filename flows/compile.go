package flows

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/mappings"
)

// Env is what compiling a flow needs from its workspace.
type Env struct {
	Compiler    *mappings.Compiler
	Mappings    map[string]*dsl.MappingFile // by id
	Connections []string                    // names from conveyor.yaml
	// HTTPConnections are the names of Connections of kind http, which
	// publish and sql steps must not name.
	HTTPConnections []string
	// BrokenMappings are the diagnostics of the mapping files that do
	// not decode (absent from Mappings), by id.
	BrokenMappings map[string]dsl.Diagnostics
	// Getenv resolves ${env:NAME}; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
}

// Compile builds an executable flow from a decoded one. Every expression is
// compiled here, once; any diagnostic means the flow must not go live.
func Compile(src *dsl.Flow, env Env) (*Flow, dsl.Diagnostics) {
	c := &compiler{env: env, file: src.File, policies: map[string]RetryPolicy{}, vars: src.Vars}
	f := &Flow{ID: src.ID, File: src.File, Description: src.Description, Source: src, Concurrency: src.Concurrency}
	if f.Concurrency <= 0 {
		f.Concurrency = 4
	}
	f.Retry = retryPolicy(src.Retry, DefaultRetry)
	if w := src.Watermark; w != nil {
		f.Watermark = &Watermark{Initial: c.expr(w.Initial, mappings.Scope{}), Next: c.expr(w.Next, mappings.Scope{})}
	}
	if src.Trigger != nil {
		f.Trigger = c.trigger(src.Trigger)
	}
	if d := src.Dedup; d != nil {
		f.Dedup = &Dedup{Key: c.expr(d.Key, mappings.Scope{}), TTL: d.TTL.D}
		if !d.TTL.Set {
			f.Dedup.TTL = 24 * 3600e9
		}
	}
	if src.RateLimit != nil {
		f.RateLimit = c.rateLimit(src.RateLimit, mappings.Scope{})
		if t := src.Trigger; t != nil && t.Kind() != "" && t.HTTP == nil {
			// Only requests are refused (429): any other trigger would run
			// the flow with its limit silently unenforced.
			c.add(src.RateLimit.At, fmt.Sprintf("rate_limit: limits the requests of an http trigger; this flow's trigger is %s", t.Kind()),
				"to pace what the flow sends, give its call steps a rate_limit")
		}
	}
	c.flowRetry = f.Retry
	f.steps = c.steps(src.Steps, "", mappings.Scope{})
	for f.AcceptSteps < len(f.steps) && f.steps[f.AcceptSteps].kind == "validate" {
		f.AcceptSteps++
	}
	f.policies = c.policies
	f.readsBody = c.readsBody
	for _, s := range f.steps {
		f.readsBody = f.readsBody || s.kind != "call"
	}
	c.diags.Sort()
	c.diags = slices.Compact(c.diags) // a mapping used twice fails twice alike
	if len(c.diags) > 0 {
		return nil, c.diags
	}
	return f, nil
}

type compiler struct {
	env       Env
	file      string
	diags     dsl.Diagnostics
	flowRetry RetryPolicy
	policies  map[string]RetryPolicy
	using     []string // mapping files being compiled, to stop cycles
	readsBody bool     // an expression compiled so far reads the body
	vars      []string // the names the flow stores in vars (dsl.Flow.Vars); nil: not known
}

func (c *compiler) add(at dsl.Pos, msg, hint string) {
	c.diags = append(c.diags, dsl.Diagnostic{File: c.file, Line: at.Line, Col: at.Col, Message: msg, Hint: hint})
}

func (c *compiler) expr(e dsl.Expr, scope mappings.Scope) *mappings.Program {
	if e.At.Line == 0 { // not written, or already reported by dsl
		return nil
	}
	if len(c.using) == 0 { // a mapping file serves other flows too: their vars are not known here
		scope.Vars = c.vars
	}
	p, d := c.env.Compiler.Compile(c.file, e, scope)
	if d != nil {
		c.diags = append(c.diags, *d)
	}
	if p != nil && p.ReadsBody() {
		c.readsBody = true
	}
	return p
}

func (c *compiler) optExpr(e *dsl.Expr, scope mappings.Scope) *mappings.Program {
	if e == nil {
		return nil
	}
	return c.expr(*e, scope)
}

func (c *compiler) resolve(s dsl.ConfigString, what string) string {
	v, err := s.Resolve(c.env.Getenv)
	if err != nil {
		c.add(s.At, fmt.Sprintf("%s: %v", what, err), "export it, or give a default: ${env:NAME:-value}")
	}
	return v
}

func (c *compiler) trigger(t *dsl.Trigger) Trigger {
	out := Trigger{Kind: t.Kind(), HTTP: t.HTTP, Schedule: t.Schedule, File: t.File, Event: t.Event}
	if h := t.HTTP; h != nil && h.Auth != nil {
		out.Auth = c.auth(h.Auth)
	}
	if ft := t.File; ft != nil {
		if _, err := filepath.Match(ft.Pattern, "x"); err != nil {
			c.add(ft.At, fmt.Sprintf("trigger.file.pattern: %q is not a valid glob", ft.Pattern), "e.g. *.edi or orders-*.csv")
		}
		if ft.CSV != nil && ft.CSV.Delimiter != "" && (len([]rune(ft.CSV.Delimiter)) != 1 || strings.ContainsAny(ft.CSV.Delimiter, "\"\r\n")) {
			c.add(ft.CSV.At, fmt.Sprintf("trigger.file.csv.delimiter: %q must be one character, not a quote or line break", ft.CSV.Delimiter), "")
		}
		for _, d := range []string{ft.DoneDir, ft.ErrorDir} {
			if d != "" && filepath.Clean(d) == filepath.Clean(ft.Dir) {
				c.add(ft.At, "trigger.file: done_dir and error_dir must differ from dir", "")
			}
		}
	}
	for kind, st := range map[string]*dsl.StreamTrigger{"redis_stream": t.RedisStream, "nats": t.NATS} {
		if st == nil {
			continue
		}
		url := c.resolve(st.URL, "trigger."+kind+".url")
		schemes := map[string][]string{"redis_stream": {"redis://", "rediss://"}, "nats": {"nats://", "tls://", "ws://", "wss://"}}[kind]
		ok := url == ""
		for _, sc := range schemes {
			ok = ok || strings.HasPrefix(url, sc)
		}
		if !ok {
			c.add(st.At, fmt.Sprintf("trigger.%s.url: expected a %s URL", kind, strings.Join(schemes, " or ")), "")
		}
		if kind == "nats" && strings.ContainsAny(st.Stream+st.Group, ".*> /\\\t\r\n") { // as the jetstream client checks them
			c.add(st.At, `trigger.nats: stream and group names cannot hold '.', '*', '>', '/', '\' or whitespace`, "")
		}
	}
	return out
}

func (c *compiler) rateLimit(r *dsl.RateLimit, scope mappings.Scope) *RateLimit {
	rl := &RateLimit{Key: c.expr(r.Key, scope), Limit: r.Limit, Per: r.Per.D, Burst: r.Burst}
	if rl.Burst <= 0 {
		rl.Burst = rl.Limit
	}
	if r.Per.Set && rl.Per <= 0 {
		c.add(r.Per.At, "rate_limit.per must be longer than 0", "")
	}
	return rl
}

func retryPolicy(r *dsl.Retry, base RetryPolicy) RetryPolicy {
	if r == nil {
		return base
	}
	p := base
	if r.Attempts > 0 {
		p.Attempts = r.Attempts
	}
	if r.Backoff != "" {
		p.Backoff = r.Backoff
	}
	if r.Initial.Set {
		p.Initial = r.Initial.D
	}
	if r.Max.Set {
		p.Max = r.Max.D
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

func (c *compiler) steps(src []dsl.Step, prefix string, scope mappings.Scope) []*step {
	out := make([]*step, 0, len(src))
	for i := range src {
		s := &src[i]
		st := &step{path: prefix + strconv.Itoa(i+1), kind: s.Kind(), name: s.Name, at: s.At}
		scope := scope
		switch st.kind {
		case "validate":
			for _, r := range s.Validate {
				msg := r.Message
				if msg == "" {
					msg = "rule failed: " + r.Rule.Src
				}
				st.rules = append(st.rules, rule{prog: c.expr(r.Rule, mappings.Scope{InSplit: scope.InSplit, Want: mappings.Bool}), message: msg})
			}
		case "map":
			n := c.node(s.Map.Node, scope)
			st.mapping = &n
		case "set":
			for _, e := range *s.Set {
				st.sets = append(st.sets, setter{path: e.Path, prog: c.expr(e.Value, scope)})
			}
		case "filter":
			scope.Want = mappings.Bool
			st.cond = c.expr(*s.Filter, scope)
		case "choice":
			for j, b := range s.Choice {
				bp := fmt.Sprintf("%s.%d.", st.path, j+1)
				if b.Otherwise != nil {
					st.branches = append(st.branches, branch{steps: c.steps(b.Otherwise, bp, scope)})
					continue
				}
				when := scope
				when.Want = mappings.Bool
				st.branches = append(st.branches, branch{when: c.optExpr(b.When, when), steps: c.steps(b.Steps, bp, scope)})
			}
		case "split":
			inner := mappings.Scope{InSplit: true}
			st.split = &splitSpec{items: c.expr(s.Split.Items, scope), as: s.Split.As, steps: c.steps(s.Split.Steps, st.path+"[].", inner)}
		case "call":
			st.call = c.call(s.Call, st.path, scope)
		case "publish":
			st.publish = &publishSpec{topic: s.Publish.Topic, connection: s.Publish.Connection, body: c.optExpr(s.Publish.Body, scope)}
			c.connection(s.Publish.Connection, s.Publish.At, st.path, "publish")
			c.notHTTP(s.Publish.Connection, s.Publish.At, st.path, "publish", "publish", "publish to a redis_stream or nats connection")
		case "respond":
			st.respond = &respondSpec{status: c.optExpr(s.Respond.Status, scope), body: c.optExpr(s.Respond.Body, scope), headers: c.exprMap(s.Respond.Headers, scope)}
		case "aggregate":
			a := s.Aggregate
			if a.Size <= 0 && !a.Within.Set {
				c.add(a.At, fmt.Sprintf("step %s (aggregate): needs size, within or both", st.path), "e.g. size: 100, within: 5m")
			}
			st.aggregate = &aggregateSpec{key: c.optExpr(a.Key, scope), item: c.optExpr(a.Item, scope), size: a.Size, within: a.Within.D, topic: a.Topic}
		case "log":
			lvl := s.Log.Level
			if lvl == "" {
				lvl = "info"
			}
			st.log = &logSpec{level: lvl, msg: c.expr(s.Log.Message, scope)}
		}
		out = append(out, st)
	}
	return out
}

func (c *compiler) exprMap(m dsl.ExprMap, scope mappings.Scope) []namedProg {
	out := make([]namedProg, 0, len(m))
	for _, e := range m {
		out = append(out, namedProg{name: e.Key, prog: c.expr(e.Value, scope)})
	}
	return out
}

func (c *compiler) call(s *dsl.Call, path string, scope mappings.Scope) *callSpec {
	cs := &callSpec{connection: s.Connection, method: s.Method, as: s.As,
		query: c.exprMap(s.Query, scope), headers: c.exprMap(s.Headers, scope), body: c.optExpr(s.Body, scope)}
	if cs.method == "" {
		cs.method = "POST"
	}
	cs.sendBody = s.Body != nil || (cs.method != "GET" && cs.method != "DELETE")
	c.connection(s.Connection, s.ConnectionAt, path, "call")
	for _, part := range s.Path.Parts {
		if part.Expr == nil {
			cs.path = append(cs.path, pathPart{lit: part.Lit})
			continue
		}
		cs.path = append(cs.path, pathPart{prog: c.expr(*part.Expr, scope)})
	}
	if s.RateLimit != nil {
		cs.rateLimit = c.rateLimit(s.RateLimit, scope)
	}
	for _, st := range s.Accept {
		if st < 400 || st > 599 {
			c.add(s.At, fmt.Sprintf("step %s (call): accept: %d is not an error status", path, st), "list 4xx or 5xx statuses, such as [404, 409]")
		}
	}
	cs.accept = s.Accept
	if s.SQL != "" {
		c.notHTTP(s.Connection, s.ConnectionAt, path, "call", "run sql", "sql goes to a postgres connection")
		cs.sql = s.SQL
		for _, p := range s.Params {
			cs.params = append(cs.params, c.expr(p, scope))
		}
	} else if len(s.Params) > 0 {
		c.add(s.At, fmt.Sprintf("step %s (call): params go with sql", path), "")
	}
	if s.Timeout != nil {
		cs.timeout = s.Timeout.D
	}
	if s.Retry != nil {
		c.policies[path] = retryPolicy(s.Retry, c.flowRetry)
	}
	return cs
}

func (c *compiler) node(n dsl.MapNode, scope mappings.Scope) mapNode {
	switch {
	case n.Expr != nil:
		return mapNode{prog: c.expr(*n.Expr, scope)}
	case n.IsList:
		out := mapNode{list: true, items: make([]mapNode, len(n.Items))}
		for i, it := range n.Items {
			out.items[i] = c.node(it, scope)
		}
		return out
	}
	out := mapNode{fields: make([]mapField, len(n.Fields))}
	if n.Use != "" {
		out.use = c.use(n, scope)
	}
	for i, f := range n.Fields {
		out.fields[i] = mapField{key: f.Key, value: c.node(f.Value, scope)}
	}
	return out
}

// use compiles the mapping file a node names, at each use, against the
// scope of the step that uses it; its diagnostics name its own file.
func (c *compiler) use(n dsl.MapNode, scope mappings.Scope) *mapNode {
	mf, ok := c.env.Mappings[n.Use]
	switch {
	case !ok && len(c.env.BrokenMappings[n.Use]) > 0:
		c.add(n.UseAt, fmt.Sprintf("use: mapping %q has errors: %s", n.Use, c.env.BrokenMappings[n.Use][0]), "fix the mapping file")
		return nil
	case !ok:
		names := make([]string, 0, len(c.env.Mappings))
		for name := range c.env.Mappings {
			names = append(names, name)
		}
		hint := dsl.DidYouMean(n.Use, names)
		if hint == "" {
			hint = "mappings are the files in mappings/; known: " + strings.Join(sorted(names), ", ")
		}
		c.add(n.UseAt, fmt.Sprintf("use: unknown mapping %q", n.Use), hint)
		return nil
	case contains(c.using, n.Use):
		c.add(n.UseAt, fmt.Sprintf("use: mapping %q uses itself", n.Use), strings.Join(append(c.using, n.Use), " -> "))
		return nil
	}
	outer := c.file
	c.file, c.using = mf.File, append(c.using, n.Use)
	m := c.node(mf.Map.Node, scope)
	c.file, c.using = outer, c.using[:len(c.using)-1]
	return &m
}

// notHTTP reports a step that cannot go to an http connection (a publish,
// an sql call) naming one: the http connector would refuse it at every
// run.
func (c *compiler) notHTTP(name string, at dsl.Pos, path, kind, what, hint string) {
	if name != "" && contains(c.env.HTTPConnections, name) {
		c.add(at, fmt.Sprintf("step %s (%s): connection %q is an http connection, which cannot %s", path, kind, name, what), hint)
	}
}

// connection reports a step naming a connection conveyor.yaml lacks.
func (c *compiler) connection(name string, at dsl.Pos, path, kind string) {
	if name == "" || c.env.Connections == nil || contains(c.env.Connections, name) {
		return
	}
	hint := dsl.DidYouMean(name, c.env.Connections)
	if hint == "" {
		hint = "connections are defined in conveyor.yaml; known: " + strings.Join(sorted(c.env.Connections), ", ")
	}
	c.add(at, fmt.Sprintf("step %s (%s): unknown connection %q", path, kind, name), hint)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sorted(list []string) []string {
	out := append([]string(nil), list...)
	sort.Strings(out)
	return out
}
