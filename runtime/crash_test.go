package runtime_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

// buildConveyor builds the CLI once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func conveyorBinary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "conveyor-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "conveyor")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, "../cmd/conveyor").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func serve(t *testing.T, bin, dir, listen string) *exec.Cmd {
	cmd := exec.Command(bin, "serve", "--workspace", dir, "--listen", listen, "--admin-listen", freePort(t), "--log-level", "warn")
	logf, err := os.OpenFile(filepath.Join(dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	eventually(t, 10*time.Second, "the server to listen", func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

// orderFlow is the flow the crash tests load: map + one ERP call.
const crashFlow = `
trigger: {http: {path: /orders}}
concurrency: 8
retry: {attempts: 50, initial: 50ms, max: 200ms}
steps:
  - map: {order_ref: '"O-" + string(body.id)'}
  - call: {connection: erp, path: /sales-orders}
`

// load posts unique orders to addrs (round robin over 8 workers) until
// stop is closed, and returns the order refs that got a 202.
// killUnderLoad loads addrs, kills victim with SIGKILL after before, stops
// the load after after, and returns the ids of the messages that got a
// 202 (at least 50, or the load did not run).
func killUnderLoad(t *testing.T, victim *exec.Cmd, addrs []string, before, after time.Duration) map[string]bool {
	t.Helper()
	stop := make(chan struct{})
	result := load(addrs, stop)
	time.Sleep(before)
	must(t, victim.Process.Signal(syscall.SIGKILL))
	_ = victim.Wait()
	time.Sleep(after)
	close(stop)
	accepted := result()
	if len(accepted) < 50 {
		t.Fatalf("only %d messages accepted before the kill; the load did not run", len(accepted))
	}
	return accepted
}

func load(addrs []string, stop <-chan struct{}) func() map[string]bool {
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Second}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			addr := addrs[w%len(addrs)]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ref := fmt.Sprintf("%d%06d", w+1, i)
				resp, err := client.Post("http://"+addr+"/orders", "application/json", strings.NewReader(`{"id": `+ref+`}`))
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					mu.Lock()
					accepted["O-"+ref] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	return func() map[string]bool {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}
}

// eachOnce waits until every accepted order reached the ERP, and checks
// that none reached it under two idempotency keys.
func eachOnce(t *testing.T, erp *target, accepted map[string]bool, within time.Duration) {
	t.Helper()
	byRef := func() map[string]int {
		erp.mu.Lock()
		defer erp.mu.Unlock()
		out := map[string]int{}
		for _, o := range erp.orders {
			out[fmt.Sprint(o["order_ref"])]++
		}
		return out
	}
	eventually(t, within, "every accepted order at the ERP", func() bool {
		got := byRef()
		for ref := range accepted {
			if got[ref] == 0 {
				return false
			}
		}
		return true
	})
	for ref, c := range byRef() {
		if c != 1 {
			t.Errorf("order %s reached the ERP %d times under different keys", ref, c)
		}
	}
}

// kill -9 of a serving process under load: every message that got a 202
// reaches the ERP after a restart, each exactly once there.
func TestKillNineUnderLoadLosesNothing(t *testing.T) {
	testenv.SkipShort(t, "builds and runs the binary")
	bin := conveyorBinary(t)
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(2 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": crashFlow})
	listen := freePort(t)
	srv := serve(t, bin, dir, listen)

	accepted := killUnderLoad(t, srv, []string{listen}, 800*time.Millisecond, 100*time.Millisecond)
	t.Logf("%d accepted before kill -9; %d reached the ERP before it", len(accepted), erp.count())

	srv = serve(t, bin, dir, listen)
	defer func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() }()
	eachOnce(t, erp, accepted, 30*time.Second)
}
