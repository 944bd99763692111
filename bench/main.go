// Command bench measures Conveyor against baselines driven by the same
// load generator at the same concurrency, in one run:
//
//	go run ./bench -scenario all -duration 10s -concurrency 32
//
// Scenarios: baseline, sync, async, delivery, reload, rss (see README.md).
// It builds cmd/conveyor once, serves generated workspaces with
// `conveyor serve` as separate processes on loopback ports, prints a table
// and the target ratios, and writes bench/results/latest.json. Linux only
// (it reads /proc).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	scenarios   []string
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	concurrency int
	messages    int
	reloads     int
	flows       int
	out         string
	conveyor    string
	keep        bool
	profile     bool
	redis       string
	strict      bool
}

func main() {
	var opt options
	var scenarios, serve string
	flag.StringVar(&scenarios, "scenario", "all", "comma list of "+strings.Join(scenarioOrder, ",")+", or all")
	flag.DurationVar(&opt.duration, "duration", 10*time.Second, "measured time of each load run")
	flag.DurationVar(&opt.warmup, "warmup", time.Second, "unmeasured load before each measured run")
	flag.IntVar(&opt.rounds, "rounds", 3, "ratio scenarios: measured runs, each paired with its own baseline run; the median ratio is reported")
	flag.IntVar(&opt.concurrency, "concurrency", 32, "load generator workers (and the delivery flow's concurrency)")
	flag.IntVar(&opt.messages, "messages", 20000, "delivery: messages sent through the flow")
	flag.IntVar(&opt.reloads, "reloads", 20, "reload: flow file rewrites during the run")
	flag.IntVar(&opt.flows, "flows", 100, "rss: generated flows in the workspace")
	flag.StringVar(&opt.out, "out", "", "results file (default <module>/bench/results/latest.json; - for none)")
	flag.StringVar(&opt.conveyor, "conveyor", "", "a conveyor binary to use instead of building ./cmd/conveyor")
	flag.BoolVar(&opt.keep, "keep", false, "keep the scratch directory (workspaces, data, server logs)")
	flag.StringVar(&opt.redis, "redis", "redis://127.0.0.1:6379/0", "Redis for the redis-* scenarios (keys under a prefix of their own, deleted after)")
	flag.BoolVar(&opt.profile, "cpuprofile", false, "write a CPU profile of each measured conveyor run to the scratch directory (implies -keep)")
	flag.BoolVar(&opt.strict, "strict", false, "exit 1 when a target is missed")
	flag.StringVar(&serve, "serve-baseline", "", "internal: serve the baseline handler on ADDR")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]\n")
		flag.VisitAll(func(f *flag.Flag) {
			if f.Name != "serve-baseline" {
				fmt.Fprintf(flag.CommandLine.Output(), "  -%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	flag.Parse()
	if serve != "" {
		if err := serveBaseline(serve); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
		return
	}
	var err error
	if opt.scenarios, err = selectScenarios(scenarios); err != nil || opt.concurrency < 1 || opt.duration <= 0 || opt.messages < 1 || opt.flows < 1 || opt.rounds < 1 {
		if err == nil {
			err = errors.New("-concurrency, -duration, -messages, -flows and -rounds must be positive")
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	code, err := run(opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// selectScenarios parses the comma list and adds what the chosen ones need.
func selectScenarios(list string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "all":
			for _, n := range scenarioOrder {
				want[n] = true
			}
		case slices.Contains(scenarioOrder, s):
			want[s] = true
		case s != "":
			return nil, fmt.Errorf("unknown scenario %q (have %s, all)", s, strings.Join(scenarioOrder, ", "))
		}
	}
	for changed := true; changed; {
		changed = false
		for s := range want {
			for _, n := range needs[s] {
				if !want[n] {
					fmt.Printf("also running %s: %s needs it\n", n, s)
					want[n], changed = true, true
				}
			}
		}
	}
	var out []string
	for _, s := range scenarioOrder {
		if want[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario selected")
	}
	return out, nil
}

func run(opt options) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := moduleRoot()
	if err != nil && (opt.conveyor == "" || opt.out == "") {
		return 1, err
	}
	if opt.out == "" {
		opt.out = filepath.Join(root, "bench", "results", "latest.json")
	}
	tmp, err := os.MkdirTemp("", "conveyor-bench-")
	if err != nil {
		return 1, err
	}
	if opt.keep || opt.profile {
		fmt.Println("scratch directory (kept):", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	bin := opt.conveyor
	if bin == "" {
		bin = filepath.Join(tmp, "conveyor")
		fmt.Println("building ./cmd/conveyor ...")
		if err := buildConveyor(ctx, root, bin); err != nil {
			return 1, err
		}
	}
	sk, err := startSink()
	if err != nil {
		return 1, err
	}
	defer sk.srv.Close()

	rep := newReport(opt)
	r := &runner{ctx: ctx, opt: opt, tmp: tmp, bin: bin, sink: sk, rep: rep}
	defer r.close()
	fmt.Printf("scenarios %s; %s each at concurrency %d; GOMAXPROCS %d, %d CPUs\n",
		strings.Join(opt.scenarios, ","), opt.duration, opt.concurrency, goruntime.GOMAXPROCS(0), goruntime.NumCPU())
	failed := false
	for _, s := range opt.scenarios {
		if ctx.Err() != nil {
			break
		}
		load := loadAvg()
		fmt.Printf("== %s (load average %s)\n", s, load)
		t0 := time.Now()
		if err := r.scenario(s); err != nil {
			failed = true
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", s, err))
			fmt.Printf("   error: %v\n", err)
			continue
		}
		for _, row := range rep.Rows {
			if row.Scenario == s || (s == "delivery" && row.Scenario == "delivery-go") {
				row.LoadAvg = load
			}
		}
		if n := len(rep.Rows); n > 0 {
			fmt.Printf("   %s (%s)\n", rep.Rows[n-1].summary(), time.Since(t0).Round(100*time.Millisecond))
		}
	}
	rep.print(os.Stdout)
	if opt.out != "-" {
		if err := os.MkdirAll(filepath.Dir(opt.out), 0o755); err != nil {
			return 1, err
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(opt.out, append(b, '\n'), 0o644); err != nil {
			return 1, err
		}
		fmt.Println("results:", opt.out)
	}
	if ctx.Err() != nil {
		return 130, nil
	}
	if failed || (opt.strict && !rep.allPass()) {
		return 1, nil
	}
	return 0, nil
}

// loadAvg is the machine's 1, 5 and 15 minute load average.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// report is what a run prints and writes to the results file.
type report struct {
	Started time.Time      `json:"started"`
	Host    map[string]any `json:"host"`
	Options map[string]any `json:"options"`
	Rows    []*row         `json:"scenarios"`
	Checks  []*check       `json:"targets"`
	Errors  []string       `json:"errors,omitempty"`
}

// row is one measured load run.
type row struct {
	Scenario     string            `json:"scenario"`
	What         string            `json:"what"`
	Requests     uint64            `json:"requests"`
	OK           uint64            `json:"ok"`
	Failed       uint64            `json:"failed"`
	Transport    uint64            `json:"transport_errors"`
	Seconds      float64           `json:"seconds"`
	RPS          float64           `json:"rps"`
	P50ms        float64           `json:"p50_ms"`
	P90ms        float64           `json:"p90_ms"`
	P99ms        float64           `json:"p99_ms"`
	MaxMs        float64           `json:"max_ms"`
	Statuses     map[string]uint64 `json:"statuses"`
	ServerCPUus  float64           `json:"server_cpu_us_per_request,omitempty"`
	LoadAvg      string            `json:"loadavg_before"`     // 1, 5, 15 min, before the scenario
	OthersCPU    float64           `json:"others_cpu_percent"` // CPU of other processes during the run, % of one core
	Details      map[string]any    `json:"details,omitempty"`
	ErrorSamples []string          `json:"error_samples,omitempty"`
}

// check is one target: a measured value against its goal.
type check struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit,omitempty"`
	Target   string  `json:"target"`
	Pass     bool    `json:"pass"`
}

func newReport(opt options) *report {
	host, _ := os.Hostname()
	return &report{
		Started: time.Now().UTC(),
		Host: map[string]any{"hostname": host, "cpus": goruntime.NumCPU(), "gomaxprocs": goruntime.GOMAXPROCS(0), "loadavg": loadAvg(),
			"go": goruntime.Version(), "os": goruntime.GOOS + "/" + goruntime.GOARCH},
		Options: map[string]any{"scenarios": opt.scenarios, "duration": opt.duration.String(), "warmup": opt.warmup.String(), "rounds": opt.rounds,
			"concurrency": opt.concurrency, "messages": opt.messages, "reloads": opt.reloads, "flows": opt.flows},
	}
}

func (rep *report) addLoad(name, what string, res *loadResult, cpuPerReq time.Duration) *row {
	r := &row{Scenario: name, What: what, Requests: res.Requests, OK: res.OK, Failed: res.Failed, Transport: res.Errors,
		Seconds: res.Elapsed.Seconds(), RPS: res.rps(), P50ms: ms(res.Lat.quantile(0.5)), P90ms: ms(res.Lat.quantile(0.9)),
		P99ms: ms(res.Lat.quantile(0.99)), MaxMs: ms(res.Lat.max), Statuses: map[string]uint64{},
		ServerCPUus: float64(cpuPerReq.Nanoseconds()) / 1000, Details: map[string]any{}, ErrorSamples: res.ErrLog}
	for s, n := range res.Status {
		r.Statuses[fmt.Sprint(s)] = n
	}
	rep.Rows = append(rep.Rows, r)
	return r
}

func (rep *report) check(r *row, name string, value float64, unit, target string, pass bool) {
	rep.Checks = append(rep.Checks, &check{Scenario: r.Scenario, Name: name, Value: value, Unit: unit, Target: target, Pass: pass})
}

// ratio records value/base as a target of at least goal.
func (rep *report) ratio(r *row, name string, value, base, goal float64) {
	q := 0.0
	if base > 0 {
		q = value / base
	}
	r.Details["ratio"] = q
	rep.check(r, name, q, "x", fmt.Sprintf(">= %.2fx", goal), q >= goal)
}

func (rep *report) allPass() bool {
	for _, c := range rep.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

func (r *row) summary() string {
	return fmt.Sprintf("%d requests, %d failed, %.0f req/s, p50 %.2f ms, p99 %.2f ms", r.Requests, r.Failed, r.RPS, r.P50ms, r.P99ms)
}

func (rep *report) print(w *os.File) {
	fmt.Fprintf(w, "\n%-14s %9s %7s %10s %8s %8s %8s %10s %7s  %s\n", "scenario", "requests", "failed", "req/s", "p50 ms", "p99 ms", "max ms", "cpu µs/req", "others", "details")
	for _, r := range rep.Rows {
		cpu := "-"
		if r.ServerCPUus > 0 {
			cpu = fmt.Sprintf("%.0f", r.ServerCPUus)
		}
		keys := make([]string, 0, len(r.Details))
		for k := range r.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var d []string
		for _, k := range keys {
			switch v := r.Details[k].(type) {
			case float64:
				d = append(d, fmt.Sprintf("%s=%.2f", k, v))
			default:
				d = append(d, fmt.Sprintf("%s=%v", k, v))
			}
		}
		fmt.Fprintf(w, "%-14s %9d %7d %10.1f %8.2f %8.2f %8.2f %10s %6.0f%%  %s\n", r.Scenario, r.Requests, r.Failed, r.RPS, r.P50ms, r.P99ms, r.MaxMs, cpu, r.OthersCPU, strings.Join(d, " "))
	}
	fmt.Fprintf(w, "\n%-14s %-42s %12s  %-12s %s\n", "scenario", "target", "measured", "goal", "")
	for _, c := range rep.Checks {
		verdict := "PASS"
		if !c.Pass {
			verdict = "MISS"
		}
		val := fmt.Sprintf("%.2f%s", c.Value, c.Unit)
		if c.Unit == "" {
			val = fmt.Sprintf("%.0f", c.Value)
		} else if c.Unit != "x" {
			val = fmt.Sprintf("%.2f %s", c.Value, c.Unit)
		}
		fmt.Fprintf(w, "%-14s %-42s %12s  %-12s %s\n", c.Scenario, c.Name, val, c.Target, verdict)
	}
	for _, e := range rep.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}
