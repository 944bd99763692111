package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
)

// startWatcher watches the workspace directories (not files: editors save
// by rename), debounces bursts of events, and rescans periodically in case
// an event was lost (overflow, network file systems).
func (e *Engine) startWatcher() error {
	e.hashes = e.scanFiles()
	e.forgetUnrecorded()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		e.goLoop(func() { e.rescanLoop(nil) })
		return err
	}
	for _, d := range e.watchDirs() {
		if err := w.Add(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("cannot watch directory", "dir", d, "error", err)
		}
	}
	e.goLoop(func() { e.rescanLoop(w); w.Close() })
	return nil
}

// sourceDirs are the workspace's directories a reload reads (beside
// conveyor.yaml).
var sourceDirs = []string{"flows", "mappings", "lookups"}

// watchDirs are the workspace and its sourceDirs.
func (e *Engine) watchDirs() []string {
	dirs := []string{e.opts.Workspace}
	for _, sub := range sourceDirs {
		dirs = append(dirs, filepath.Join(e.opts.Workspace, sub))
	}
	return dirs
}

const (
	debounce = 200 * time.Millisecond // quiet time after the last event of a burst
	// maxDebounce bounds the wait from a burst's first event: files that
	// change without pause must not hold a reload back for good.
	maxDebounce = time.Second
	settle      = 50 * time.Millisecond // a file modified more recently may be half written
)

// relevant reports whether an event on path can change what a reload
// builds: conveyor.yaml, anything in flows/, mappings/ or lookups/, and
// those directories themselves. Other files in the workspace (a log the
// server writes there, the data directory) change all the time.
func (e *Engine) relevant(path string) bool {
	dir := filepath.Clean(e.opts.Workspace)
	path = filepath.Clean(path)
	if path == filepath.Join(dir, "conveyor.yaml") {
		return true
	}
	for _, sub := range sourceDirs {
		d := filepath.Join(dir, sub)
		if path == d || filepath.Dir(path) == d {
			return true
		}
	}
	return false
}

// rescanLoop reloads after bursts of events from w (nil: no watcher) and
// on every tick.
func (e *Engine) rescanLoop(w *fsnotify.Watcher) {
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	tick := time.NewTicker(e.opts.RescanInterval)
	defer tick.Stop()
	var fire <-chan time.Time
	var timer *time.Timer
	var first time.Time // the first event of the burst fire waits for
	for {
		select {
		case <-e.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op&fsnotify.Create != 0 {
				// flows/, mappings/ or lookups/ created after the start.
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					for _, d := range e.watchDirs() {
						if filepath.Clean(d) == filepath.Clean(ev.Name) {
							if err := w.Add(d); err != nil {
								e.log.Warn("cannot watch directory", "dir", d, "error", err)
							} else {
								e.log.Info("watching new directory", "dir", d)
							}
						}
					}
				}
			}
			if !e.relevant(ev.Name) {
				continue
			}
			wait := debounce
			if fire == nil {
				first = time.Now()
			} else if left := maxDebounce - time.Since(first); left < wait {
				wait = max(left, 0)
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			e.log.Warn("file watcher error; rescanning", "error", err)
			e.Reload()
		case <-fire:
			fire = nil
			e.Reload()
		case <-tick.C:
			e.Reload()
		}
	}
}

// fileStamp is a file as scanFiles last hashed it.
type fileStamp struct {
	size        int64
	mod, hashed time.Time
	hash        string
}

// racyWindow: a file hashed less than this after its modification time
// is hashed again on the next scan, however it looks then. A second write
// within the file system's timestamp resolution (up to 2 s) could leave
// size and modification time as they were.
const racyWindow = 2 * time.Second

// scanFiles hashes every file a reload depends on. A file whose size and
// modification time are those it had when it was last hashed, well after
// it was written, keeps that hash without being read again: the periodic
// rescan no longer reads every flow, mapping and lookup table (a product
// catalogue can be many megabytes) every few seconds. Called under
// reloadM, or before the watcher starts.
func (e *Engine) scanFiles() map[string]string {
	out := map[string]string{}
	stamps := make(map[string]fileStamp, len(e.stamps))
	dir := e.opts.Workspace
	add := func(path string) {
		info, err := os.Stat(path)
		if err != nil {
			return
		}
		st, ok := e.stamps[path]
		if !ok || st.size != info.Size() || !st.mod.Equal(info.ModTime()) || st.hashed.Sub(st.mod) < racyWindow {
			hashed := time.Now()
			b, err := os.ReadFile(path)
			if err != nil {
				return
			}
			h := sha256.Sum256(b)
			st = fileStamp{size: info.Size(), mod: info.ModTime(), hashed: hashed, hash: hex.EncodeToString(h[:])}
		}
		out[path], stamps[path] = st.hash, st
	}
	add(filepath.Join(dir, "conveyor.yaml"))
	for _, sub := range sourceDirs {
		for _, path := range sourceFiles(dir, sub) {
			add(path)
		}
	}
	e.stamps = stamps
	return out
}

// sourceFiles lists, sorted, the files of the workspace dir's sub
// directory that a load reads: lookups/*.csv, and *.yaml or *.yml in the
// others (a CSV kept beside the flows is no flow). Hidden files (an
// editor's lock file, such as emacs's .#orders.yaml) are none. The loader
// and the watcher both list files here, so they see the same ones.
func sourceFiles(dir, sub string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, sub))
	var out []string
	for _, en := range entries {
		name := en.Name()
		if en.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		ext := filepath.Ext(name)
		read := ext == ".yaml" || ext == ".yml"
		if sub == "lookups" {
			read = ext == ".csv"
		}
		if read {
			out = append(out, filepath.Join(dir, sub, name))
		}
	}
	return out // os.ReadDir sorts by name
}

// Reload applies what changed on disk since the last load: a changed flow
// file recompiles that flow; a changed mapping, lookup or connection
// recompiles every flow. Each flow swaps atomically or, when it has
// errors, keeps its previous revision. Byte-identical files are skipped.
func (e *Engine) Reload() {
	e.reloadM.Lock()
	defer e.reloadM.Unlock()
	if e.ctx.Err() != nil {
		return
	}
	files := e.scanFiles()
	var changed []string
	shared := false
	settling, vanishing := false, false
	for p, h := range files {
		if e.hashes[p] == h {
			continue
		}
		// A file written in the last moments may be half written (editors
		// and os.WriteFile truncate first): look again once it settles.
		if info, err := os.Stat(p); err == nil && recent(info.ModTime()) {
			files[p], settling = e.hashes[p], true
			continue
		}
		changed = append(changed, p)
	}
	for p, h := range e.hashes {
		if _, ok := files[p]; ok {
			continue
		}
		// A file gone from a directory changed in the last moments may be
		// being replaced (vim renames it to a backup and writes a new one,
		// git checkout unlinks and writes): look again once it settles
		// rather than stop its flow in between.
		if info, err := os.Stat(filepath.Dir(p)); err == nil && recent(info.ModTime()) {
			files[p], settling, vanishing = h, true, true
			continue
		}
		changed = append(changed, p)
	}
	if settling {
		time.AfterFunc(settle, e.Reload)
	}
	if len(changed) == 0 {
		return
	}
	for _, p := range changed {
		if !isFlowFile(e.opts.Workspace, p) {
			shared = true
		}
	}
	if shared && vanishing {
		// A full load reads the directories as they are now, without the
		// file being replaced: its flow would stop, and stay stopped once
		// the file is back unchanged (its hash is kept). The reload after
		// the settle applies it all.
		return
	}
	e.hashes = files
	e.mu.RLock()
	prev := e.ws
	e.mu.RUnlock()
	configChanged := false
	for _, p := range changed {
		configChanged = configChanged || filepath.Base(p) == "conveyor.yaml"
	}
	var ws *Workspace
	if shared {
		// While a change to conveyor.yaml is refused, the configuration in
		// force stays in force for the flows too: they compile against
		// the connections that serve, not against the refused file.
		var inForce *dsl.Config
		if !configChanged && e.configErr.Load() != nil {
			inForce = prev.Config
		}
		ws = loadWorkspace(e.opts.Workspace, e.opts.Getenv, inForce)
		if configChanged && !e.reloadConfig(prev, ws) {
			// keep the previous configuration and connections; the
			// mappings and lookups saved with it still apply (their
			// hashes are recorded: no later scan would apply them)
			ws = loadWorkspace(e.opts.Workspace, e.opts.Getenv, prev.Config)
		}
	} else {
		ws = prev.withFlows(e.opts.Workspace, changed, e.opts.Getenv)
	}
	e.log.Info("workspace changed", "files", changed)
	e.applyWorkspace(ws, "file")
	e.forgetUnrecorded()
}

// recent reports whether a modification at t was in the last moments
// (settle). A time further ahead of this machine's clock (a network
// share's server clock, an archive made elsewhere) tells nothing of that:
// such a file is taken as it is, and a write still under way sends
// events of its own.
func recent(t time.Time) bool {
	age := time.Since(t)
	return age > -settle && age < settle
}

// isFlowFile reports whether path is a file of the workspace dir's flows/
// directory; the workspace itself may lie under a directory named flows.
func isFlowFile(dir, path string) bool {
	return filepath.Dir(filepath.Clean(path)) == filepath.Join(filepath.Clean(dir), "flows")
}

// reloadConfig checks a changed conveyor.yaml: static settings cannot
// change at run time; connections are rebuilt. It reports whether ws may
// be applied.
func (e *Engine) reloadConfig(prev, ws *Workspace) bool {
	refuse := func(result, msg string) bool {
		e.metrics.reloads.WithLabelValues("conveyor.yaml", result).Inc()
		e.log.Error(msg)
		e.configErr.Store(&msg)
		return false
	}
	if ds := configDiagnostics(ws); len(ds) > 0 {
		return refuse("failed", "conveyor.yaml not reloaded: "+ds.Error())
	}
	old, now := staticOf(prev.Config), staticOf(ws.Config)
	if old != now {
		field, from, to := staticDiff(old, now)
		return refuse("refused", fmt.Sprintf("reload not supported for %s: %q -> %q (restart to apply)", field, from, to))
	}
	conns, err := e.buildConnections(ws.Config)
	if err != nil {
		return refuse("failed", "conveyor.yaml not reloaded: "+err.Error())
	}
	e.configErr.Store(nil)
	e.mu.Lock()
	old2 := e.conns
	e.conns = conns
	e.mu.Unlock()
	for _, c := range old2 {
		c.Close()
	}
	return true
}

func staticDiff(a, b staticConfig) (string, string, string) {
	switch {
	case a.listen != b.listen:
		return "listen", a.listen, b.listen
	case a.adminListen != b.adminListen:
		return "admin_listen", a.adminListen, b.adminListen
	case a.backend != b.backend:
		return "store.backend", a.backend, b.backend
	case a.path != b.path:
		return "store.path", a.path, b.path
	case a.failOpen != b.failOpen:
		return "store.fail_open", a.failOpen, b.failOpen
	case a.retention != b.retention:
		return "store.retention", a.retention, b.retention
	}
	return "store.url", "(hidden)", "(hidden)"
}

// withFlows returns a copy of ws with the given flow files re-read (or
// dropped when gone, their flow id then going to another file named after
// it, if any); other flows keep their compiled programs.
func (ws *Workspace) withFlows(dir string, changed []string, getenv func(string) (string, bool)) *Workspace {
	out := *ws
	out.Sources, out.Flows, out.FlowFiles, out.Raw = map[string]*dsl.Flow{}, map[string]*flows.Flow{}, map[string]string{}, map[string][]byte{}
	out.read = map[string]bool{}
	isChanged := map[string]bool{}
	for _, p := range changed {
		isChanged[filepath.Clean(p)] = true
	}
	for id, f := range ws.FlowFiles {
		if isChanged[filepath.Clean(f)] {
			continue
		}
		out.FlowFiles[id] = f
		out.Raw[id] = ws.Raw[id]
		if s := ws.Sources[id]; s != nil {
			out.Sources[id] = s
		}
		if f := ws.Flows[id]; f != nil {
			out.Flows[id] = f
		}
	}
	out.FlowDiags = map[string]dsl.Diagnostics{}
	for id, ds := range ws.FlowDiags {
		if !isChanged[filepath.Clean(ws.FlowFiles[id])] {
			out.FlowDiags[id] = ds
		}
	}
	out.refused = map[string]refusal{}
	for id, r := range ws.refused {
		if !isChanged[filepath.Clean(ws.FlowFiles[id])] {
			out.refused[id] = r
		}
	}
	out.Diagnostics = nil
	for _, d := range ws.Diagnostics {
		if !isChanged[filepath.Clean(d.File)] {
			out.Diagnostics = append(out.Diagnostics, d)
		}
	}
	// The flow id of a changed file is settled again between the files
	// named after it (x.yaml, x.yml): the first by name holds it, the
	// rest are refused (see Workspace.shadow).
	ids := map[string]bool{}
	for _, p := range changed {
		if isFlowFile(dir, p) {
			ids[dsl.FlowID(p)] = true
		}
	}
	out.shadowed = map[string]shadow{}
	for p, sh := range ws.shadowed {
		if ids[sh.id] {
			out.Diagnostics = without(out.Diagnostics, sh.diag)
			continue
		}
		sh.now = false // reported when it was decided
		out.shadowed[p] = sh
	}
	claims := map[string][]string{}
	for _, p := range sourceFiles(dir, "flows") {
		if id := dsl.FlowID(p); ids[id] {
			claims[id] = append(claims[id], p)
		}
	}
	env := out.FlowEnv(getenv)
	var fresh []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		holder := ""
		if len(claims[id]) > 0 {
			holder = claims[id][0] // see Workspace.shadow
		}
		for _, p := range claims[id] {
			if p != holder {
				out.shadow(p, id, holder)
			}
		}
		if holder == "" {
			continue // removed
		}
		if filepath.Clean(holder) == filepath.Clean(ws.FlowFiles[id]) && !isChanged[filepath.Clean(holder)] {
			continue // serves on as it was
		}
		p := holder // changed, or taking the flow over from a file gone
		src, err := os.ReadFile(p)
		if err != nil {
			continue // removed meanwhile
		}
		df, ds := dsl.ParseFlow(p, src)
		out.FlowFiles[df.ID] = p
		out.Raw[df.ID] = src
		out.read[df.ID] = true
		out.Diagnostics = append(out.Diagnostics, ds...)
		if len(ds) > 0 {
			out.FlowDiags[df.ID] = ds
			continue
		}
		out.Sources[df.ID] = df
		f, ds := flows.Compile(df, env)
		out.Diagnostics = append(out.Diagnostics, ds...)
		if len(ds) > 0 {
			out.FlowDiags[df.ID] = ds
		}
		if f != nil {
			out.Flows[df.ID] = f
			fresh = append(fresh, df.ID)
		}
	}
	out.checkRoutes(fresh...)
	return &out
}
