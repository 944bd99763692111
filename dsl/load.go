package dsl

import (
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// FlowID is the flow id a file name gives: its base name without extension.
func FlowID(file string) string {
	base := filepath.Base(file)
	return strings.TrimSuffix(strings.TrimSuffix(base, ".yaml"), ".yml")
}

// ParseFlow decodes and checks a flow file. The flow is returned even when
// there are diagnostics, as far as it could be read.
func ParseFlow(file string, src []byte) (*Flow, Diagnostics) {
	f := &Flow{ID: FlowID(file), File: file}
	ds := decodeFile(file, src, f)
	c := checker{file: file}
	if f.Flow != "" && f.Flow != f.ID {
		c.add(f.At, fmt.Sprintf("flow: %q does not match the file name %q", f.Flow, f.ID), "the file name is the flow id: rename the file or remove the flow: key")
	}
	if !idRE.MatchString(f.ID) {
		c.add(Pos{1, 1}, fmt.Sprintf("flow id %q (from the file name) may only hold letters, digits, - and _", f.ID), "")
	}
	if f.Trigger != nil {
		c.trigger(f.Trigger)
		switch h := f.Trigger.HTTP; {
		case h != nil && h.Mode != "sync":
			c.noAnswer = "an async http trigger answered 202 when the message was stored, before any step ran"
		case h == nil:
			c.noAnswer = "only an http trigger has a caller"
		}
	}
	c.steps(f.Steps, false)
	c.watermark = f.Watermark != nil
	stored := map[string]string{}
	c.storeNames(f.Steps, "", stored)
	f.Vars = storedVars(f, stored)
	for _, t := range f.Tests {
		c.test(t)
	}
	ds = append(ds, c.diags...)
	ds.Sort()
	return f, ds
}

// ParseMapping decodes a mappings/*.yaml file.
func ParseMapping(file string, src []byte) (*MappingFile, Diagnostics) {
	m := &MappingFile{ID: FlowID(file), File: file}
	ds := decodeFile(file, src, m)
	return m, ds
}

// ParseTestFile decodes a tests/*.yaml file.
func ParseTestFile(file string, src []byte) (*TestFile, Diagnostics) {
	t := &TestFile{File: file}
	ds := decodeFile(file, src, t)
	c := checker{file: file}
	for _, tc := range t.Tests {
		c.test(tc)
	}
	ds = append(ds, c.diags...)
	ds.Sort()
	return t, ds
}

// ParseConfig decodes a workspace's conveyor.yaml.
func ParseConfig(file string, src []byte) (*Config, Diagnostics) {
	cfg := &Config{File: file}
	ds := decodeFile(file, src, cfg)
	c := checker{file: file}
	for name, conn := range cfg.Connections {
		if !idRE.MatchString(name) {
			c.add(conn.At, fmt.Sprintf("connections: name %q may only hold letters, digits, - and _", name), "")
		}
	}
	for _, l := range []struct{ field, addr string }{{"listen", cfg.Listen}, {"admin_listen", cfg.AdminListen}} {
		if l.addr == "" {
			continue
		}
		_, port, err := net.SplitHostPort(l.addr)
		if err == nil {
			_, err = net.LookupPort("tcp", port) // a number, or a service name as net.Listen takes
		}
		if err != nil {
			c.add(cfg.At, fmt.Sprintf("%s: %q is not a host:port address", l.field, l.addr), "such as 127.0.0.1:8080, or 0.0.0.0:8080 for every interface")
		}
	}
	if cfg.Store.Backend == "redis" && cfg.Store.URL.Raw == "" {
		c.add(cfg.Store.At, "store: backend redis needs a url", "url: ${env:REDIS_URL}")
	}
	if r := cfg.Store.Retention; r != nil && r.Set && r.D < time.Hour {
		c.add(r.At, fmt.Sprintf("store.retention: %s is shorter than an hour", r.D), "the journal is how an operator finds a message: such as 7d or 30d")
	}
	for i, t := range cfg.API.Tokens {
		if (t.Token.Raw == "") == (t.SHA256 == "") {
			c.add(t.At, fmt.Sprintf("api.tokens[%d] (%s): set exactly one of token and sha256", i+1, t.Name), "")
		}
	}
	ds = append(ds, c.diags...)
	ds.Sort()
	return cfg, ds
}

var idRE = mustRE(`^[A-Za-z0-9][A-Za-z0-9_\-]*$`)

// checker holds the checks that need more than one field.
type checker struct {
	file  string
	diags Diagnostics
	// noAnswer, when set, is why no respond step can answer anybody:
	// such a step would be dropped silently at run time.
	noAnswer string
	// watermark: the flow keeps one, in vars.watermark.
	watermark bool
}

func (c *checker) add(p Pos, msg, hint string) {
	c.diags = append(c.diags, Diagnostic{File: c.file, Line: p.Line, Col: p.Col, Message: msg, Hint: hint})
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a five-field cron spec or a descriptor such as @every 5m.
func ParseCron(spec string) (cron.Schedule, error) { return cronParser.Parse(spec) }

func (c *checker) trigger(t *Trigger) {
	if s := t.Schedule; s != nil {
		if sched, err := ParseCron(s.Cron); err != nil && s.Cron != "" {
			c.add(s.CronAt, fmt.Sprintf("trigger.schedule.cron: %q: %v", s.Cron, err), "five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"")
		} else if err == nil && sched.Next(time.Now()).IsZero() {
			c.add(s.CronAt, fmt.Sprintf("trigger.schedule.cron: %q never fires: no date matches it", s.Cron), "check the day of the month against the month: 0 0 30 2 * asks for February 30th")
		}
		if s.Timezone != "" {
			if _, err := time.LoadLocation(s.Timezone); err != nil {
				c.add(s.TimezoneAt, fmt.Sprintf("trigger.schedule.timezone: unknown time zone %q", s.Timezone), "an IANA name such as Europe/Amsterdam")
			}
		}
	}
	if h := t.HTTP; h != nil && h.Method == "GET" && h.Mode != "sync" {
		c.add(h.At, "trigger.http: a GET trigger has no body to queue", "use mode: sync for GET")
	}
}

func (c *checker) steps(steps []Step, inSplit bool) {
	for i, s := range steps {
		label := fmt.Sprintf("step %d (%s)", i+1, s.Kind())
		switch {
		case s.Choice != nil:
			for j, b := range s.Choice {
				bl := fmt.Sprintf("%s: branch %d", label, j+1)
				switch {
				case b.Otherwise != nil:
					if b.When != nil || b.Steps != nil {
						c.add(b.At, bl+": otherwise stands alone", "write - otherwise: [steps]")
					}
					if j != len(s.Choice)-1 {
						c.add(b.At, bl+": otherwise must be the last branch", "")
					}
					c.steps(b.Otherwise, inSplit)
				case b.When == nil:
					c.add(b.At, bl+": needs when and steps, or otherwise", "")
				case b.Steps == nil:
					c.add(b.At, bl+": when needs steps", "")
				default:
					c.steps(b.Steps, inSplit)
				}
			}
			if len(s.Choice) == 0 {
				c.add(s.At, label+": needs at least one branch", "")
			}
		case s.Split != nil:
			if inSplit {
				c.add(s.At, label+": a split inside a split is not supported", "flatten the list first with map")
			}
			c.steps(s.Split.Steps, true)
		case s.Respond != nil && c.noAnswer != "":
			c.add(s.At, label+": nobody to answer: "+c.noAnswer, "respond answers a sync http trigger: set mode: sync on it, or remove the step")
		case s.Respond != nil && inSplit:
			c.add(s.At, label+": respond cannot run inside a split", "")
		}
	}
}

// storeNames checks the names call and split steps store their results
// under (as:), which later expressions read as vars.<as>. stored holds the
// names steps before these ones store on this path through the flow, with
// the step that stores each; it is updated with the names these steps
// store. Branches of a choice are different paths: one name in each is
// the usual way to read one result whichever branch ran.
func (c *checker) storeNames(steps []Step, ctx string, stored map[string]string) {
	for i, s := range steps {
		label := fmt.Sprintf("%sstep %d (%s)", ctx, i+1, s.Kind())
		switch {
		case s.Call != nil:
			c.storeName(s.Call.As, s.Call.AsAt, label, stored)
		case s.Split != nil:
			c.storeNames(s.Split.Steps, label+": ", stored)
			c.storeName(s.Split.As, s.Split.AsAt, label, stored) // once every item ran
		case s.Choice != nil:
			after := maps.Clone(stored)
			for j, b := range s.Choice {
				branch := maps.Clone(stored)
				c.storeNames(slices.Concat(b.Steps, b.Otherwise), fmt.Sprintf("%s: branch %d: ", label, j+1), branch)
				for name, by := range branch {
					if _, ok := after[name]; !ok {
						after[name] = by
					}
				}
			}
			maps.Copy(stored, after)
		}
	}
}

// storedVars lists, sorted, the names f's steps store in vars: the as:
// names storeNames found (stored), set: vars.<name>, and the watermark.
// Never nil: a flow that stores none reads nothing from vars.
func storedVars(f *Flow, stored map[string]string) []string {
	names := slices.AppendSeq([]string{}, maps.Keys(stored))
	if f.Watermark != nil {
		names = append(names, "watermark")
	}
	var sets func([]Step)
	sets = func(steps []Step) {
		for _, s := range steps {
			switch {
			case s.Set != nil:
				for _, e := range *s.Set {
					if len(e.Path) > 1 && e.Path[0] == "vars" {
						names = append(names, e.Path[1])
					}
				}
			case s.Split != nil:
				sets(s.Split.Steps)
			case s.Choice != nil:
				for _, b := range s.Choice {
					sets(b.Steps)
					sets(b.Otherwise)
				}
			}
		}
	}
	sets(f.Steps)
	slices.Sort(names)
	return slices.Compact(names)
}

// asRE is a name an expression reads as vars.<name>, as set: paths spell
// their parts (ASCII).
var asRE = mustRE(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *checker) storeName(name string, at Pos, label string, stored map[string]string) {
	if at.Line == 0 {
		return // as: not written: the result is not kept
	}
	switch by, dup := stored[name]; {
	case name == "":
		c.add(at, label+": as: needs a name", "the response lands in vars.<as>: write a name such as as: erp, or leave as: out")
	case !asRE.MatchString(name):
		hint := "use letters, digits and _"
		if fixed := strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace(name); asRE.MatchString(fixed) {
			hint += ": such as " + fixed
		}
		c.add(at, fmt.Sprintf("%s: as: %q is not a name an expression can read as vars.%s", label, name, name), hint)
	case name == "watermark" && c.watermark:
		c.add(at, fmt.Sprintf("%s: as: %q would overwrite the flow's watermark, vars.watermark", label, name), "give the response another name")
	case dup:
		c.add(at, fmt.Sprintf("%s: as: %q is already where %s stores its result: this step would overwrite vars.%s", label, name, by, name),
			"give each step a name of its own; steps in different branches of a choice may share one")
	default:
		stored[name] = label
	}
}

func (c *checker) test(t TestCase) {
	if t.Expect.Outcome == "rejected" && len(t.Expect.Calls) > 0 {
		c.add(t.Expect.At, fmt.Sprintf("test %q: a rejected message makes no calls", t.Name), "")
	}
}

// ParseMocks decodes a mocks file: connection name -> a response or a
// list of successive responses, as under a test's mocks:.
func ParseMocks(file string, src []byte) (map[string]Mock, Diagnostics) {
	var m struct {
		Mocks map[string]Mock `yaml:"mocks" required:"true" desc:"Responses per connection"`
	}
	ds := decodeFile(file, append([]byte("mocks:\n"), indent(src)...), &m)
	for i := range ds {
		ds[i].Line-- // the wrapper line
		ds[i].Col -= 2
	}
	return m.Mocks, ds
}

func indent(src []byte) []byte {
	lines := strings.Split(string(src), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return []byte(strings.Join(lines, "\n"))
}
