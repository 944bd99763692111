package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// Options configure an engine. Zero fields take conveyor.yaml's values,
// then the defaults; flags set them to override the file.
type Options struct {
	Workspace   string
	Listen      string // trigger listener
	AdminListen string // admin listener: editor API, metrics, health
	DataDir     string // embedded store directory
	RedisURL    string // use the Redis store at this URL (overrides conveyor.yaml)
	Logger      *slog.Logger
	Getenv      func(string) (string, bool)
	Connectors  *connectors.Registry // default connectors.Default
	// Store replaces the store named by the configuration (tests, Redis).
	Store store.Store
	// Limiter replaces the in-process rate limiter (Redis: shared buckets).
	Limiter RateLimiter
	// Admin, when set, serves every admin path not served by the engine
	// (the editor API mounts itself here).
	Admin http.Handler
	// ShutdownTimeout bounds how long Shutdown waits for in-flight work.
	ShutdownTimeout time.Duration
	// RescanInterval is how often the workspace is rescanned besides
	// file-system events (default 5s; negative disables the watcher).
	RescanInterval time.Duration
	// Retention is how long finished messages stay in the journal
	// (default: store.retention of conveyor.yaml, 7 days). It applies to
	// the stores the engine opens; a Store given here keeps its own.
	Retention time.Duration
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener (off by default: profiles expose internals).
	Pprof bool
	// CreateInboxes makes a file trigger create its inbox when it is
	// missing, instead of waiting for it (conveyor demo: the example's
	// inbox is not in the repository). Off for serve: a missing inbox may
	// be a share not mounted yet, and a directory made in its place would
	// hide it.
	CreateInboxes bool
}

// Engine runs a workspace: triggers, workers, hot reload, metrics.
type Engine struct {
	opts    Options
	log     *slog.Logger
	store   store.Store
	metrics *metrics
	limiter RateLimiter
	dataDir string // the embedded store's directory (also with another store: not for a file trigger)
	// dedupFailOpen: a sync run whose dedup key cannot be claimed (Redis
	// out of reach) runs unchecked instead of answering 503.
	dedupFailOpen bool

	mu      sync.RWMutex // guards ws, flows, conns, revs, removed
	ws      *Workspace
	flows   map[string]*liveFlow
	conns   map[string]connectors.Caller
	revs    map[string]map[int]*flows.Flow // compiled older revisions, by flow
	removed map[string]bool                // flows whose file went while running: their kept queues are reported until empty
	static  staticConfig
	routes  atomic.Pointer[http.ServeMux]
	hashes  map[string]string    // path -> content hash of the files last loaded
	stamps  map[string]fileStamp // path -> what scanFiles last hashed (see scanFiles)
	reloadM sync.Mutex           // one reload at a time

	trigger, admin *http.Server
	triggerLn      net.Listener
	adminLn        net.Listener
	draining       atomic.Bool
	ready          atomic.Bool // work has started (open): the store answered at least once
	ctx            context.Context
	cancel         context.CancelFunc
	wg             sync.WaitGroup // background loops
	inflight       sync.WaitGroup // messages being processed (begin)
	sched          *scheduler
	sources        []triggerSource
	settling       sync.Map               // sync message id -> *store.Message whose journal write is under way
	writeSlots     chan struct{}          // background writes under way (background)
	bgWrites       sync.WaitGroup         // the same, for Shutdown
	aggregator     flows.Aggregator       // set by the aggregate support, if compiled in
	configErr      atomic.Pointer[string] // why the last conveyor.yaml change was not applied
	enableM        sync.Mutex             // orders SetEnabled and pollDisabled's writes of a flow's flag

	// serving is read-held by every request being served, trigger and
	// admin; Shutdown takes it to wait for the last, and keeps it.
	serving sync.RWMutex
	// stopping is set by Shutdown before it waits for inflight: no
	// message starts after (begin).
	stopMu   sync.Mutex
	stopping bool

	// storeDown: a shared store (Redis) did not answer when the engine
	// was built. Flows load without asking it (revision 0, enabled) until
	// Start's catch-up reads their flags and records their revisions.
	storeDown atomic.Bool
	notReady  atomic.Pointer[string] // why Start still waits for the store, for /readyz
}

// begin counts a leased message in inflight before a worker runs it, or
// says no once Shutdown waits for the messages in flight. A count after
// that wait began would be a WaitGroup misuse, and its message would run
// while the store closes.
func (e *Engine) begin() bool {
	e.stopMu.Lock()
	defer e.stopMu.Unlock()
	if e.stopping {
		return false
	}
	e.inflight.Add(1)
	return true
}

// staticConfig is what a reload may not change.
type staticConfig struct {
	listen, adminListen, backend, path, url, failOpen, retention string
}

// retentionOf is store.retention, or its default.
func retentionOf(c *dsl.Config) time.Duration {
	if r := c.Store.Retention; r != nil && r.D > 0 {
		return r.D
	}
	return 7 * 24 * time.Hour
}

// rateLimitFailOpen and dedupFailOpen read store.fail_open, with its
// defaults: rate limits open (an outage never stops traffic, limits are
// not enforced meanwhile), sync dedup closed (503 rather than risk
// running a duplicate).
func rateLimitFailOpen(f *dsl.FailOpen) bool {
	return f == nil || f.RateLimit == nil || *f.RateLimit
}

func dedupFailOpen(f *dsl.FailOpen) bool { return f != nil && f.Dedup != nil && *f.Dedup }

// New loads the workspace and opens the store. Flows with errors are
// reported (Status) and stay stopped; the engine still starts.
func New(opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if opts.Connectors == nil {
		opts.Connectors = connectors.Default
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 20 * time.Second
	}
	if opts.RescanInterval == 0 {
		opts.RescanInterval = 5 * time.Second
	}
	e := &Engine{opts: opts, log: opts.Logger, flows: map[string]*liveFlow{}, removed: map[string]bool{},
		revs: map[string]map[int]*flows.Flow{}, hashes: map[string]string{}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	ws := LoadWorkspace(opts.Workspace, opts.Getenv)
	if cfgDiags := configDiagnostics(ws); len(cfgDiags) > 0 {
		return nil, fmt.Errorf("%s", cfgDiags.Error())
	}
	e.static = staticOf(ws.Config)
	if opts.Listen == "" {
		opts.Listen = cmp.Or(ws.Config.Listen, "127.0.0.1:8080")
	}
	if opts.AdminListen == "" {
		opts.AdminListen = cmp.Or(ws.Config.AdminListen, "127.0.0.1:8081")
	}
	if opts.Retention <= 0 {
		opts.Retention = retentionOf(ws.Config)
	}
	if opts.Store == nil && (opts.RedisURL != "" || ws.Config.Store.Backend == "redis") {
		url := opts.RedisURL
		if url == "" {
			var err error
			if url, err = ws.Config.Store.URL.Resolve(opts.Getenv); err != nil {
				return nil, fmt.Errorf("%s: store.url: %w", ws.Config.File, err)
			}
		}
		url, ropts, err := redisOptions(url)
		if err != nil {
			return nil, err
		}
		ropts.JournalTTL = opts.Retention
		rs, err := store.OpenRedis(context.Background(), url, ropts)
		if err != nil { // a refusal (a wrong password): Redis out of reach is waited for
			if opts.RedisURL != "" {
				return nil, fmt.Errorf("--redis: %w", err)
			}
			at := ws.Config.Store.URL.At
			return nil, fmt.Errorf("%s:%d:%d: store.url: %w", ws.Config.File, at.Line, at.Col, err)
		}
		opts.Store = rs
		if opts.Limiter == nil {
			l := NewRedisLimiter(rs) // shared buckets
			l.FailOpen = rateLimitFailOpen(ws.Config.Store.FailOpen)
			opts.Limiter = l
		}
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = cmp.Or(ws.Config.Store.Path, "data")
		if !filepath.IsAbs(dataDir) {
			dataDir = filepath.Join(opts.Workspace, dataDir)
		}
	}
	if opts.Store == nil {
		s, err := store.OpenBolt(dataDir)
		if err != nil {
			return nil, err
		}
		opts.Store = s
	}
	if opts.Limiter == nil {
		opts.Limiter = NewLimiter()
	}
	e.opts, e.store, e.limiter, e.dataDir = opts, opts.Store, opts.Limiter, dataDir
	e.dedupFailOpen = dedupFailOpen(ws.Config.Store.FailOpen)
	e.aggregator = newAggregator(e)
	e.metrics = newMetrics(e)
	if rt, ok := e.store.(interface{ RoundTrips() int64 }); ok {
		e.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "conveyor", Name: "redis_round_trips_total",
			Help: "Round trips to Redis (a command, a script call or a pipeline each)."}, func() float64 { return float64(rt.RoundTrips()) }))
	}
	e.writeSlots = make(chan struct{}, maxBackgroundWrites)
	conns, err := e.buildConnections(ws.Config)
	if err != nil {
		return nil, err
	}
	e.conns = conns
	e.ws = ws
	if err := e.pingShared(); err != nil {
		// Asked per flow, a store out of reach would cost a timeout each.
		e.storeDown.Store(true)
		e.setNotReady(err)
		e.log.Warn("the store does not answer: conveyor starts not ready and waits for it; flows load meanwhile, their revisions and disabled flags are read once it answers",
			"store", e.storeName(), "error", err)
	}
	e.applyWorkspace(ws, "file")
	return e, nil
}

// pingShared pings a store shared by replicas (Redis); nil for others.
func (e *Engine) pingShared() error {
	p, ok := e.store.(interface{ Ping(context.Context) error })
	if _, shared := e.store.(sharedStore); !ok || !shared {
		return nil
	}
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
	defer cancel()
	return p.Ping(ctx)
}

// storeName names the store in logs and /readyz.
func (e *Engine) storeName() string {
	if _, ok := e.store.(*store.Redis); ok {
		return "redis"
	}
	return "store"
}

func (e *Engine) setNotReady(err error) {
	why := e.storeName() + ": " + err.Error()
	e.notReady.Store(&why)
}

func staticOf(c *dsl.Config) staticConfig {
	failOpen := fmt.Sprintf("rate_limit: %t, dedup: %t", rateLimitFailOpen(c.Store.FailOpen), dedupFailOpen(c.Store.FailOpen))
	return staticConfig{c.Listen, c.AdminListen, c.Store.Backend, c.Store.Path, c.Store.URL.Raw, failOpen, retentionOf(c).String()}
}

// configDiagnostics are the findings in conveyor.yaml, which stop a start.
func configDiagnostics(ws *Workspace) dsl.Diagnostics {
	var out dsl.Diagnostics
	for _, d := range ws.Diagnostics {
		if filepath.Base(d.File) == "conveyor.yaml" {
			out = append(out, d)
		}
	}
	return out
}

// buildConnections constructs a caller per connection of cfg.
func (e *Engine) buildConnections(cfg *dsl.Config) (map[string]connectors.Caller, error) {
	out := map[string]connectors.Caller{}
	fail := func(err error) (map[string]connectors.Caller, error) {
		for _, c := range out {
			c.Close()
		}
		return nil, err
	}
	for name, c := range cfg.Connections {
		kind, values, timeout, err := e.connectionValues(c)
		if err != nil {
			return fail(fmt.Errorf("%s:%d:%d: connections.%s: %w", cfg.File, c.At.Line, c.At.Col, name, err))
		}
		if kind == "" {
			continue
		}
		caller, err := e.opts.Connectors.Build(kind, connectors.Config{Name: name, Values: values, Timeout: timeout})
		if err != nil { // it names the connection
			return fail(fmt.Errorf("%s:%d:%d: %w", cfg.File, c.At.Line, c.At.Col, err))
		}
		out[name] = caller
	}
	return out, nil
}

// connectionValues turns a connection of conveyor.yaml into the kind and
// settings its connector is built from, with secrets resolved and paths
// made absolute against the workspace.
func (e *Engine) connectionValues(c dsl.Connection) (kind string, values map[string]any, timeout time.Duration, err error) {
	switch {
	case c.HTTP != nil:
		timeout = c.HTTP.Timeout.D
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		values, err = httpValues(c.HTTP, e.opts.Getenv, e.workspacePath)
		return "http", values, timeout, err
	case c.Postgres != nil:
		url, err := c.Postgres.URL.Resolve(e.opts.Getenv)
		if err != nil {
			return "", nil, 0, fmt.Errorf("url: %w", err)
		}
		return "postgres", map[string]any{"url": url, "max_conns": c.Postgres.MaxConns}, 30 * time.Second, nil
	case c.RedisStream != nil, c.NATS != nil:
		kind, sc := "redis_stream", c.RedisStream
		if c.NATS != nil {
			kind, sc = "nats", c.NATS
		}
		url, err := sc.URL.Resolve(e.opts.Getenv)
		if err != nil {
			return "", nil, 0, fmt.Errorf("url: %w", err)
		}
		return kind, map[string]any{"url": url}, 10 * time.Second, nil
	case c.File != nil:
		values = map[string]any{"dir": e.workspacePath(c.File.Dir), "format": cmp.Or(c.File.Format, "json")}
		if c.File.CSV != nil {
			values["csv"] = csvValues(c.File.CSV)
		}
		return "file", values, 30 * time.Second, nil
	}
	return "", nil, 0, nil
}

func csvValues(c *dsl.CSVOutFormat) map[string]any {
	header := c.Header == nil || *c.Header
	return map[string]any{"delimiter": cmp.Or(c.Delimiter, ","), "header": header, "escape_formulas": c.EscapeFormulas}
}

// workspacePath makes a path of the configuration absolute against the
// workspace directory.
func (e *Engine) workspacePath(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(e.opts.Workspace, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// httpValues are the settings of an http connection; abs makes a file
// path absolute against the workspace.
func httpValues(h *dsl.HTTPConnection, getenv func(string) (string, bool), abs func(string) string) (map[string]any, error) {
	base, err := h.BaseURL.Resolve(getenv)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{}
	for k, v := range h.Headers {
		if headers[k], err = v.Resolve(getenv); err != nil {
			return nil, fmt.Errorf("headers.%s: %w", k, err)
		}
	}
	values := map[string]any{"base_url": base, "headers": headers}
	if a := h.Auth; a != nil {
		switch {
		case a.Bearer != nil:
			tok, err := a.Bearer.Resolve(getenv)
			if err != nil {
				return nil, err
			}
			values["auth"] = map[string]any{"bearer": tok}
		case a.Basic != nil:
			u, err1 := a.Basic.Username.Resolve(getenv)
			p, err2 := a.Basic.Password.Resolve(getenv)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			values["auth"] = map[string]any{"basic": map[string]any{"username": u, "password": p}}
		case a.APIKey != nil:
			v, err := a.APIKey.Value.Resolve(getenv)
			if err != nil {
				return nil, err
			}
			header := a.APIKey.Header
			if header == "" {
				header = "X-API-Key"
			}
			values["auth"] = map[string]any{"api_key": map[string]any{"header": header, "value": v}}
		case a.OAuth2 != nil:
			o := a.OAuth2
			tokenURL, err1 := o.TokenURL.Resolve(getenv)
			id, err2 := o.ClientID.Resolve(getenv)
			secret, err3 := o.ClientSecret.Resolve(getenv)
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, err
			}
			values["auth"] = map[string]any{"oauth2": map[string]any{"token_url": tokenURL, "client_id": id, "client_secret": secret, "scopes": o.Scopes}}
		}
	}
	if t := h.TLS; t != nil {
		files := map[string]any{}
		for k, f := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile} {
			if f != "" {
				files[k] = abs(f)
			}
		}
		values["tls"] = files
	}
	return values, nil
}

// Start opens the listeners and the watcher, and starts the work
// (workers, schedules, file and stream triggers: open) once the store
// answers: at once, or, when a shared store is out of reach, in the
// background while the engine serves not ready (awaitStore).
func (e *Engine) Start() error {
	var err error
	if e.triggerLn, err = net.Listen("tcp", e.opts.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", e.opts.Listen, err)
	}
	if e.adminLn, err = net.Listen("tcp", e.opts.AdminListen); err != nil {
		e.triggerLn.Close()
		return fmt.Errorf("admin listen %s: %w", e.opts.AdminListen, err)
	}
	// New found the store out of reach (flags not read): it is waited for
	// at once, rather than with a first try that may time out before the
	// admin listener answers.
	cu := &catchUp{flags: e.storeDown.Load()}
	if !cu.flags {
		err = e.catchUp(cu)
		if _, shared := e.store.(sharedStore); err != nil && !shared {
			e.triggerLn.Close()
			e.adminLn.Close()
			return fmt.Errorf("store: recover: %w", err)
		}
	}
	e.trigger = &http.Server{Handler: e.tracked(http.HandlerFunc(e.serveTrigger)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	e.admin = &http.Server{Handler: e.tracked(e.adminHandler()), ReadHeaderTimeout: 10 * time.Second}
	e.goLoop(func() { _ = e.trigger.Serve(e.triggerLn) })
	e.goLoop(func() { _ = e.admin.Serve(e.adminLn) })
	if e.opts.RescanInterval > 0 {
		if err := e.startWatcher(); err != nil {
			e.log.Warn("file watcher unavailable; relying on periodic rescans", "error", err)
		}
	}
	if sw, ok := e.store.(sweeper); ok {
		e.goLoop(func() { e.sweepLoop(sw) })
	}
	if _, ok := e.store.(sharedStore); ok {
		e.goLoop(e.pollDisabled)
	}
	e.goLoop(e.flushBatches) // ends with e.ctx, which Shutdown cancels
	if cu.flags || err != nil {
		// Redis out of reach (a host that boots, a failover during a
		// rollout): serve not ready — /readyz and the triggers answer
		// 503 — and start the work once it answers.
		if err != nil {
			e.setNotReady(err)
			e.log.Warn("the store does not answer: conveyor is not ready and waits for it", "store", e.storeName(), "error", err)
		}
		e.goLoop(func() { e.awaitStore(cu) })
	} else {
		e.open()
	}
	e.log.Info("conveyor started", "listen", e.TriggerAddr(), "admin", e.AdminAddr(), "workspace", e.opts.Workspace, "flows", len(e.flowIDs()),
		"ready", e.ready.Load())
	return nil
}

// catchUp is what Start needs of the store before work starts; the
// steps done stay done while it waits for the store.
type catchUp struct {
	recovered bool // this consumer's leases from before went back to the queue
	flags     bool // disabled flags and revisions not read yet (storeDown at New)
}

// catchUp requeues what this replica held when it stopped (Recover): it
// must run before any lease, or it would requeue the leases of this
// run's own workers. After a start without the store, it then reads the
// flows' disabled flags and records their revisions, before a disabled
// flow could take a message.
func (e *Engine) catchUp(cu *catchUp) error {
	if !cu.recovered {
		n, err := e.store.Recover(e.ctx)
		if err != nil {
			return err
		}
		cu.recovered = true
		if n > 0 {
			e.log.Info("resuming messages that were in flight", "count", n)
		}
	}
	if cu.flags {
		// Under reloadM, which every applyWorkspace holds: a flow a
		// reload registers meanwhile either asked the store itself or is
		// among those whose flags are read here.
		e.reloadM.Lock()
		e.storeDown.Store(false) // a flow loaded from now on asks the store itself
		if err := e.readDisabled(); err != nil {
			e.storeDown.Store(true)
			e.reloadM.Unlock()
			return err
		}
		cu.flags = false
		e.forgetUnrecorded()
		e.reloadM.Unlock()
		e.Reload() // records the revisions loaded meanwhile
	}
	return nil
}

// awaitStore retries catchUp, backing off up to storeRetryMax, until the
// store answers or the engine stops, then starts the work. It logs the
// recovery, and an error other than the last one logged at most every
// storeLogEvery: not every try.
func (e *Engine) awaitStore(cu *catchUp) {
	since, logged := time.Now(), time.Now()
	last := ""
	if why := e.notReady.Load(); why != nil {
		last = *why
	}
	wait := 100 * time.Millisecond
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(wait + jitter(wait/2)):
		}
		err := e.catchUp(cu)
		if err == nil {
			break
		}
		e.setNotReady(err)
		if why := *e.notReady.Load(); why != last && time.Since(logged) >= storeLogEvery {
			e.log.Warn("the store still does not answer; waiting for it", "store", e.storeName(), "error", err, "waiting", time.Since(since).Round(time.Second).String())
			last, logged = why, time.Now()
		}
		wait = min(2*wait, storeRetryMax)
	}
	if e.open() {
		e.log.Info("the store answers: conveyor is ready", "store", e.storeName(), "waited", time.Since(since).Round(time.Millisecond).String())
	}
}

// storeRetryMax bounds the wait between two tries of awaitStore: the
// time a replica may stay not ready after its store is back.
const storeRetryMax = 2 * time.Second

// storeLogEvery bounds how often awaitStore logs a new error.
const storeLogEvery = 30 * time.Second

// open starts the work — workers, schedules, file and stream triggers —
// and makes the engine ready: at Start, or once the store answers. Not
// once Shutdown has begun: it then reports false.
func (e *Engine) open() bool {
	e.mu.Lock()
	if e.draining.Load() {
		e.mu.Unlock()
		return false
	}
	for _, lf := range e.flows {
		lf.pool.start()
	}
	// Made under e.mu: applyWorkspace syncs them under it (and Shutdown
	// reads them).
	e.sched = newScheduler(e)
	for _, newSource := range triggerSources {
		e.sources = append(e.sources, newSource(e))
	}
	sched, sources := e.sched, e.sources
	e.notReady.Store(nil)
	e.ready.Store(true)
	e.mu.Unlock()
	sched.sync() // they read e.mu themselves
	for _, src := range sources {
		src.sync()
	}
	return true
}

func (e *Engine) goLoop(f func()) {
	e.wg.Add(1)
	go func() { defer e.wg.Done(); f() }()
}

// TriggerAddr is the trigger listener's address (useful with port 0).
func (e *Engine) TriggerAddr() string { return e.triggerLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (e *Engine) AdminAddr() string { return e.adminLn.Addr().String() }

// ConfigError says why the last change to conveyor.yaml was not applied
// ("" when it was, or there was none).
func (e *Engine) ConfigError() string {
	if p := e.configErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.store }

// Shutdown stops accepting (new requests get 503), lets in-flight messages
// finish until ctx or the shutdown timeout ends, and leaves the rest
// queued for the next start.
func (e *Engine) Shutdown(ctx context.Context) error {
	// Under e.mu, as open checks draining and sets ready: an open that
	// has not checked yet starts nothing, one that has is done, and ready
	// stays false.
	e.mu.Lock()
	if !e.draining.CompareAndSwap(false, true) {
		e.mu.Unlock()
		return nil
	}
	e.ready.Store(false)
	sched, sources := e.sched, e.sources
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, e.opts.ShutdownTimeout)
	defer cancel()
	e.log.Info("shutting down: no longer accepting, finishing in-flight work")
	if sched != nil {
		sched.stop()
	}
	for _, src := range sources {
		src.stop()
	}
	e.mu.RLock()
	for _, lf := range e.flows {
		lf.pool.stop()
	}
	e.mu.RUnlock()
	e.stopMu.Lock()
	e.stopping = true
	e.stopMu.Unlock()
	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("shutdown deadline: interrupting in-flight messages; they stay queued")
	}
	e.cancel() // interrupts what is left; workers requeue those messages
	<-done
	var errs []error
	for _, srv := range []*http.Server{e.trigger, e.admin} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			// The deadline is over (waiting for messages may have used it
			// up): close the connections left. Their handlers still run to
			// the end, at the latest their flow's timeout, and are waited
			// for below.
			errs = append(errs, err, srv.Close())
		}
	}
	// Every request has returned, so none touches the store after it
	// closes, and no background write starts after bgWrites.Wait.
	e.serving.Lock()
	e.wg.Wait()
	e.bgWrites.Wait() // the sync journals of the last answers, completed messages
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	errs = append(errs, e.store.Close())
	return errors.Join(errs...)
}

// tracked holds e.serving while h serves a request. A request that gets
// to its handler once Shutdown waits for the others (its connection was
// closed) gets 503.
func (e *Engine) tracked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.serving.TryRLock() {
			w.Header().Set("Retry-After", "5")
			apiError(w, http.StatusServiceUnavailable, "shutting_down", "conveyor is shutting down; retry shortly", nil)
			return
		}
		defer e.serving.RUnlock()
		h.ServeHTTP(w, r)
	})
}

func (e *Engine) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !e.ready.Load() || e.draining.Load() {
			out := map[string]any{"status": "not ready"}
			if why := e.notReady.Load(); why != nil && !e.draining.Load() {
				out["reason"] = *why // the store Start waits for
			}
			writeJSON(w, http.StatusServiceUnavailable, out)
			return
		}
		if p, ok := e.store.(interface{ Ping(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			defer cancel()
			if err := p.Ping(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "store unavailable", "reason": e.storeName() + ": " + err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
	})
	if e.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	if e.opts.Admin != nil {
		mux.Handle("/", e.opts.Admin)
	}
	return mux
}

func (e *Engine) flowIDs() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]string, 0, len(e.flows))
	for id := range e.flows {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// queueIDs returns the flows whose queues /metrics reports: the live
// ones, and the removed ones whose queues may still hold messages.
func (e *Engine) queueIDs() (live, removed []string) {
	e.mu.RLock()
	for id := range e.removed {
		removed = append(removed, id)
	}
	e.mu.RUnlock()
	sort.Strings(removed)
	return e.flowIDs(), removed
}

// forgetQueue stops reporting the queue of removed flow id, found empty.
func (e *Engine) forgetQueue(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.removed, id)
}

// sweeper is a store that needs telling when to forget old messages.
type sweeper interface {
	Sweep(ctx context.Context, olderThan time.Time) (int, error)
}

func (e *Engine) sweepLoop(sw sweeper) {
	retention := e.opts.Retention
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if n, err := sw.Sweep(e.ctx, time.Now().Add(-retention)); err != nil {
			e.log.Error("cannot sweep the message journal", "error", err)
		} else if n > 0 {
			e.log.Info("swept finished messages from the journal", "count", n, "older_than", retention.String())
		}
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// redisOptions takes Conveyor's own settings out of a Redis URL's query —
// prefix, consumer (a stable replica name, such as the pod name, lets a
// restarted replica take its in-flight messages back at once) and
// lease_timeout — and leaves the rest for the Redis client.
func redisOptions(raw string) (string, store.RedisOptions, error) {
	var o store.RedisOptions
	base, query, _ := strings.Cut(raw, "?") // not url.Parse: cluster URLs list several host:port
	q, err := neturl.ParseQuery(query)
	if err != nil {
		return "", o, fmt.Errorf("store: redis url: %w", err)
	}
	o.Prefix, o.Consumer = q.Get("prefix"), q.Get("consumer")
	if v := q.Get("lease_timeout"); v != "" {
		if o.LeaseTimeout, err = time.ParseDuration(v); err != nil || o.LeaseTimeout <= 0 {
			return "", o, fmt.Errorf("store: redis url: lease_timeout %q is not a duration", v)
		}
	}
	for _, k := range []string{"prefix", "consumer", "lease_timeout"} {
		q.Del(k)
	}
	if len(q) > 0 {
		base += "?" + q.Encode()
	}
	return base, o, nil
}
