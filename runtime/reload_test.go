package runtime_test

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
)

const echoV1 = "trigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: 1, id: body.id}'}}]\n"
const echoV2 = "trigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: 2, id: body.id}'}}]\n"
const echoBroken = "trigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: 3, id: bdy.id}'}}]\n"

// A broken save under load keeps the old revision serving with no failed
// request; the fixed file goes live within a second.
func TestBrokenSaveUnderLoadKeepsServing(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/echo"
	file := filepath.Join(dir, "flows", "echo.yaml")

	var failed, total atomic.Int64
	var seenV2 atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"id": %d}`, i)))
				total.Add(1)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					if resp != nil {
						resp.Body.Close()
					}
					continue
				}
				var b [64]byte
				n, _ := resp.Body.Read(b[:])
				resp.Body.Close()
				if strings.Contains(string(b[:n]), `"v":2`) {
					seenV2.Store(true)
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	must(t, os.WriteFile(file, []byte(echoBroken), 0o644))
	// os.WriteFile truncates first: a reload between the truncation and
	// the write (slow under the race detector) reports "file is empty"
	// before the broken content's own diagnostic. Either keeps revision 1.
	eventually(t, 2*time.Second, "the broken save to be reported", func() bool {
		fi, _ := e.Flow("echo")
		if fi.Status == runtime.StatusError && fi.Revision != 1 {
			t.Errorf("revision %d while the file is broken; want 1 serving", fi.Revision)
		}
		return fi.Status == runtime.StatusError && len(fi.Diagnostics) > 0 &&
			strings.Contains(fi.Diagnostics[0].String(), `unknown name "bdy" (did you mean "body"?)`)
	})
	time.Sleep(300 * time.Millisecond)
	fixed := time.Now()
	must(t, os.WriteFile(file, []byte(echoV2), 0o644))
	eventually(t, time.Second, "the fixed file to go live within 1 s", seenV2.Load)
	t.Logf("fixed revision live after %s", time.Since(fixed))
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during reloads", failed.Load(), total.Load())
	}
	if fi, _ := e.Flow("echo"); fi.Revision != 2 || fi.Status != runtime.StatusActive {
		t.Errorf("after the fix: revision %d status %s", fi.Revision, fi.Status)
	}
}

// A deleted file stops its flow (404) and keeps its queue; static settings
// are refused at reload.
func TestDeleteStopsFlowAndStaticSettingsAreRefused(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/echo"
	if s, _ := post(t, url, `{}`); s != 200 {
		t.Fatalf("status %d", s)
	}
	cfg := filepath.Join(dir, "conveyor.yaml")
	old, _ := os.ReadFile(cfg)
	must(t, os.WriteFile(cfg, append(old, []byte("store: {path: elsewhere}\n")...), 0o644))
	must(t, os.Remove(filepath.Join(dir, "flows", "echo.yaml")))
	eventually(t, 2*time.Second, "the flow to stop", func() bool {
		s, _ := post(t, url, `{}`)
		return s == 404
	})
	e.Reload()
	if _, ok := e.Flow("echo"); ok {
		t.Errorf("deleted flow still listed")
	}
	eventually(t, 2*time.Second, "the store change refused", func() bool {
		return strings.Contains(e.ConfigError(), `reload not supported for store.path: "" -> "elsewhere"`)
	})
	// Two flows claiming one path: the later one is refused.
	must(t, os.WriteFile(filepath.Join(dir, "flows", "a.yaml"), []byte(echoV1), 0o644))
	eventually(t, 2*time.Second, "flow a", func() bool { s, _ := post(t, url, `{}`); return s == 200 })
	must(t, os.WriteFile(filepath.Join(dir, "flows", "b.yaml"), []byte(echoV2), 0o644))
	eventually(t, 2*time.Second, "flow b refused", func() bool {
		fi, _ := e.Flow("b")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "a"`)
	})
}

// A changed mapping file recompiles the flows that use it; a broken one
// leaves them on their previous revision.
func TestMappingChangeRecompilesUsers(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"quote": "trigger: {http: {path: /q, mode: sync}}\nsteps: [{map: {use: money}}, {respond: {}}]\n"})
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	mapping := filepath.Join(dir, "mappings", "money.yaml")
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)'}\n"), 0o644))
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/q"
	if s, out := post(t, url, `{"a": "1.50"}`); s != 200 || out["amount"] != "1.50" {
		t.Fatalf("%d %v", s, out)
	}
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'dec_round(body.a, 1)', currency: '\"EUR\"'}\n"), 0o644))
	eventually(t, 2*time.Second, "the new mapping", func() bool {
		_, out := post(t, url, `{"a": "1.55"}`)
		return out["amount"] == "1.6" && out["currency"] == "EUR"
	})
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'dec_round(bdy.a, 1)'}\n"), 0o644))
	eventually(t, 2*time.Second, "the broken mapping reported", func() bool {
		fi, _ := e.Flow("quote")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), "mappings/money.yaml:1:26: unknown name \"bdy\"")
	})
	if _, out := post(t, url, `{"a": "2.25"}`); out["currency"] != "EUR" {
		t.Errorf("the previous revision stopped serving: %v", out)
	}
}

// A mappings/ directory created while serving is watched: a mapping saved
// in it is picked up by its event, long before the periodic rescan.
func TestNewDirectoryIsWatched(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"quote": "trigger: {http: {path: /q, mode: sync}}\nsteps: [{map: {use: money}}, {respond: {}}]\n"})
	e := start(t, dir, runtime.Options{RescanInterval: time.Hour})
	if fi, _ := e.Flow("quote"); fi.Status != runtime.StatusError {
		t.Fatalf("without its mapping the flow is %s", fi.Status)
	}
	must(t, os.Mkdir(filepath.Join(dir, "mappings"), 0o755))
	time.Sleep(300 * time.Millisecond) // the directory's create event
	must(t, os.WriteFile(filepath.Join(dir, "mappings", "money.yaml"), []byte("map: {amount: 'decimal(body.a)'}\n"), 0o644))
	eventually(t, 3*time.Second, "the flow live with the new mapping", func() bool {
		_, out := post(t, "http://"+e.TriggerAddr()+"/q", `{"a": "1.50"}`)
		return out["amount"] == "1.50"
	})
}

// A file in the workspace that changes without pause (a log the server
// writes there) does not hold hot reload back: a saved flow goes live
// within a second.
func TestBusyWorkspaceFileDoesNotHoldReloadBack(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"ping": "trigger: {http: {path: /p, mode: sync}}\nsteps: [{respond: {body: '\"a\"'}}]\n"})
	e := start(t, dir, runtime.Options{RescanInterval: time.Hour})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a log written every 20 ms, in the workspace root
		defer close(done)
		f, err := os.Create(filepath.Join(dir, "conveyor.log"))
		if err != nil {
			return
		}
		defer f.Close()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				f.WriteString("a log line\n")
			}
		}
	}()
	defer func() { close(stop); <-done }()
	time.Sleep(100 * time.Millisecond)
	saved := time.Now()
	must(t, os.WriteFile(filepath.Join(dir, "flows", "ping.yaml"), []byte("trigger: {http: {path: /p, mode: sync}}\nsteps: [{respond: {body: '\"b\"'}}]\n"), 0o644))
	for {
		resp, err := http.Post("http://"+e.TriggerAddr()+"/p", "application/json", strings.NewReader(`{}`))
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) == `"b"` {
			break
		}
		if time.Since(saved) > 1500*time.Millisecond {
			t.Fatalf("the saved flow is not live %s after the save (answer %s)", time.Since(saved).Round(time.Millisecond), b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("live %s after the save", time.Since(saved).Round(time.Millisecond))
}

// A lookup file rewritten without pause (an export job) does not hold a
// flow's save back: the debounce waits for quiet, but not for ever.
func TestEndlessLookupWritesDoNotHoldAFlowBack(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"ping": "trigger: {http: {path: /p, mode: sync}}\nsteps: [{respond: {body: '\"a\"'}}]\n"})
	must(t, os.Mkdir(filepath.Join(dir, "lookups"), 0o755))
	e := start(t, dir, runtime.Options{RescanInterval: time.Hour})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			_ = os.WriteFile(filepath.Join(dir, "lookups", "stock.csv"), fmt.Appendf(nil, "sku,qty\nA,%d\n", i), 0o644)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-done }()
	time.Sleep(100 * time.Millisecond)
	saved := time.Now()
	must(t, os.WriteFile(filepath.Join(dir, "flows", "ping.yaml"), []byte("trigger: {http: {path: /p, mode: sync}}\nsteps: [{respond: {body: '\"b\"'}}]\n"), 0o644))
	eventually(t, 2*time.Second, "the saved flow live", func() bool {
		resp, err := http.Post("http://"+e.TriggerAddr()+"/p", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.TrimSpace(string(b)) == `"b"`
	})
	if d := time.Since(saved); d > 1500*time.Millisecond {
		t.Errorf("live %s after the save; want about a second at most", d.Round(time.Millisecond))
	}
}

// A flow whose file broke keeps serving its previous revision, and its
// route with it: a new flow claiming the route is refused. Both used to
// go live, and which one answered changed with every rebuild of the
// routes.
func TestBrokenFlowKeepsItsRoute(t *testing.T) {
	flow := func(who string) string {
		return "trigger: {http: {path: /x, mode: sync}}\nsteps: [{respond: {status: 200, body: '{who: \"" + who + "\"}'}}]\n"
	}
	dir := workspace(t, nil, map[string]string{"a": flow("a")})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/x"
	must(t, os.WriteFile(filepath.Join(dir, "flows", "a.yaml"), []byte("trigger: {http: {path: /x, mode: sync}\n"), 0o644))
	eventually(t, 2*time.Second, "a broken, still serving", func() bool {
		fi, _ := e.Flow("a")
		return fi.Status == runtime.StatusError && fi.Revision == 1
	})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "b.yaml"), []byte(flow("b")), 0o644))
	eventually(t, 2*time.Second, "b refused", func() bool {
		fi, _ := e.Flow("b")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "a"`)
	})
	e.Reload() // the routes are rebuilt once more
	for i := range 20 {
		if s, out := post(t, url, `{}`); s != 200 || out["who"] != "a" {
			t.Fatalf("request %d: %d %v; want a's previous revision", i, s, out)
		}
	}
}

// A flow refused because another flow holds its route takes the route
// over when that flow goes; and a change elsewhere in the workspace (a
// full reload) never moves a route from the flow that serves it to the
// one that waits for it, whatever their names.
func TestRefusedFlowTakesTheRouteWhenItIsFree(t *testing.T) {
	flow := func(who string) string {
		return "trigger: {http: {path: /x, mode: sync}}\nsteps: [{respond: {status: 200, body: '{who: \"" + who + "\"}'}}]\n"
	}
	dir := workspace(t, nil, map[string]string{"zeta": flow("zeta")})
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/x"
	who := func() any { _, out := post(t, url, `{}`); return out["who"] }
	if w := who(); w != "zeta" {
		t.Fatalf("who = %v", w)
	}
	must(t, os.WriteFile(filepath.Join(dir, "flows", "alpha.yaml"), []byte(flow("alpha")), 0o644))
	eventually(t, 2*time.Second, "alpha refused", func() bool {
		fi, _ := e.Flow("alpha")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "zeta"`)
	})
	// a shared file changes: the whole workspace is loaded again
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "mappings", "m.yaml"), []byte("map: {a: body.a}\n"), 0o644))
	e.Reload()
	time.Sleep(300 * time.Millisecond) // past the settle time of the new file
	e.Reload()
	for i := range 10 {
		if w := who(); w != "zeta" {
			t.Fatalf("request %d after a full reload: who = %v; want zeta, which held the route", i, w)
		}
	}
	if fi, _ := e.Flow("alpha"); fi.Status != runtime.StatusError || !strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "zeta"`) {
		t.Fatalf("alpha: %s %v; want still refused", fi.Status, fi.Diagnostics)
	}
	if fi, _ := e.Flow("zeta"); fi.Status == runtime.StatusError || len(fi.Diagnostics) > 0 {
		t.Fatalf("zeta: %s %v; want live without diagnostics", fi.Status, fi.Diagnostics)
	}
	// the holder goes: the waiting flow takes the route
	must(t, os.Remove(filepath.Join(dir, "flows", "zeta.yaml")))
	eventually(t, 2*time.Second, "alpha live on /x", func() bool { return who() == "alpha" })
	if fi, _ := e.Flow("alpha"); fi.Status == runtime.StatusError || len(fi.Diagnostics) > 0 {
		t.Fatalf("alpha: %s %v", fi.Status, fi.Diagnostics)
	}
}

// alpha serves /y; its file is edited to claim /x, which zeta holds: the
// edit is refused and alpha's previous revision keeps serving /y, and
// with it /y. A new flow carol on /y is then refused, rather than going
// live beside alpha (the mux then gives /y to either, reload to reload).
func TestRefusedEditKeepsItsServingRoute(t *testing.T) {
	flow := func(path, who string) string {
		return "trigger: {http: {path: " + path + ", mode: sync}}\nsteps: [{respond: {status: 200, body: '{who: \"" + who + "\"}'}}]\n"
	}
	dir := workspace(t, nil, map[string]string{"zeta": flow("/x", "zeta"), "alpha": flow("/y", "alpha")})
	e := start(t, dir, runtime.Options{})
	who := func(p string) any { _, out := post(t, "http://"+e.TriggerAddr()+p, `{}`); return out["who"] }
	must(t, os.WriteFile(filepath.Join(dir, "flows", "alpha.yaml"), []byte(flow("/x", "alpha2")), 0o644))
	eventually(t, 2*time.Second, "alpha's edit refused", func() bool {
		fi, _ := e.Flow("alpha")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "zeta"`)
	})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "carol.yaml"), []byte(flow("/y", "carol")), 0o644))
	eventually(t, 2*time.Second, "carol refused", func() bool {
		fi, _ := e.Flow("carol")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `already claimed by flow "alpha"`)
	})
	for i := range 3 { // other reloads rebuild the routes
		must(t, os.WriteFile(filepath.Join(dir, "flows", "other.yaml"), []byte(flow(fmt.Sprintf("/o%d", i), "o")), 0o644))
		time.Sleep(300 * time.Millisecond)
		e.Reload()
		for range 5 {
			if w := who("/y"); w != "alpha" {
				t.Fatalf("reload %d: /y answered by %v; want alpha's serving revision", i, w)
			}
		}
	}
}

// Two flows whose paths overlap, neither more specific (/a/{x} and
// /{y}/b both match /a/b), cannot be served side by side: the later is
// refused with a diagnostic, and the earlier serves, reload after reload.
// Both used to report themselves live while net/http refused one of them,
// drawn anew on every reload, which then answered 404.
func TestOverlappingRoutesRefuseTheLaterFlow(t *testing.T) {
	flow := func(path string, v int) string {
		return fmt.Sprintf("trigger: {http: {path: %q, mode: sync}}\nsteps: [{respond: {body: '{v: %d}'}}]\n", path, v)
	}
	dir := workspace(t, nil, map[string]string{"p1": flow("/a/{x}", 1), "p2": flow("/{y}/b", 2)})
	e := start(t, dir, runtime.Options{})
	fi, _ := e.Flow("p2")
	if fi.Status != runtime.StatusError || !strings.Contains(fi.Diagnostics.Error(), `POST /{}/b overlaps POST /a/{} of flow "p1"`) {
		t.Fatalf("p2: %s %v; want refused for overlapping p1", fi.Status, fi.Diagnostics)
	}
	for i := range 8 {
		if s, out := post(t, "http://"+e.TriggerAddr()+"/a/zzz", `{}`); s != 200 || out["v"] != 1.0 {
			t.Fatalf("reload %d: POST /a/zzz: %d %v; want p1's answer", i, s, out)
		}
		must(t, os.WriteFile(filepath.Join(dir, "flows", "p2.yaml"), []byte(flow("/{y}/b", 3+i)), 0o644))
		e.Reload()
	}
	// Freed, the route goes to p2.
	must(t, os.Remove(filepath.Join(dir, "flows", "p1.yaml")))
	e.Reload()
	eventually(t, 2*time.Second, "p2 live once p1 is gone", func() bool {
		s, out := post(t, "http://"+e.TriggerAddr()+"/zzz/b", `{}`)
		return s == 200 && out["v"] == 10.0
	})
}

// conveyor_reloads_total{result="failed"} counts failed reloads of a flow:
// saving another flow is no reload of the broken one and must not count
// against it again.
func TestReloadFailuresCountedOncePerSave(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"echo":   echoV1,
		"broken": strings.Replace(echoBroken, "/echo", "/broken", 1),
	})
	e := start(t, dir, runtime.Options{})
	want := `conveyor_reloads_total{flow="broken",result="failed"} 1`
	if m := scrapeMetrics(t, e); !strings.Contains(m, want) {
		t.Fatalf("at start: /metrics lacks %s", want)
	}
	file := filepath.Join(dir, "flows", "echo.yaml")
	for i, src := range []string{echoV2, echoV1, echoV2} {
		must(t, os.WriteFile(file, []byte(src), 0o644))
		eventually(t, 5*time.Second, "echo to reload", func() bool {
			fi, _ := e.Flow("echo")
			return fi.Revision == i+2
		})
		time.Sleep(300 * time.Millisecond)
	}
	m := scrapeMetrics(t, e)
	if !strings.Contains(m, want) {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "conveyor_reloads_total") {
				t.Log(line)
			}
		}
		t.Errorf("after three saves of another flow: /metrics lacks %s", want)
	}
}

// conveyor_flow_revision is "the live revision of each flow (0 while it
// has none)": a flow whose file was deleted has no live revision.
func TestRevisionGaugeClearedWhenFlowDeleted(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	if m := scrapeMetrics(t, e); !strings.Contains(m, `conveyor_flow_revision{flow="echo"} 1`) {
		t.Fatalf("at start: no revision 1 for echo")
	}
	must(t, os.Remove(filepath.Join(dir, "flows", "echo.yaml")))
	eventually(t, 5*time.Second, "echo to stop", func() bool { _, ok := e.Flow("echo"); return !ok })
	if m := scrapeMetrics(t, e); strings.Contains(m, `conveyor_flow_revision{flow="echo"} 1`) {
		t.Errorf("the deleted flow still reports revision 1 as live")
	}
}

// A new revision whose path overlaps both its own serving revision's and
// another flow's is refused for the other flow, and both keep serving.
// The check stopped at the flow's own route, so such a revision went live
// and one of the two routes answered 404, drawn anew at every reload.
func TestNewRevisionOverlappingItsOwnAndAnothersRouteIsRefused(t *testing.T) {
	flow := func(path string, v int) string {
		return fmt.Sprintf("trigger: {http: {path: %q, mode: sync}}\nsteps: [{respond: {body: '{v: %d}'}}]\n", path, v)
	}
	dir := workspace(t, nil, map[string]string{"b": flow("/x/{q}", 1), "z": flow("/a/{x}", 2)})
	e := start(t, dir, runtime.Options{})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "b.yaml"), []byte(flow("/{y}/b", 3)), 0o644))
	e.Reload()
	eventually(t, 3*time.Second, "b's new revision refused for overlapping z", func() bool {
		fi, _ := e.Flow("b")
		return fi.Status == runtime.StatusError && strings.Contains(fi.Diagnostics.Error(), `of flow "z"`)
	})
	for i := range 10 {
		if s, out := post(t, "http://"+e.TriggerAddr()+"/a/zzz", `{}`); s != 200 || out["v"] != 2.0 {
			t.Fatalf("reload %d: POST /a/zzz: %d %v; want z's answer", i, s, out)
		}
		if s, out := post(t, "http://"+e.TriggerAddr()+"/x/y", `{}`); s != 200 || out["v"] != 1.0 {
			t.Fatalf("reload %d: POST /x/y: %d %v; want b's serving revision", i, s, out)
		}
		must(t, os.WriteFile(filepath.Join(dir, "flows", "z.yaml"), []byte(flow("/a/{x}", 2)+fmt.Sprintf("# edit %d\n", i)), 0o644))
		e.Reload()
	}
}

// A workspace that lives under a directory named flows (/srv/flows/acme)
// reloads a saved mapping as a mapping: every path of the workspace holds
// "/flows/", which made each changed file look like a flow file.
func TestWorkspaceUnderAFlowsDirectoryReloadsMappings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "flows", "acme")
	for _, sub := range []string{"flows", "mappings"} {
		must(t, os.MkdirAll(filepath.Join(dir, sub), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), []byte("connections: {}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "flows", "quote.yaml"), []byte("trigger: {http: {path: /q, mode: sync}}\nsteps: [{map: {use: money}}, {respond: {}}]\n"), 0o644))
	mapping := filepath.Join(dir, "mappings", "money.yaml")
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)'}\n"), 0o644))
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/q"
	if s, out := post(t, url, `{"a": "1.50"}`); s != 200 || out["amount"] != "1.50" {
		t.Fatalf("%d %v", s, out)
	}
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)', currency: '\"EUR\"'}\n"), 0o644))
	eventually(t, 3*time.Second, "the new mapping live", func() bool {
		_, out := post(t, url, `{"a": "1.50"}`)
		return out["currency"] == "EUR"
	})
	if fi, ok := e.Flow("money"); ok {
		t.Errorf("the mapping file is listed as a flow: %+v", fi)
	}
}

// While a change to conveyor.yaml is refused, the configuration in force
// stays in force for the flows too: a mapping saved afterwards recompiles
// its flows against the connections that serve, not against the refused
// file (here: unparsable, so no connection at all).
func TestMappingSavedWhileConfigRefusedUsesTheConfigInForce(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"quote": "trigger: {http: {path: /q, mode: sync}}\n" +
		"steps:\n  - map: {use: money}\n  - choice: [{when: 'false', steps: [{call: {connection: erp, path: /x}}]}]\n  - respond: {}\n"})
	cfg := filepath.Join(dir, "conveyor.yaml")
	must(t, os.WriteFile(cfg, []byte("connections:\n  erp: {http: {base_url: \"http://127.0.0.1:1\"}}\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	mapping := filepath.Join(dir, "mappings", "money.yaml")
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)'}\n"), 0o644))
	e := start(t, dir, runtime.Options{})
	url := "http://" + e.TriggerAddr() + "/q"
	if s, out := post(t, url, `{"a": "1.50"}`); s != 200 || out["amount"] != "1.50" {
		t.Fatalf("%d %v", s, out)
	}
	must(t, os.WriteFile(cfg, []byte("connections:\n  erp: {http: {base_url: \"http://127.0.0.1:1\"\n"), 0o644))
	eventually(t, 3*time.Second, "the broken conveyor.yaml refused", func() bool {
		return strings.Contains(e.ConfigError(), "conveyor.yaml not reloaded")
	})
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)', currency: '\"EUR\"'}\n"), 0o644))
	eventually(t, 3*time.Second, "the new mapping live", func() bool {
		_, out := post(t, url, `{"a": "1.50"}`)
		if fi, _ := e.Flow("quote"); fi.Status != runtime.StatusActive {
			t.Fatalf("flow %s after the mapping save: %v", fi.Status, fi.Diagnostics)
		}
		return out["currency"] == "EUR"
	})
}

// settleBudget is well within the moment a reload waits for a file that
// changed (or went) just now, before it takes the change.
const settleBudget = 25 * time.Millisecond

// vim's save (backupcopy=auto) renames the file to a backup and writes a
// new one: a reload that runs in between (a rescan, another save, an API
// write) must not stop the flow as if its file were deleted.
func TestReloadDuringBackupRenameSaveKeepsTheFlow(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{RescanInterval: time.Hour})
	url := "http://" + e.TriggerAddr() + "/echo"
	file := filepath.Join(dir, "flows", "echo.yaml")
	for attempt := 1; ; attempt++ {
		began := time.Now()
		must(t, os.Rename(file, file+"~"))
		e.Reload() // the file is gone for a moment
		fi, ok := e.Flow("echo")
		if time.Since(began) < settleBudget {
			if !ok || fi.Revision != 1 {
				t.Errorf("flow %+v (listed %t) while the editor saves; want revision 1 still serving", fi, ok)
			}
			break
		}
		// This machine took longer than an editor's save: put the file
		// back and try again.
		if attempt == 20 {
			t.Fatalf("a rename and a reload took %s every time", time.Since(began))
		}
		must(t, os.Rename(file+"~", file))
		eventually(t, 3*time.Second, "the flow back", func() bool { fi, ok := e.Flow("echo"); return ok && fi.Revision == 1 })
	}
	must(t, os.WriteFile(file, []byte(echoV2), 0o644))
	must(t, os.Remove(file+"~"))
	eventually(t, 3*time.Second, "the saved revision live", func() bool {
		fi, _ := e.Flow("echo")
		return fi.Revision == 2 && fi.Status == runtime.StatusActive
	})
	must(t, os.Remove(file)) // a real deletion still stops the flow
	eventually(t, 3*time.Second, "the deleted flow stopped", func() bool {
		s, _ := post(t, url, `{}`)
		_, listed := e.Flow("echo")
		return s == 404 && !listed
	})
}

// A file whose modification time lies ahead of this machine's clock (a
// network share whose server clock runs ahead, an archive made on such a
// machine) is reloaded: it used to look half written until that time, and
// was read again every 50 ms meanwhile.
func TestFileWithFutureModTimeIsReloaded(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	file := filepath.Join(dir, "flows", "echo.yaml")
	must(t, os.WriteFile(file, []byte(echoV2), 0o644))
	ahead := time.Now().Add(time.Hour)
	must(t, os.Chtimes(file, ahead, ahead))
	eventually(t, 3*time.Second, "the saved revision live", func() bool {
		fi, _ := e.Flow("echo")
		return fi.Revision == 2 && fi.Status == runtime.StatusActive
	})
}

// A file in flows/ that is not a flow file (a sample CSV kept beside the
// flows) is ignored at reload as at start; it used to be read as a broken
// flow named "sample.csv".
func TestNonYAMLFileInFlowsIsNotAFlow(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "sample.csv"), []byte("sku,qty\nA,1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "flows", "echo.yaml"), []byte(echoV2), 0o644))
	eventually(t, 3*time.Second, "the saved revision live", func() bool {
		fi, _ := e.Flow("echo")
		return fi.Revision == 2
	})
	e.Reload()
	if fs := e.Flows(); len(fs) != 1 {
		t.Errorf("flows %+v; want echo alone", fs)
	}
}

// A mapping or lookup file that no longer loads keeps the flows using it
// on their previous revision, and their status names the file and its
// error: "unknown mapping" or "unknown lookup table" sent the analyst
// looking for a file that is there.
func TestBrokenSharedFileIsNamedInItsFlowsStatus(t *testing.T) {
	dir := workspace(t, nil, map[string]string{
		"a": "trigger: {http: {path: /a, mode: sync}}\nsteps: [{map: {use: money}}, {respond: {}}]\n",
		"b": "trigger: {http: {path: /b, mode: sync}}\nsteps: [{map: {use: money}}, {respond: {body: '{item: lookup(\"sku\", \"A\", \"?\")}'}}]\n",
	})
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "lookups"), 0o755))
	mapping, table := filepath.Join(dir, "mappings", "money.yaml"), filepath.Join(dir, "lookups", "sku.csv")
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)'}\n"), 0o644))
	must(t, os.WriteFile(table, []byte("key,value\nA,item-a\n"), 0o644))
	e := start(t, dir, runtime.Options{})
	must(t, os.WriteFile(table, []byte("key,value\nA,item-a\nA,item-b\n"), 0o644))
	eventually(t, 3*time.Second, "the broken lookup table named", func() bool {
		fi, _ := e.Flow("b")
		return fi.Status == runtime.StatusError && fi.Revision == 1 &&
			strings.Contains(fi.Diagnostics.Error(), `lookups/sku.csv:3: duplicate key "A"`)
	})
	must(t, os.WriteFile(table, []byte("key,value\nA,item-a\n"), 0o644))
	must(t, os.WriteFile(mapping, []byte("map: {amount: 'decimal(body.a)'\n"), 0o644))
	eventually(t, 3*time.Second, "the broken mapping named", func() bool {
		for _, id := range []string{"a", "b"} {
			fi, _ := e.Flow(id)
			if fi.Status != runtime.StatusError || fi.Revision != 1 || !strings.Contains(fi.Diagnostics.Error(), "mappings/money.yaml:") {
				return false
			}
		}
		return true
	})
	if s, out := post(t, "http://"+e.TriggerAddr()+"/a", `{"a": "1.5"}`); s != 200 || out["amount"] != "1.5" {
		t.Errorf("the previous revision stopped serving: %d %v", s, out)
	}
}

// A reload that reads every file (a mapping changed) in the gap of a
// flow file's backup-rename save must not stop that flow for good: once
// the editor writes the file back, unchanged, the flow serves again.
func TestSharedReloadDuringBackupRenameSaveKeepsTheFlow(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	e := start(t, dir, runtime.Options{RescanInterval: time.Hour})
	file := filepath.Join(dir, "flows", "echo.yaml")
	mapping := filepath.Join(dir, "mappings", "extra.yaml")
	for attempt := 1; ; attempt++ {
		// A mapping saved a while ago, not applied yet (a rescan comes
		// by, or its own reload is still to run).
		must(t, os.WriteFile(mapping, fmt.Appendf(nil, "map: {n: '%d'}\n", attempt), 0o644))
		old := time.Now().Add(-time.Second)
		must(t, os.Chtimes(mapping, old, old))
		began := time.Now()
		must(t, os.Rename(file, file+"~"))
		e.Reload() // the flow file is gone for a moment
		fast := time.Since(began) < settleBudget
		must(t, os.Rename(file+"~", file)) // the editor's save: the same bytes back
		if fast {
			break
		}
		if attempt == 20 {
			t.Fatalf("a rename and a reload took %s every time", time.Since(began))
		}
		eventually(t, 3*time.Second, "the flow back", func() bool { _, ok := e.Flow("echo"); return ok })
	}
	time.Sleep(300 * time.Millisecond) // settled: the reloads that follow the save are done
	e.Reload()
	if fi, ok := e.Flow("echo"); !ok || fi.Status != runtime.StatusActive {
		t.Fatalf("flow %+v (listed %t) after the editor's save; want it serving", fi, ok)
	}
	if s, out := post(t, "http://"+e.TriggerAddr()+"/echo", `{"id": 7}`); s != 200 {
		t.Errorf("POST /echo = %d %v, want 200", s, out)
	}
}

// A workspace whose path holds [ loads its flows, and an editor's lock
// file beside a flow (emacs's .#echo.yaml, a link to nowhere) is no flow:
// the loader listed files with filepath.Glob, which took the path for a
// pattern (no flow at all) and the lock file for a broken flow.
func TestWorkspaceListsFilesAsTheWatcherDoes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "acme [prod]")
	must(t, os.MkdirAll(filepath.Join(dir, "flows"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "lookups"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "flows", "echo.yaml"), []byte(echoV1), 0o644))
	must(t, os.Symlink("user@host.1234:1700000000", filepath.Join(dir, "flows", ".#echo.yaml")))
	must(t, os.WriteFile(filepath.Join(dir, "lookups", "sku.csv"), []byte("key,value\nA,1\n"), 0o644))
	must(t, os.Symlink("user@host.1234:1700000000", filepath.Join(dir, "lookups", ".#sku.csv")))
	ws := runtime.LoadWorkspace(dir, nil)
	if len(ws.Diagnostics) > 0 {
		t.Errorf("diagnostics: %v", ws.Diagnostics)
	}
	if _, ok := ws.Flows["echo"]; !ok || len(ws.Flows) != 1 {
		t.Errorf("flows %v; want echo alone", slices.Collect(maps.Keys(ws.Flows)))
	}
}

// flows/echo.yaml and flows/echo.yml both name flow "echo". The first by
// name holds it, at a start, on a reload and a full one, on every
// replica alike; the other is refused with a diagnostic (logged and
// counted); once the serving file is gone the other takes the flow over.
// A reload's refusal was neither logged nor counted, and a removed file
// stopped the flow while the other one was there.
func TestTwoFilesOfOneFlowID(t *testing.T) {
	dir := workspace(t, nil, nil)
	yml, yaml := filepath.Join(dir, "flows", "echo.yml"), filepath.Join(dir, "flows", "echo.yaml")
	must(t, os.WriteFile(yml, []byte(echoV1), 0o644))
	logs := &lockedBuffer{}
	e := start(t, dir, runtime.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	url := "http://" + e.TriggerAddr() + "/echo"
	v := func() any { _, out := post(t, url, `{}`); return out["v"] }
	if got := v(); got != 1.0 {
		t.Fatalf("v = %v; want 1 from echo.yml", got)
	}
	// echo.yaml comes first by name: it holds the flow, as it would at a
	// restart and on every replica, and echo.yml is refused.
	must(t, os.WriteFile(yaml, []byte(echoV2), 0o644))
	eventually(t, 3*time.Second, "echo.yaml serving", func() bool { return v() == 2.0 })
	eventually(t, 3*time.Second, "echo.yml refused in the log", func() bool {
		return strings.Contains(logs.String(), `flow id \"echo\" already belongs to echo.yaml; this file is not loaded`)
	})
	if m := scrapeMetrics(t, e); !strings.Contains(m, `conveyor_reloads_total{flow="echo",result="refused"}`) {
		t.Errorf("/metrics does not count the refused file")
	}
	// a shared file changes: the whole workspace is loaded again, alike
	must(t, os.MkdirAll(filepath.Join(dir, "mappings"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "mappings", "m.yaml"), []byte("map: {a: body.a}\n"), 0o644))
	e.Reload()
	time.Sleep(300 * time.Millisecond) // past the settle time of the new file
	e.Reload()
	for i := range 5 {
		if got := v(); got != 2.0 {
			t.Fatalf("request %d after a full reload: v = %v; want 2, echo.yaml serving", i, got)
		}
	}
	if fi, _ := e.Flow("echo"); fi.File != yaml || fi.Status != runtime.StatusActive {
		t.Fatalf("echo: %s from %s; want active from echo.yaml", fi.Status, fi.File)
	}
	// the serving file goes: the other one takes the flow
	must(t, os.Remove(yaml))
	eventually(t, 3*time.Second, "echo.yml serving", func() bool { return v() == 1.0 })
	if fi, _ := e.Flow("echo"); fi.File != yml || fi.Status != runtime.StatusActive {
		t.Fatalf("echo: %s from %s; want active from echo.yml", fi.Status, fi.File)
	}
}

// Deleting a flow through the API removes the file that serves it; a
// second file named after it (echo.yml beside echo.yaml) then takes the
// flow over, as it would at a restart, and the delete answers at once
// rather than wait for the flow to vanish.
func TestDeleteFlowWithASecondFileForItsID(t *testing.T) {
	dir := workspace(t, nil, map[string]string{"echo": echoV1})
	e := start(t, dir, runtime.Options{})
	must(t, os.WriteFile(filepath.Join(dir, "flows", "echo.yml"), []byte(echoV2), 0o644))
	time.Sleep(300 * time.Millisecond) // past the settle time of the new file
	e.Reload()
	began := time.Now()
	if err := e.DeleteFlow(t.Context(), "echo", "ed", ""); err != nil || time.Since(began) > 5*time.Second {
		t.Fatalf("delete: %v after %s", err, time.Since(began))
	}
	if fi, _ := e.Flow("echo"); fi.File != filepath.Join(dir, "flows", "echo.yml") || fi.Status != runtime.StatusActive {
		t.Fatalf("echo: %s from %s; want active from echo.yml", fi.Status, fi.File)
	}
	if _, out := post(t, "http://"+e.TriggerAddr()+"/echo", `{}`); out["v"] != 2.0 {
		t.Errorf("v = %v; want 2 from echo.yml", out["v"])
	}
}
