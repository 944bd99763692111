package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// scenarioOrder is the order scenarios run in; later ones use what
// earlier ones measured (ratios need the baseline, reload the sync rate).
var scenarioOrder = []string{"baseline", "sync", "async", "delivery", "reload", "rss", "redis-sync", "redis-async", "redis-replicas"}

// needs lists what a scenario needs run before it.
var needs = map[string][]string{"sync": {"baseline"}, "async": {"baseline"}, "reload": {"sync"},
	"redis-sync": {"baseline"}, "redis-async": {"baseline"}}

// runner runs the scenarios of one bench invocation against a sink of its
// own and fresh server processes per scenario.
type runner struct {
	ctx  context.Context
	opt  options
	tmp  string // scratch directory: workspaces, data, logs
	bin  string // the conveyor binary
	sink *sink
	rep  *report

	syncRPS   float64
	othersPct float64 // CPU of other processes during the last measured run
	// base is the baseline server, started by the baseline scenario and
	// kept to the end, so that each ratio is taken against a baseline run
	// measured right before (adjacentBaseline).
	base    *proc
	baseURL string
}

// adjacentBaseline measures the baseline again, just before a scenario
// whose rate is compared with it. This box's speed drifts by 20 % over
// minutes (other tenants): against the baseline of the start of an
// "all" run, a ratio measured minutes later also measured that drift.
func (r *runner) adjacentBaseline() (float64, error) {
	if r.base == nil {
		return 0, errors.New("the baseline server is not running (see the baseline scenario)")
	}
	l := r.baselineLoad()
	r.warm(l)
	l.Duration = r.opt.duration
	return l.run(r.ctx).rps(), nil
}

// baselineLoad drives the baseline server as the accept scenarios drive
// conveyor.
func (r *runner) baselineLoad() load {
	return load{Concurrency: r.opt.concurrency, URL: fixedURL(r.baseURL + "/orders"), Body: orderBody, OK: statusIs(200)}
}

// acceptRun is one of the accept scenarios (sync, async and their Redis
// twins) ready to be measured: its flow served, the baseline measured
// right before, the flow warmed up.
type acceptRun struct {
	c    *conveyor
	load load
	base float64 // adjacentBaseline; after measure, the median round's
	done func()  // stops the server (and lets the sink go)

	ratios   []float64 // of each round, ascending
	requests uint64    // sent to conveyor in all rounds
}

// measure runs the scenario opt.rounds times, each run after a baseline
// run of its own (the first is the adjacent baseline), and returns the
// run whose ratio to its baseline is the median. The box's speed swings
// by a third within a minute (other tenants): a single pair can land on
// a fast baseline and a slow scenario, or the other way round.
func (a *acceptRun) measure(r *runner) (*loadResult, time.Duration) {
	type round struct {
		res  *loadResult
		cpu  time.Duration
		base float64
	}
	rounds := make([]round, 0, r.opt.rounds)
	for i := range r.opt.rounds {
		base := a.base
		if i > 0 {
			l := r.baselineLoad()
			l.Duration = r.opt.duration
			base = l.run(r.ctx).rps()
		}
		res, cpu := r.measure(a.c.proc, a.load)
		a.requests += res.Requests
		rounds = append(rounds, round{res, cpu, base})
	}
	ratio := func(x round) float64 { return x.res.rps() / max(x.base, 1) }
	slices.SortFunc(rounds, func(x, y round) int { return cmp.Compare(ratio(x), ratio(y)) })
	for _, x := range rounds {
		a.ratios = append(a.ratios, ratio(x))
	}
	mid := rounds[len(rounds)/2]
	a.base = mid.base
	return mid.res, mid.cpu
}

// startAccept serves flow id (src) as scenario name, driven on path and
// expecting status. With hold, the sink then holds its requests, so the
// flow's workers stall in their first calls and accepting is measured
// alone.
func (r *runner) startAccept(name, id, src, path string, status int, so serveOpts, hold bool) (*acceptRun, error) {
	c, err := r.serveFlow(name, id, src, so)
	if err != nil {
		return nil, err
	}
	a := &acceptRun{c: c, load: load{Concurrency: r.opt.concurrency, URL: fixedURL(c.url + path), Body: orderBody, OK: statusIs(status)},
		done: func() { c.stop(30 * time.Second) }}
	if a.base, err = r.adjacentBaseline(); err != nil {
		a.done()
		return nil, err
	}
	r.warm(a.load)
	if hold {
		r.sink.expect(0)
		r.sink.hold()
		a.done = func() { r.sink.release(); c.stop(30 * time.Second) }
	}
	return a, nil
}

// ratioToBaseline reports the median round of a, against the baseline
// run paired with it; the details give the spread of the rounds.
func (r *runner) ratioToBaseline(row *row, res *loadResult, a *acceptRun, goal float64) {
	row.Details["baseline_rps_adjacent"] = a.base
	row.Details["ratio_min"], row.Details["ratio_max"] = a.ratios[0], a.ratios[len(a.ratios)-1]
	r.rep.ratio(row, "rps vs baseline", res.rps(), a.base, goal)
}

// close stops what the runner kept running.
func (r *runner) close() {
	if r.base != nil {
		r.base.stop(5 * time.Second)
	}
}

func (r *runner) scenario(name string) error {
	switch name {
	case "baseline":
		return r.baseline()
	case "sync":
		return r.sync()
	case "async":
		return r.async()
	case "delivery":
		return r.delivery()
	case "reload":
		return r.reload()
	case "rss":
		return r.rss()
	case "redis-sync":
		return r.redisSync()
	case "redis-async":
		return r.redisAsync()
	case "redis-replicas":
		return r.redisReplicas()
	}
	return fmt.Errorf("unknown scenario %q", name)
}

// warm runs l unmeasured for the warm-up time.
func (r *runner) warm(l load) {
	if r.opt.warmup > 0 {
		l.Duration, l.Inspect = r.opt.warmup, nil
		l.run(r.ctx)
	}
}

// measure runs l for the configured duration and reports the CPU time the
// server process used per request.
func (r *runner) measure(p *proc, l load) (*loadResult, time.Duration) {
	l.Duration = r.opt.duration
	var prof <-chan error
	if p.pprof != "" {
		prof = p.profileCPU(l.Duration, filepath.Join(r.tmp, filepath.Base(filepath.Dir(p.log))+".cpu.pprof"))
	}
	cpu0, o := p.cpu(), watchOthers(p)
	res := l.run(r.ctx)
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
		}
	}
	var perReq time.Duration
	if res.Requests > 0 {
		perReq = (p.cpu() - cpu0) / time.Duration(res.Requests)
	}
	r.othersPct = o.pct()
	return res, perReq
}

// add reports a measured run with the others' CPU seen during it.
func (r *runner) add(name, what string, res *loadResult, cpuPerReq time.Duration) *row {
	row := r.rep.addLoad(name, what, res, cpuPerReq)
	row.OthersCPU = r.othersPct
	return row
}

func (r *runner) workspace(name string, flows map[string]string) (*workspace, error) {
	return newWorkspace(filepath.Join(r.tmp, name), r.sink.url(), flows)
}

// serveFlow writes workspace name with one flow and serves it, profiled
// when -cpuprofile is set; stop it when done.
func (r *runner) serveFlow(name, flowID, src string, so serveOpts) (*conveyor, error) {
	ws, err := r.workspace(name, map[string]string{flowID: src})
	if err != nil {
		return nil, err
	}
	so.profile = r.opt.profile
	return startConveyor(r.ctx, r.bin, ws, so)
}

func statusIs(codes ...int) func(int) bool {
	return func(s int) bool {
		for _, c := range codes {
			if s == c {
				return true
			}
		}
		return false
	}
}

func fixedURL(u string) func(uint64) string { return func(uint64) string { return u } }

// baseline: a bare net/http handler decoding the JSON body, in a process
// of its own, driven exactly like the conveyor scenarios.
func (r *runner) baseline() error {
	p, url, err := startBaseline(r.ctx, r.tmp)
	if err != nil {
		return err
	}
	r.base, r.baseURL = p, url
	l := r.baselineLoad()
	r.warm(l)
	res, cpu := r.measure(p, l)
	r.add("baseline", "bare net/http + encoding/json, 200", res, cpu)
	return nil
}

// sync: validate + dedup + inbound rate limit + map + respond, inline.
func (r *runner) sync() error {
	a, err := r.startAccept("sync", "bench-sync", fill(syncFlow, "{{path}}", "/bench/sync", "{{key}}", "sync"), "/bench/sync", 200, serveOpts{}, false)
	if err != nil {
		return err
	}
	defer a.done()
	res, cpu := a.measure(r)
	r.syncRPS = res.rps()
	row := r.add("sync", "validate+dedup+rate limit+map+respond, 200", res, cpu)
	r.ratioToBaseline(row, res, a, 0.8)
	return nil
}

// async: the accept path with a durable enqueue (202 once stored). The
// sink holds its requests during the measured run, so the flow's workers
// (concurrency 8) stall in their first calls and the run measures
// accepting alone; delivery has its own scenario.
func (r *runner) async() error {
	a, err := r.startAccept("async", "bench-async", fill(asyncFlow, "{{path}}", "/bench/async", "{{key}}", "async", "{{concurrency}}", "8"),
		"/bench/async", 202, serveOpts{}, true)
	if err != nil {
		return err
	}
	defer a.done()
	res, cpu := a.measure(r)
	row := r.add("async", "validate+dedup+durable enqueue, 202 (workers held)", res, cpu)
	t0 := time.Now()
	depth, _ := a.c.metric("conveyor_queue_depth", "flow", "bench-async")
	row.Details["metrics_scrape_ms"] = ms(time.Since(t0))
	row.Details["queue_depth_after"] = depth
	r.ratioToBaseline(row, res, a, 0.5)
	return nil
}

// delivery: N queued messages of an async flow whose only step calls the
// sink, timed from opening the sink until it has all N, against a plain
// http.Client posting the same N bodies to the sink. Each of opt.rounds
// rounds times both legs; the median round is reported.
func (r *runner) delivery() error {
	n, conc := r.opt.messages, r.opt.concurrency
	c, err := r.serveFlow("delivery", "bench-deliver", fill(deliveryFlow, "{{path}}", "/bench/deliver", "{{key}}", "deliver", "{{concurrency}}", strconv.Itoa(conc)), serveOpts{})
	if err != nil {
		return err
	}
	defer c.stop(30 * time.Second)
	// warm the connections of both legs with a few messages
	warm := load{Concurrency: conc, Total: uint64(2 * conc), URL: fixedURL(c.url + "/bench/deliver"), Body: orderBody, OK: statusIs(202)}
	r.sink.expect(2 * conc)
	warm.run(r.ctx)
	if err := r.sink.wait(r.ctx, 30*time.Second); err != nil {
		return fmt.Errorf("delivery warm-up: %w", err)
	}

	type round struct {
		plain, conveyor *loadResult // the plain client's posts; the enqueue
		plainOthers     float64
		drain           time.Duration
		drainOthers     float64
		redeliveries    int64
	}
	rate := func(x round) float64 { return float64(n) / x.drain.Seconds() }
	plainRate := func(x round) float64 { return float64(n) / x.plain.Elapsed.Seconds() }
	var rounds []round
	for range r.opt.rounds {
		var x round
		// plain Go: N posts at the same concurrency, same sink
		r.sink.expect(n)
		o := watchOthers(nil)
		plain := load{Concurrency: conc, Total: uint64(n), URL: fixedURL(r.sink.url() + "/sink/plain"), Body: orderBody, OK: statusIs(200),
			Header: func(h http.Header, seq uint64) { h.Set("Idempotency-Key", "plain:"+strconv.FormatUint(seq, 10)) }}
		x.plain = plain.run(r.ctx)
		if got := r.sink.distinct(); got != n {
			return fmt.Errorf("delivery: the plain client got %d of %d to the sink: %v", got, n, x.plain)
		}
		x.plainOthers = o.pct()
		var err error
		if x.conveyor, x.drain, err = r.drain(c, n, conc); x.conveyor == nil {
			return err
		}
		x.drainOthers = r.othersPct
		x.redeliveries = r.sink.requests.Load() - int64(r.sink.distinct())
		rounds = append(rounds, x)
		if err != nil { // not all arrived: this round is the result
			row := r.add("delivery", fmt.Sprintf("%d queued msgs -> sink, flow concurrency %d", n, conc), x.conveyor, 0)
			row.Details["error"] = err.Error()
			r.rep.check(row, "queue -> sink vs plain client", 0, "x", ">= 0.50x", false)
			return nil
		}
	}
	slices.SortFunc(rounds, func(x, y round) int { return cmp.Compare(rate(x)/plainRate(x), rate(y)/plainRate(y)) })
	mid := rounds[len(rounds)/2]

	r.othersPct = mid.plainOthers
	prow := r.add("delivery-go", fmt.Sprintf("plain http.Client, %d posts to the sink", n), mid.plain, 0)
	prow.Details["msgs_per_s"] = plainRate(mid)
	prow.Details["total_ms"] = ms(mid.plain.Elapsed)
	r.othersPct = mid.drainOthers
	row := r.add("delivery", fmt.Sprintf("%d queued msgs -> sink, flow concurrency %d", n, conc), mid.conveyor, 0)
	row.Details["enqueue_ms"] = ms(mid.conveyor.Elapsed)
	row.Details["redeliveries"] = mid.redeliveries
	row.Details["drain_ms"] = ms(mid.drain)
	row.Details["msgs_per_s"] = rate(mid)
	row.Details["ratio_min"] = rate(rounds[0]) / plainRate(rounds[0])
	row.Details["ratio_max"] = rate(rounds[len(rounds)-1]) / plainRate(rounds[len(rounds)-1])
	r.rep.ratio(row, "msgs/s queue -> sink vs plain client", rate(mid), plainRate(mid), 0.5)
	return nil
}

// drain queues n messages in c's delivery flow while the sink holds its
// requests, then times the delivery alone: from opening the sink until
// it has all n (the calls in flight at the start count in). It returns
// the enqueue's load (nil when it failed, with the error) and the drain
// time (with an error when not all arrived).
func (r *runner) drain(c *conveyor, n, conc int) (*loadResult, time.Duration, error) {
	r.sink.expect(n)
	r.sink.hold()
	defer r.sink.release() // on every return
	enq := load{Concurrency: conc, Total: uint64(n), URL: fixedURL(c.url + "/bench/deliver"), Body: orderBody, OK: statusIs(202)}
	res := enq.run(r.ctx)
	if res.OK != uint64(n) {
		return nil, 0, fmt.Errorf("delivery: %d of %d messages accepted: %v", res.OK, n, res)
	}
	var prof <-chan error
	if c.pprof != "" { // the drain takes a second or two: profile 2 s
		prof = c.profileCPU(2*time.Second, filepath.Join(r.tmp, "delivery.cpu.pprof"))
	}
	o := watchOthers(c.proc)
	start := time.Now()
	r.sink.release()
	werr := r.sink.wait(r.ctx, max(60*time.Second, 20*r.opt.duration))
	if prof != nil {
		if err := <-prof; err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpu profile:", err)
		}
	}
	r.othersPct = o.pct()
	if werr != nil {
		return res, 0, fmt.Errorf("%d of %d delivered: %w", r.sink.distinct(), n, werr)
	}
	return res, r.sink.reachedAt().Sub(start), nil
}

// pacedBaseline runs the baseline handler at rate for half the duration.
func (r *runner) pacedBaseline(rate float64) (*loadResult, error) {
	if r.base == nil {
		return nil, errors.New("the baseline server is not running (see the baseline scenario)")
	}
	l := r.baselineLoad()
	l.Rate, l.Duration = rate, max(r.opt.duration/2, time.Second)
	return l.run(r.ctx), nil
}

// reload: the sync flow at half its measured max rate, paced, while the
// flow file is rewritten (alternating two variants) opts.reloads times.
func (r *runner) reload() error {
	src := func(v string) string {
		return fill(syncFlow, "{{path}}", "/bench/sync", "{{key}}", "reload", "{{variant}}", v)
	}
	ws, err := r.workspace("reload", map[string]string{"bench-sync": src("a")})
	if err != nil {
		return err
	}
	c, err := startConveyor(r.ctx, r.bin, ws, serveOpts{profile: r.opt.profile})
	if err != nil {
		return err
	}
	defer c.stop(30 * time.Second)
	rate := r.syncRPS / 2
	if rate < 1 {
		return fmt.Errorf("reload: no sync rate measured")
	}
	var variantA, variantB atomic.Int64
	l := load{Concurrency: r.opt.concurrency, Rate: rate, URL: fixedURL(c.url + "/bench/sync"), Body: orderBody, OK: statusIs(200),
		Inspect: func(status int, body []byte) {
			switch {
			case bytes.Contains(body, []byte(`"variant":"a"`)):
				variantA.Add(1)
			case bytes.Contains(body, []byte(`"variant":"b"`)):
				variantB.Add(1)
			}
		}}
	// The floor of this machine: the bare baseline handler at the same
	// paced rate (its p99 is what the generator and the box add anyway).
	floor, err := r.pacedBaseline(rate)
	if err != nil {
		return err
	}
	r.warm(l)
	// control: the same paced load without rewrites, so what the rewrites
	// add to the latency can be told from what the sync path costs anyway
	ctl := l
	ctl.Duration, ctl.Inspect = max(r.opt.duration/2, time.Second), nil
	control := ctl.run(r.ctx)
	spacing := r.opt.duration / time.Duration(r.opt.reloads+1)
	if spacing < 300*time.Millisecond {
		fmt.Printf("   warning: rewrites %s apart; the engine debounces file events for 200 ms, so saves may be merged (raise -duration)\n", spacing.Round(time.Millisecond))
	}
	okBefore, err := c.metric("conveyor_reloads_total", "flow", "bench-sync", "result", "ok")
	if err != nil {
		return err
	}
	failedBefore, _ := c.metric("conveyor_reloads_total", "flow", "bench-sync", "result", "failed")

	var wg sync.WaitGroup
	var writeErr error
	start := time.Now()
	wg.Add(1)
	go func() { // the editor: n saves spread over the run
		defer wg.Done()
		for i := range r.opt.reloads {
			at := start.Add(time.Duration(i+1) * r.opt.duration / time.Duration(r.opt.reloads+1))
			select {
			case <-time.After(time.Until(at)):
			case <-r.ctx.Done():
				return
			}
			v := "b"
			if i%2 == 1 {
				v = "a"
			}
			if err := ws.writeFlow("bench-sync", src(v)); err != nil && writeErr == nil {
				writeErr = err
			}
		}
	}()
	l.Duration = r.opt.duration
	o := watchOthers(c.proc)
	res := l.run(r.ctx)
	r.othersPct = o.pct()
	wg.Wait()
	if writeErr != nil {
		return writeErr
	}
	time.Sleep(time.Second) // the last save's debounce and reload
	okAfter, err := c.metric("conveyor_reloads_total", "flow", "bench-sync", "result", "ok")
	if err != nil {
		return err
	}
	failedAfter, _ := c.metric("conveyor_reloads_total", "flow", "bench-sync", "result", "failed")
	reloads := int(okAfter - okBefore)

	row := r.add("reload", fmt.Sprintf("sync paced at %.0f req/s, %d flow rewrites", rate, r.opt.reloads), res, 0)
	row.Details["p99_from_schedule_ms"] = ms(res.Sched.quantile(0.99))
	row.Details["control_p99_ms"] = ms(control.Lat.quantile(0.99))
	row.Details["control_max_ms"] = ms(control.Lat.max)
	row.Details["control_failed"] = control.Failed
	row.Details["reloads_ok"] = reloads
	row.Details["baseline_p99_ms_same_rate"] = ms(floor.Lat.quantile(0.99))
	row.Details["reloads_failed"] = int(failedAfter - failedBefore)
	row.Details["answers_variant_a"] = variantA.Load()
	row.Details["answers_variant_b"] = variantB.Load()
	r.rep.check(row, "failed requests", float64(res.Failed), "", "0", res.Failed == 0)
	p99 := ms(res.Lat.quantile(0.99))
	r.rep.check(row, "p99 latency", p99, "ms", "<= 10 ms", p99 <= 10)
	r.rep.check(row, "reloads ok (conveyor_reloads_total)", float64(reloads), "", fmt.Sprintf(">= %d", r.opt.reloads), reloads >= r.opt.reloads)
	return nil
}

// rss: a workspace of opts.flows generated flows (half sync, half async)
// under mixed load; the server's peak resident set (VmHWM).
func (r *runner) rss() error {
	flows, paths := rssFlows(r.opt.flows)
	ws, err := r.workspace("rss", flows)
	if err != nil {
		return err
	}
	c, err := startConveyor(r.ctx, r.bin, ws, serveOpts{profile: r.opt.profile})
	if err != nil {
		return err
	}
	defer c.stop(30 * time.Second)
	_, idle := c.memory()
	// idle cost: what the server does with no traffic at all
	const idleWindow = 2 * time.Second
	cpu0 := c.cpu()
	wb0, sc0 := c.diskWrites()
	select {
	case <-time.After(idleWindow):
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	wb1, sc1 := c.diskWrites()
	idleCPU := float64(c.cpu()-cpu0) / float64(idleWindow) * 100
	idleWrites := float64(wb1-wb0) / idleWindow.Seconds() / (1 << 20)
	idleSyscalls := float64(sc1-sc0) / idleWindow.Seconds()
	stop := make(chan struct{})
	var peak atomic.Int64
	go func() { // sample VmRSS as well: VmHWM is the authority, this shows the curve's top
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if _, rss := c.memory(); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	l := load{Concurrency: r.opt.concurrency, Body: orderBody, OK: statusIs(200, 202),
		URL: func(n uint64) string { return c.url + paths[n%uint64(len(paths))] }}
	r.warm(l)
	res, cpu := r.measure(c.proc, l)
	close(stop)
	hwm, _ := c.memory()
	row := r.add("rss", fmt.Sprintf("%d flows (sync+async mixed), 200/202", r.opt.flows), res, cpu)
	row.Details["rss_idle_mb"] = mb(idle)
	row.Details["rss_sampled_peak_mb"] = mb(peak.Load())
	row.Details["vmhwm_mb"] = mb(hwm)
	row.Details["idle_cpu_pct"] = idleCPU
	row.Details["idle_disk_write_mb_per_s"] = idleWrites
	row.Details["idle_write_syscalls_per_s"] = idleSyscalls
	r.rep.check(row, "peak RSS (VmHWM)", mb(hwm), "MB", "<= 150 MB", hwm > 0 && hwm <= 150<<20)
	return nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
