package runtime_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime"
)

// A flow that only relays the body (its steps are calls that never name
// it) leaves it undecoded: the HTTP target gets the bytes as received, and
// a connector that needs the value (a JSONL outbox) still gets it decoded.
func TestRelayFlowPassesTheBodyOn(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b)+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		w.WriteHeader(204)
	}))
	t.Cleanup(srv.Close)
	dir := workspace(t, nil, map[string]string{"relay": `trigger: {http: {path: /relay}}
steps:
  - call: {connection: erp, path: /orders, headers: {X-Message: 'meta.id'}}
  - call: {connection: archive, path: 'orders.jsonl'}
`})
	outbox := filepath.Join(dir, "outbox")
	addConnections(t, dir, "erp: {http: {base_url: "+srv.URL+"}}", "archive: {file: {dir: "+outbox+", format: jsonl}}")
	e := start(t, dir, runtime.Options{})
	raw := `{"id": 7,  "total": 10.10, "note": "Zoë"}`
	if status, out := post(t, "http://"+e.TriggerAddr()+"/relay", raw); status != 202 {
		t.Fatalf("accept: %d %v", status, out)
	}
	eventually(t, 5*time.Second, "the outbox file", func() bool {
		_, err := os.Stat(filepath.Join(outbox, "orders.jsonl"))
		return err == nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != raw+" application/json" {
		t.Errorf("the ERP got %q; want the bytes as received, as JSON", got)
	}
	b, err := os.ReadFile(filepath.Join(outbox, "orders.jsonl"))
	must(t, err)
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil || rec["id"] != 7.0 || rec["total"] != 10.1 || rec["note"] != "Zoë" {
		t.Errorf("the outbox holds %q (%v)", b, err)
	}
}
