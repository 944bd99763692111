package editorapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/conveyor-run/conveyor/connectors/all"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// system is a fake ERP or WMS: it keeps one order per idempotency key, as
// a target that honours the key would, and counts every call.
type system struct {
	mu     sync.Mutex
	orders map[string]int // idempotency key -> deliveries
	calls  atomic.Int64
	status atomic.Int64 // answer; 0: 201
	srv    *httptest.Server
}

func newSystem(t *testing.T) *system {
	s := &system{orders: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if st := int(s.status.Load()); st >= 300 {
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"error": "status %d"}`, st)
			return
		}
		s.mu.Lock()
		s.orders[r.Header.Get("Idempotency-Key")]++
		n := len(s.orders)
		s.mu.Unlock()
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"sales_order": "SO-%d"}`, n)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// deliveries is how many orders arrived, and how many of them more than once.
func (s *system) deliveries() (orders, repeats int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.orders {
		orders++
		repeats += n - 1
	}
	return
}

// The tokens of the test workspace, one per role.
var secrets = map[Role]string{Viewer: "viewer-secret", Operator: "operator-secret", Editor: "editor-secret", Admin: "admin-secret"}

func echoFlow(v int) string {
	return fmt.Sprintf("description: answers its version\ntrigger: {http: {path: /echo, mode: sync}}\nsteps: [{respond: {body: '{v: %d}'}}]\n", v)
}

// ordersFlow allocates at the WMS, then books at the ERP.
const ordersFlow = `description: orders to WMS and ERP
trigger: {http: {path: /orders}}
dedup: {key: 'string(body.id)', ttl: 1h}
retry: {attempts: 1}
steps:
  - call: {connection: wms, path: /allocations, as: wms}
  - call: {connection: erp, path: /sales-orders, as: erp}
`

type fixture struct {
	t        *testing.T
	e        *runtime.Engine
	dir      string
	api, trg string // base URLs
	erp, wms *system
}

// newFixture runs an engine on a workspace with the echo and orders flows,
// its API mounted as serve mounts it, with tokens from conveyor.yaml.
func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), erp: newSystem(t), wms: newSystem(t)}
	opSum := sha256.Sum256([]byte(secrets[Operator]))
	cfg := fmt.Sprintf(`connections:
  erp: {http: {base_url: %q, timeout: 2s}}
  wms: {http: {base_url: %q, timeout: 2s}}
api:
  tokens:
    - {name: vic-viewer, role: viewer, token: "${env:T_VIEWER}"}
    - {name: olga-operator, role: operator, sha256: %q}
    - {name: eddie-editor, role: editor, token: "${env:T_EDITOR}"}
    - {name: ada-admin, role: admin, token: "${env:T_ADMIN}"}
`, f.erp.srv.URL, f.wms.srv.URL, hex.EncodeToString(opSum[:]))
	env := map[string]string{"T_VIEWER": secrets[Viewer], "T_EDITOR": secrets[Editor], "T_ADMIN": secrets[Admin]}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	must(t, os.WriteFile(filepath.Join(f.dir, "conveyor.yaml"), []byte(cfg), 0o644))
	must(t, os.Mkdir(filepath.Join(f.dir, "flows"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.dir, "flows", "echo.yaml"), []byte(echoFlow(1)), 0o644))
	must(t, os.WriteFile(filepath.Join(f.dir, "flows", "orders.yaml"), []byte(ordersFlow), 0o644))
	var api http.Handler
	e, err := runtime.New(runtime.Options{Workspace: f.dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Getenv: getenv,
		DataDir: filepath.Join(f.dir, "data"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: 100 * time.Millisecond,
		Admin: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })})
	must(t, err)
	tokens, err := TokensFromConfig(e.Config(), getenv)
	must(t, err)
	api = New(e, tokens, opts...)
	must(t, e.Start())
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	f.e, f.api, f.trg = e, "http://"+e.AdminAddr()+Prefix, "http://"+e.TriggerAddr()
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// obj decodes the body as a JSON object.
func (r resp) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r resp) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// req calls the API as role (0: no token, -1: an unknown token). body is
// sent as is when a string, as JSON otherwise; headers are name, value pairs.
func (f *fixture) req(role Role, method, path string, body any, headers ...string) resp {
	f.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		must(f.t, err)
		rd = bytes.NewReader(raw)
	}
	r, err := http.NewRequest(method, f.api+path, rd)
	must(f.t, err)
	if rd != nil {
		r.Header.Set("Content-Type", ct)
	}
	switch {
	case role > 0:
		r.Header.Set("Authorization", "Bearer "+secrets[role])
	case role < 0:
		r.Header.Set("Authorization", "Bearer not-a-token")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(r)
	must(f.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// trigger posts to a trigger path and returns the status and JSON answer.
func (f *fixture) trigger(path, body string, headers ...string) (int, map[string]any) {
	f.t.Helper()
	r, _ := http.NewRequest(http.MethodPost, f.trg+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(r)
	must(f.t, err)
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status waits until message id has status st.
func (f *fixture) waitStatus(id string, st store.Status) {
	f.t.Helper()
	eventually(f.t, "message "+id+" "+string(st), func() bool {
		m, err := f.e.Message(context.Background(), id)
		return err == nil && m.Status == st
	})
}

// deadOrder posts an order while the ERP rejects orders, and returns the
// id of its dead letter. The ERP keeps rejecting.
func (f *fixture) deadOrder(orderID int) string {
	f.t.Helper()
	f.erp.status.Store(422)
	s, out := f.trigger("/orders", fmt.Sprintf(`{"id": %d}`, orderID), "X-Shop-Hmac-Sha256", "c2lnbmF0dXJl")
	if s != 202 {
		f.t.Fatalf("accept: %d %v", s, out)
	}
	id := out["id"].(string)
	f.waitStatus(id, store.Dead)
	return id
}

// echoV asks the echo flow which version is live.
func (f *fixture) echoV() any {
	f.t.Helper()
	_, out := f.trigger("/echo", `{}`)
	return out["v"]
}

func errCode(t *testing.T, r resp) string {
	t.Helper()
	e, _ := r.obj(t)["error"].(map[string]any)
	if e == nil || e["message"] == "" {
		t.Fatalf("not the error shape: %s", r)
	}
	return e["code"].(string)
}
