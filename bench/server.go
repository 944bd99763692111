package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a child process: the baseline server or conveyor serve. Its
// output goes to a log file; it dies with the bench (Pdeathsig) and is
// stopped with SIGTERM, then SIGKILL.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	// pprof is the base URL of the process's /debug/pprof/ when it serves one.
	pprof string
}

func startProc(name, logPath string, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

// profileCPU writes a CPU profile of the next d to path in the
// background; wait for the returned channel before reading the file.
func (p *proc) profileCPU(d time.Duration, path string) <-chan error {
	done := make(chan error, 1)
	go func() {
		secs := max(1, int(d.Round(time.Second)/time.Second))
		resp, err := http.Get(p.pprof + "profile?seconds=" + strconv.Itoa(secs))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(f, resp.Body)
			err = errors.Join(err, f.Close())
		}
		done <- err
	}()
	return done
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to finish (SIGTERM) and kills it after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last lines of the process's output.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, the process exits or timeout.
func (p *proc) waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, p.logTail(20))
		}
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s:\n%s", p.name, timeout, p.logTail(20))
}

// memory reads VmHWM (peak RSS) and VmRSS of the process, in bytes.
func (p *proc) memory() (hwm, rss int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmHWM" {
			hwm = n << 10
		} else {
			rss = n << 10
		}
	}
	return hwm, rss
}

// cpu returns the CPU time (user + system) the process has used.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	// the command name may hold spaces; fields start after its ')'
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// diskWrites returns the bytes the process has caused to be written to
// storage and its write-like system calls (/proc/PID/io).
func (p *proc) diskWrites() (bytes, syscalls int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.pid()))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "write_bytes":
			bytes = n
		case "syscw":
			syscalls = n
		}
	}
	return bytes, syscalls
}

// machineBusy is the CPU time all processes have used (/proc/stat).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var t int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i > 7 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		t += n
	}
	return time.Duration(t) * time.Second / 100
}

// others measures the CPU that processes other than the bench and the
// server under test use during a run: on a shared machine it says how far
// the figures are to be trusted.
type others struct {
	p                 *proc
	start             time.Time
	busy, self, child time.Duration
}

func watchOthers(p *proc) *others {
	o := &others{p: p, start: time.Now(), busy: machineBusy(), self: selfProc.cpu()}
	if p != nil {
		o.child = p.cpu()
	}
	return o
}

// pct is the others' CPU in percent of one core since watchOthers.
func (o *others) pct() float64 {
	d := machineBusy() - o.busy - (selfProc.cpu() - o.self)
	if o.p != nil {
		d -= o.p.cpu() - o.child
	}
	return max(0, float64(d)/float64(time.Since(o.start))*100)
}

// selfProc reads the bench's own /proc entry.
var selfProc = &proc{cmd: &exec.Cmd{Process: &os.Process{Pid: os.Getpid()}}}

// freeAddr returns a loopback address with a free port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serveBaseline is the hidden -serve-baseline mode: a bare net/http
// server that decodes each JSON body into any and answers 200. It exits
// when its parent (the bench) is gone.
func serveBaseline(addr string) error {
	ppid := os.Getppid()
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != ppid {
				os.Exit(0)
			}
		}
	}()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusOK) // readiness
			return
		}
		var v any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"ok":true}`+"\n")
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// startBaseline re-executes the bench binary as the baseline server.
func startBaseline(ctx context.Context, tmp string) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc("baseline", filepath.Join(tmp, "baseline.log"), self, "-serve-baseline", addr)
	if err != nil {
		return nil, "", err
	}
	if err := p.waitHTTP(ctx, "http://"+addr+"/", 10*time.Second); err != nil {
		p.stop(time.Second)
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// conveyor is a running `conveyor serve`.
type conveyor struct {
	*proc
	url, admin string // base URLs of the trigger and admin listeners
}

// serveOpts are the optional settings of a conveyor under test.
type serveOpts struct {
	profile bool   // the admin listener serves /debug/pprof/
	redis   string // --redis URL: the Redis store and limiter
	name    string // log file conveyor-<name>.log (replicas of one workspace)
}

// startConveyor serves ws with the binary bin on fresh loopback ports.
func startConveyor(ctx context.Context, bin string, ws *workspace, so serveOpts) (*conveyor, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--workspace", ws.dir, "--listen", listen, "--admin-listen", admin,
		"--data-dir", filepath.Join(ws.dir, "data"), "--log-level", "warn"}
	if so.profile {
		args = append(args, "--pprof")
	}
	if so.redis != "" {
		args = append(args, "--redis", so.redis)
	}
	logName := "conveyor.log"
	if so.name != "" {
		logName = "conveyor-" + so.name + ".log"
	}
	p, err := startProc("conveyor", filepath.Join(ws.dir, logName), bin, args...)
	if err != nil {
		return nil, err
	}
	if so.profile {
		p.pprof = "http://" + admin + "/debug/pprof/"
	}
	c := &conveyor{proc: p, url: "http://" + listen, admin: "http://" + admin}
	if err := p.waitHTTP(ctx, c.admin+"/readyz", 30*time.Second); err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return c, nil
}

// metric sums the samples of a Prometheus series on the admin /metrics
// whose labels include every label="value" pair given.
func (c *conveyor) metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(c.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(line, labels[i]+`="`+labels[i+1]+`"`) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// buildConveyor builds cmd/conveyor of the module in dir into out.
func buildConveyor(ctx context.Context, moduleDir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/conveyor")
	cmd.Dir = moduleDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/conveyor: %v\n%s", err, b)
	}
	return nil
}

// moduleRoot is the directory of the main module the bench runs in.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the bench inside the conveyor module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// sink is the bench's own HTTP target: it counts requests and distinct
// Idempotency-Key values (redeliveries count once), answers 200, and
// notes when an awaited number of distinct keys has arrived.
type sink struct {
	addr     string
	srv      *http.Server
	requests atomic.Int64
	mu       sync.Mutex
	keys     map[string]struct{}
	want     int                           // distinct keys awaited; 0: none
	reached  chan struct{}                 // closed when want is reached
	at       time.Time                     // when it was reached
	gate     atomic.Pointer[chan struct{}] // while set, requests wait for it to close
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{addr: ln.Addr().String(), keys: map[string]struct{}{}, reached: make(chan struct{})}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *sink) url() string { return "http://" + s.addr }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g := s.gate.Load(); g != nil {
		<-*g
	}
	if strings.HasPrefix(r.URL.Path, "/sink/slow/") {
		time.Sleep(slowSinkDelay) // an ERP's answer time; concurrent requests overlap
	}
	io.Copy(io.Discard, r.Body)
	s.requests.Add(1)
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		s.mu.Lock()
		s.keys[k] = struct{}{}
		s.check()
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

// slowSinkDelay is how long the sink takes to answer under /sink/slow/.
const slowSinkDelay = 20 * time.Millisecond

// hold makes requests wait until release: a queue fills behind them.
func (s *sink) hold() {
	g := make(chan struct{})
	s.gate.Store(&g)
}

func (s *sink) release() {
	if g := s.gate.Swap(nil); g != nil {
		close(*g)
	}
}

// check closes reached once want distinct keys are in. Callers hold mu.
func (s *sink) check() {
	if s.want > 0 && len(s.keys) >= s.want && s.at.IsZero() {
		s.at = time.Now()
		close(s.reached)
	}
}

// expect resets the counters and awaits n distinct keys (0: none).
func (s *sink) expect(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests.Store(0)
	s.keys = make(map[string]struct{}, n)
	s.want, s.reached, s.at = n, make(chan struct{}), time.Time{}
}

// setWant changes the number of distinct keys awaited.
func (s *sink) setWant(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = n
	s.check()
}

// wait blocks until the awaited keys are in, ctx ends or timeout passes.
func (s *sink) wait(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	ch, want := s.reached, s.want
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("the sink got %d distinct messages of %d within %s", s.distinct(), want, timeout)
	}
}

func (s *sink) reachedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}
