package runtime_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// Two `conveyor serve --redis` processes share one Redis; load goes to
// both and one is killed with kill -9 mid-run. Every message that got a
// 202 reaches the ERP, each under one idempotency key.
func TestTwoReplicasKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary twice")
	}
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	bin := conveyorBinary(t)
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(2 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": `
trigger: {http: {path: /orders}}
concurrency: 8
retry: {attempts: 50, initial: 50ms, max: 200ms}
steps:
  - map: {order_ref: '"O-" + string(body.id)'}
  - call: {connection: erp, path: /sales-orders}
`})
	redisURL := fmt.Sprintf("%s?prefix=%s&lease_timeout=2s", url, prefix)
	start := func(name string) (*exec.Cmd, string) {
		listen := freePort(t)
		cmd := exec.Command(bin, "serve", "--workspace", dir, "--listen", listen, "--admin-listen", freePort(t),
			"--redis", redisURL, "--log-level", "warn")
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		must(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		must(t, cmd.Start())
		eventually(t, 10*time.Second, name+" to listen", func() bool {
			resp, err := http.Post("http://"+listen+"/nope", "application/json", nil)
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		return cmd, listen
	}
	a, addrA := start("a")
	b, addrB := start("b")
	defer func() { _ = b.Process.Signal(syscall.SIGTERM); _ = b.Wait() }()

	var mu sync.Mutex
	accepted := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Second}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			addr := []string{addrA, addrB}[w%2]
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
	time.Sleep(time.Second)
	must(t, a.Process.Signal(syscall.SIGKILL))
	_ = a.Wait()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	n := len(accepted)
	mu.Unlock()
	if n < 50 {
		t.Fatalf("only %d messages accepted; the load did not run", n)
	}
	byRef := func() map[string]int {
		erp.mu.Lock()
		defer erp.mu.Unlock()
		out := map[string]int{}
		for _, o := range erp.orders {
			out[fmt.Sprint(o["order_ref"])]++
		}
		return out
	}
	eventually(t, 30*time.Second, "every accepted order at the ERP (the survivor takes over the killed replica's leases)", func() bool {
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
	t.Logf("%d accepted across two replicas, one killed; %d orders at the ERP, %d replays absorbed by idempotency keys", n, erp.count(), erp.replays)
}
