package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// readyz answers GET /readyz: the status code and the body.
func readyz(t *testing.T, e *runtime.Engine) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + e.AdminAddr() + "/readyz")
	must(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// A replica that starts while Redis is out of reach (a host that boots
// before it, a failover during a rollout) comes up not ready instead of
// exiting: /readyz and the triggers answer 503 naming the store, nothing
// is accepted unstored. Once Redis answers it becomes ready by itself:
// a flow an operator disabled stays disabled, the flows' revisions are
// recorded, and a message is delivered exactly once.
func TestRedisOutageAtStartWaitsForRedis(t *testing.T) {
	rurl, p := storetest.RedisProxy(t)
	prefix := storetest.RedisPrefix(t, rurl)
	erp := newSink(t)
	dir := replicaWorkspace(t, erp, map[string]string{"orders": replicaOrderFlow,
		"paused": "trigger: {http: {path: /paused}}\nsteps: [{call: {connection: erp, path: /paused}}]\n"})
	direct := redisStore(t, rurl, prefix, store.RedisOptions{Consumer: "observer"})
	must(t, direct.PutMeta(context.Background(), "flow.disabled/paused", []byte("true"))) // by an operator, before the restart
	// What this replica ran when it stopped: its lease goes back to the
	// queue (Recover) once Redis answers, long before a takeover would.
	before := redisStore(t, rurl, prefix, store.RedisOptions{Consumer: "a", LeaseTimeout: time.Minute})
	now := time.Now().UTC()
	_, err := before.Accept(context.Background(), &store.Message{ID: "in-flight", Flow: "orders", Status: store.Queued, ReceivedAt: now, DueAt: now,
		Body: []byte(`{"id": 2}`)}, 0)
	must(t, err)
	if got, err := before.Lease(context.Background(), "orders", time.Now(), 1); err != nil || len(got) != 1 {
		t.Fatalf("lease before the restart: %v %v", got, err)
	}

	p.Down()
	e := start(t, dir, runtime.Options{RedisURL: p.Through(rurl, "prefix="+url.QueryEscape(prefix)+"&consumer=a&lease_timeout=1m")})
	if st, out := readyz(t, e); st != 503 || !strings.Contains(fmt.Sprint(out), "redis") {
		t.Errorf("readyz while redis is out of reach: %d %v, want 503 naming redis", st, out)
	}
	resp, err := http.Post("http://"+e.TriggerAddr()+"/orders", "application/json", strings.NewReader(`{"id": 1}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("post while redis is out of reach: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// A replica stopped before Redis answered stops at once.
	b, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", RescanInterval: -1,
		RedisURL: p.Through(rurl, "prefix="+url.QueryEscape(prefix)+"&consumer=b"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	must(t, b.Start())
	stopped := time.Now()
	if err := b.Shutdown(context.Background()); err != nil || time.Since(stopped) > 2*time.Second {
		t.Errorf("shutdown while waiting for redis: %v after %s", err, time.Since(stopped))
	}

	p.Up()
	eventually(t, 10*time.Second, "ready once redis answers", func() bool { st, _ := readyz(t, e); return st == 200 })
	if st, out := post(t, "http://"+e.TriggerAddr()+"/paused", `{}`); st != 503 {
		t.Errorf("post to the disabled flow: %d %v, want 503: it was taken for enabled", st, out)
	}
	st, out := post(t, "http://"+e.TriggerAddr()+"/orders", `{"id": 1}`)
	if st != 202 {
		t.Fatalf("post once redis is back: %d %v", st, out)
	}
	eventually(t, 10*time.Second, "the outcomes recorded", func() bool {
		for _, id := range []string{out["id"].(string), "in-flight"} {
			if m, err := direct.Get(context.Background(), id); err != nil || m.Status != store.Completed {
				return false
			}
		}
		return true
	})
	if n, refs := erp.calls.Load(), erp.refs(); n != 2 || refs["O-1"] != 1 || refs["O-2"] != 1 {
		t.Errorf("erp called %d times (%v), want once per order", n, refs)
	}
	eventually(t, 5*time.Second, "the revision recorded", func() bool {
		fi, _ := e.Flow("orders")
		return fi.Revision == 1
	})
}

// A Redis that answers and refuses the credentials is the configuration,
// not an outage: the start fails at once, saying where the URL comes from
// and what to check. So does a URL that does not parse.
func TestRedisConfigurationErrorsFailStart(t *testing.T) {
	rurl := storetest.RedisURL(t)
	opt, _ := redis.ParseURL(rurl)
	bad := fmt.Sprintf("redis://cvtest-nobody:s3cret@%s/%d", opt.Addr, opt.DB)
	dir := replicaWorkspace(t, newSink(t), map[string]string{"orders": replicaOrderFlow})
	_, err := runtime.New(runtime.Options{Workspace: dir, RedisURL: bad})
	if err == nil || !strings.HasPrefix(err.Error(), "--redis: ") || !strings.Contains(err.Error(), "WRONGPASS") ||
		!strings.Contains(err.Error(), "check the user and password") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("--redis with a wrong password: %v", err)
	}
	if _, err := runtime.New(runtime.Options{Workspace: dir, RedisURL: "redis-sentinel://127.0.0.1:26379"}); err == nil ||
		!strings.Contains(err.Error(), "--redis: store: redis url: sentinel URL without a master name") {
		t.Errorf("--redis that does not parse: %v", err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "conveyor.yaml"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "conveyor.yaml"), append([]byte(fmt.Sprintf("store:\n  backend: redis\n  url: %q\n", bad)), cfg...), 0o644))
	_, err = runtime.New(runtime.Options{Workspace: dir})
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "conveyor.yaml")+":3:8: store.url: ") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("store.url with a wrong password: %v", err)
	}
}
