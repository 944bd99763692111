// Package runtime is Conveyor's engine: loading a workspace, the live flow
// registry, workers, queues and stores. This file loads and compiles a
// workspace directory.
package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
)

// Workspace is a loaded workspace: its configuration, lookups, mappings,
// and every flow that compiled. Flows with diagnostics are absent from
// Flows and listed in Diagnostics.
type Workspace struct {
	Dir         string
	Config      *dsl.Config
	Lookups     *mappings.Lookups
	Compiler    *mappings.Compiler
	Mappings    map[string]*dsl.MappingFile
	Sources     map[string]*dsl.Flow   // every flow file that decoded, by id
	Flows       map[string]*flows.Flow // every flow that compiled, by id
	FlowFiles   map[string]string      // flow id -> file
	Raw         map[string][]byte      // flow id -> the file's bytes as compiled
	TestFiles   []*dsl.TestFile
	TestFlows   map[string]string // test file -> the flow it tests, also when the file has errors ("": unknown)
	Diagnostics dsl.Diagnostics
	// FlowDiags are the diagnostics that keep each flow from going live,
	// whichever file they point into (its own, or a mapping it uses).
	FlowDiags map[string]dsl.Diagnostics
	refused   map[string]refusal // flows that lost their route, by id (settleRoutes)
	read      map[string]bool    // flows whose file this load read: all of them, or the changed ones (withFlows)
	getenv    func(string) (string, bool)
	// broken are the diagnostics of the mapping files that do not
	// decode, by id: a flow using one names them.
	broken map[string]dsl.Diagnostics
	// shadowed are the flow files not loaded because another file holds
	// their flow id (flows/x.yaml and flows/x.yml), by file.
	shadowed map[string]shadow
}

// shadow is a flow file refused because another file holds its flow id.
type shadow struct {
	id   string
	diag dsl.Diagnostic
	now  bool // decided by this load (not kept from the one before): to be reported
}

// IsWorkspace reports whether dir looks like a workspace root.
func IsWorkspace(dir string) bool {
	for _, p := range []string{"conveyor.yaml", "flows"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return true
		}
	}
	return false
}

// LoadWorkspace reads and compiles the workspace at dir. Diagnostics of
// every file are collected; the returned workspace holds what is valid.
func LoadWorkspace(dir string, getenv func(string) (string, bool)) *Workspace {
	return loadWorkspace(dir, getenv, nil)
}

// loadWorkspace is LoadWorkspace; inForce, when set, is the configuration
// in force, taken instead of reading conveyor.yaml (a reload while a
// change to it is refused).
func loadWorkspace(dir string, getenv func(string) (string, bool), inForce *dsl.Config) *Workspace {
	ws := &Workspace{Dir: dir, Mappings: map[string]*dsl.MappingFile{}, Sources: map[string]*dsl.Flow{}, Flows: map[string]*flows.Flow{}, FlowFiles: map[string]string{}, Raw: map[string][]byte{}, FlowDiags: map[string]dsl.Diagnostics{}, TestFlows: map[string]string{}, broken: map[string]dsl.Diagnostics{}, read: map[string]bool{}, shadowed: map[string]shadow{}, getenv: getenv}
	ws.Config = &dsl.Config{}
	cfgPath := filepath.Join(dir, "conveyor.yaml")
	if inForce != nil {
		ws.Config = inForce
	} else if src, err := os.ReadFile(cfgPath); err == nil {
		cfg, ds := dsl.ParseConfig(cfgPath, src)
		ws.Config = cfg
		ws.Diagnostics = append(ws.Diagnostics, ds...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		ws.fileError(cfgPath, err)
	}
	lk, errs := mappings.LoadLookups(filepath.Join(dir, "lookups"))
	for _, err := range errs {
		d := dsl.Diagnostic{File: filepath.Join(dir, "lookups"), Message: err.Error()}
		if le, ok := errors.AsType[*mappings.LookupError](err); ok {
			d = dsl.Diagnostic{File: le.File, Line: le.Line, Col: le.Col, Message: "lookup table: " + le.Msg}
		}
		ws.Diagnostics = append(ws.Diagnostics, d)
	}
	ws.Lookups = lk
	ws.Compiler = mappings.NewCompiler(lk)
	for _, path := range ws.yamlFiles("mappings") {
		src, err := os.ReadFile(path)
		if err != nil {
			ws.fileError(path, err)
			continue
		}
		m, ds := dsl.ParseMapping(path, src)
		ws.Diagnostics = append(ws.Diagnostics, ds...)
		if len(ds) == 0 {
			ws.Mappings[m.ID] = m
		} else {
			ws.broken[m.ID] = ds
		}
	}
	files := ws.yamlFiles("flows")
	claims := map[string][]string{} // flow id -> the files named so
	for _, path := range files {
		id := dsl.FlowID(path)
		claims[id] = append(claims[id], path)
	}
	for _, path := range files {
		if id := dsl.FlowID(path); len(claims[id]) > 1 {
			if holder := claims[id][0]; holder != path {
				ws.shadow(path, id, holder)
				continue
			}
		}
		src, err := os.ReadFile(path)
		if err != nil {
			ws.fileError(path, err)
			continue
		}
		f, ds := dsl.ParseFlow(path, src)
		ws.Diagnostics = append(ws.Diagnostics, ds...)
		ws.FlowFiles[f.ID] = path
		ws.Raw[f.ID] = src
		ws.read[f.ID] = true
		if len(ds) == 0 {
			ws.Sources[f.ID] = f
		} else {
			ws.FlowDiags[f.ID] = ds
		}
	}
	ws.compileAll()
	ws.checkRoutes()
	for _, path := range ws.yamlFiles("tests") {
		src, err := os.ReadFile(path)
		if err != nil {
			ws.fileError(path, err)
			ws.TestFlows[path] = "" // whose tests these are, nobody can tell
			continue
		}
		t, ds := dsl.ParseTestFile(path, src)
		ws.Diagnostics = append(ws.Diagnostics, ds...)
		if t.Flow != "" || len(ds) > 0 {
			ws.TestFlows[path] = t.Flow // "": too broken to tell
		}
		if len(ds) == 0 {
			if _, ok := ws.FlowFiles[t.Flow]; !ok {
				ws.Diagnostics = append(ws.Diagnostics, dsl.Diagnostic{File: path, Line: t.At.Line, Col: t.At.Col, Message: fmt.Sprintf("flow: no flow %q in this workspace", t.Flow), Hint: dsl.DidYouMean(t.Flow, slices.Sorted(maps.Keys(ws.FlowFiles)))})
				continue
			}
			ws.TestFiles = append(ws.TestFiles, t)
		}
	}
	ws.Diagnostics.Sort()
	return ws
}

// shadow refuses file, whose flow id another file holds. Of the files
// named after one flow id (x.yaml, x.yml), the first by name holds it:
// every replica and every start decides alike.
func (ws *Workspace) shadow(file, id, holder string) {
	d := dsl.Diagnostic{File: file, Line: 1, Col: 1,
		Message: fmt.Sprintf("flow id %q already belongs to %s; this file is not loaded", id, filepath.Base(holder)),
		Hint:    "the file name without .yaml or .yml is the flow id: delete one of the two files, or rename it"}
	ws.Diagnostics = append(ws.Diagnostics, d)
	ws.shadowed[file] = shadow{id: id, diag: d, now: true}
}

// FlowEnv is what compiling a flow of this workspace needs.
func (ws *Workspace) FlowEnv(getenv func(string) (string, bool)) flows.Env {
	conns := make([]string, 0, len(ws.Config.Connections))
	var httpConns []string
	for name, c := range ws.Config.Connections {
		conns = append(conns, name)
		if c.HTTP != nil {
			httpConns = append(httpConns, name)
		}
	}
	return flows.Env{Compiler: ws.Compiler, Mappings: ws.Mappings, BrokenMappings: ws.broken, Connections: conns, HTTPConnections: httpConns, Getenv: getenv}
}

// compileAll compiles the decoded flows on every core.
func (ws *Workspace) compileAll() {
	ids := slices.Sorted(maps.Keys(ws.Sources))
	env := ws.FlowEnv(ws.getenv)
	results := make([]*flows.Flow, len(ids))
	diags := make([]dsl.Diagnostics, len(ids))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], diags[i] = flows.Compile(ws.Sources[ids[i]], env)
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, id := range ids {
		ws.Diagnostics = append(ws.Diagnostics, diags[i]...)
		if len(diags[i]) > 0 {
			ws.FlowDiags[id] = diags[i]
		}
		if results[i] != nil {
			ws.Flows[id] = results[i]
		}
	}
}

// checkRoutes refuses the later of two flows that claim one HTTP route or
// both watch one directory, where no flow serves one yet (lint, test, a
// start). The flows named in last (just changed) claim after every other.
func (ws *Workspace) checkRoutes(last ...string) { ws.settleRoutes(nil, last...) }

// refusal is a flow that compiled but lost its route to another flow.
type refusal struct {
	flow *flows.Flow
	diag dsl.Diagnostic
}

// settleRoutes gives every route (or file trigger directory) to one flow
// and refuses the others with a diagnostic. serving are the flows that
// serve now, by id. A flow whose serving revision goes on serving keeps
// that revision's route: its file is broken, or its new revision was
// refused (it wants a route that is taken). A flow that serves a route
// and still wants it claims before the rest, which claim by id, those in
// last after the others. A settlement replaces the one before it, so a
// refused flow takes a route once it is free, and a full reload never
// moves a route away from the flow that serves it.
func (ws *Workspace) settleRoutes(serving map[string]*flows.Flow, last ...string) {
	// Which new revisions are refused shows only once routes are given
	// out, and a refused one holds its serving revision's route, which
	// may refuse another: settle again until no more are held.
	held := map[string]bool{}
	for {
		ws.settleOnce(serving, held, last)
		more := false
		for id, r := range ws.refused {
			if s := serving[id]; s != nil && !held[id] && routeKey(s) != "" && routeKey(s) != routeKey(r.flow) {
				held[id], more = true, true
			}
		}
		if !more {
			return
		}
	}
}

// settleOnce is one settlement, the serving revisions of held flows (and
// of broken files) claiming first.
func (ws *Workspace) settleOnce(serving map[string]*flows.Flow, held map[string]bool, last []string) {
	for id, r := range ws.refused { // undo the last settlement
		ws.Flows[id] = r.flow
		ws.FlowDiags[id] = without(ws.FlowDiags[id], r.diag)
		if len(ws.FlowDiags[id]) == 0 {
			delete(ws.FlowDiags, id)
		}
		ws.Diagnostics = without(ws.Diagnostics, r.diag)
	}
	ws.refused = map[string]refusal{}
	claims := newRouteClaims()
	for _, id := range slices.Sorted(maps.Keys(serving)) {
		if _, compiled := ws.Flows[id]; !compiled || held[id] {
			claims.claim(id, serving[id]) // served side by side until now: no clash
		}
	}
	rank := func(id string) int {
		switch {
		case serving[id] != nil && routeKey(serving[id]) == routeKey(ws.Flows[id]):
			return 0
		case slices.Contains(last, id):
			return 2
		}
		return 1
	}
	order := slices.Sorted(maps.Keys(ws.Flows))
	sort.SliceStable(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	for _, id := range order {
		f := ws.Flows[id]
		if d, ok := claims.claim(id, f); !ok {
			ws.Diagnostics = append(ws.Diagnostics, d)
			ws.FlowDiags[id] = append(slices.Clip(ws.FlowDiags[id]), d) // a copy, as without makes
			ws.refused[id] = refusal{f, d}
			delete(ws.Flows, id)
		}
	}
	ws.Diagnostics.Sort()
}

// without returns a copy of ds without d: the slices may be shared with
// the workspace that serves meanwhile.
func without(ds dsl.Diagnostics, d dsl.Diagnostic) dsl.Diagnostics {
	var out dsl.Diagnostics
	for _, x := range ds {
		if x != d {
			out = append(out, x)
		}
	}
	return out
}

// routePattern makes /orders/{id} and /orders/{num} the same route.
func routePattern(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, "{") || strings.HasPrefix(s, ":") {
			parts[i] = "{}"
		}
	}
	return strings.Join(parts, "/")
}

// yamlFiles lists the .yaml and .yml files of the workspace's sub
// directory, sorted (see sourceFiles).
func (ws *Workspace) yamlFiles(sub string) []string { return sourceFiles(ws.Dir, sub) }

func (ws *Workspace) fileError(path string, err error) {
	ws.Diagnostics = append(ws.Diagnostics, dsl.Diagnostic{File: path, Message: err.Error()})
}
