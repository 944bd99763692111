package runtime_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime/store/storetest"
)

// Two `conveyor serve --redis` processes share one Redis; load goes to
// both and one is killed with kill -9 mid-run. Every message that got a
// 202 reaches the ERP, each under one idempotency key.
func TestTwoReplicasKillNine(t *testing.T) {
	testenv.SkipShort(t, "builds and runs the binary twice")
	url := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t, url)
	bin := conveyorBinary(t)
	erp := newTarget(t)
	erp.status = func(map[string]any) int { time.Sleep(2 * time.Millisecond); return 201 }
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{"orders": crashFlow})
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

	accepted := killUnderLoad(t, a, []string{addrA, addrB}, time.Second, 500*time.Millisecond)
	// The survivor takes over the killed replica's leases.
	eachOnce(t, erp, accepted, 30*time.Second)
	t.Logf("%d accepted across two replicas, one killed; %d orders at the ERP, %d replays absorbed by idempotency keys", len(accepted), erp.count(), erp.replays)
}
