package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	editorapi "github.com/conveyor-run/conveyor/editor-api"
	"github.com/conveyor-run/conveyor/runtime"
)

type serveFlags struct {
	workspace, listen, adminListen, dataDir, redis, logLevel string
	pprof                                                    bool
	createInboxes                                            bool // demo: make missing file-trigger inboxes
}

func (f *serveFlags) register(cmd *cobra.Command, workspaceDefault string) {
	cmd.Flags().StringVar(&f.workspace, "workspace", workspaceDefault, "workspace directory")
	cmd.Flags().StringVar(&f.listen, "listen", "", "trigger listener address (overrides conveyor.yaml)")
	cmd.Flags().StringVar(&f.adminListen, "admin-listen", "", "admin listener address: API, metrics, health (overrides conveyor.yaml)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "embedded store directory (overrides conveyor.yaml)")
	cmd.Flags().StringVar(&f.redis, "redis", "", "Redis URL: use the Redis store (overrides conveyor.yaml)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().BoolVar(&f.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the admin listener")
}

// noWorkspaceArg refuses arguments to serve and demo, which take the
// workspace as --workspace (lint and test take it as an argument).
func noWorkspaceArg(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments: pass the workspace as --workspace %s", cmd.Name(), args[0])
	}
	return nil
}

func (f *serveFlags) logger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, &exitError{2, fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)}
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv})), nil
}

// redisLog takes go-redis's own log lines (a pool that cannot dial, say)
// into the JSON log, at debug: the store and the connectors report the
// failures that matter with their own errors.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func serveCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a workspace: triggers, workers, hot reload, metrics",
		Args:  noWorkspaceArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			tuneGC(os.Getenv)
			e, err := newEngine(f, nil)
			if err != nil {
				return err
			}
			if err := e.Start(); err != nil {
				return findings("%v", err)
			}
			return waitForSignals(e)
		},
	}
	f.register(cmd, ".")
	return cmd
}

// serveGCPercent is the garbage collector's target when GOGC is not set:
// a server's live heap is small (tens of MB with a hundred flows), and
// collecting at 3x instead of 2x of it cuts the collector's CPU. (400
// saved a little more CPU but took the bench's 100-flow peak RSS from
// 106 to 146 MB, close to its 150 MB budget.)
const serveGCPercent = 200

// tuneGC sets serveGCPercent unless the environment sets GOGC.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}

// newEngine builds the engine with the editor API mounted on its admin
// listener. getenv nil means the process environment.
func newEngine(f serveFlags, getenv func(string) (string, bool)) (*runtime.Engine, error) {
	if !runtime.IsWorkspace(f.workspace) {
		return nil, &exitError{2, fmt.Errorf("%s is not a workspace (a folder with conveyor.yaml or flows/): pass --workspace", f.workspace)}
	}
	log, err := f.logger()
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLog{log})
	var api http.Handler = http.NotFoundHandler() // replaced before Start
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.ServeHTTP(w, r) })
	e, err := runtime.New(runtime.Options{Workspace: f.workspace, Listen: f.listen, AdminListen: f.adminListen,
		DataDir: f.dataDir, RedisURL: f.redis, Logger: log, Admin: admin, Getenv: getenv, Pprof: f.pprof, CreateInboxes: f.createInboxes,
		ShutdownTimeout: shutdownDeadline})
	if err != nil {
		return nil, findings("%v", err)
	}
	tokens, err := editorapi.TokensFromConfig(e.Config(), getenv)
	if err != nil {
		return nil, findings("conveyor.yaml: %v", err)
	}
	if len(tokens) == 0 {
		log.Warn("editor API: conveyor.yaml declares no api.tokens; every /api/v1 route answers 401")
	}
	api = editorapi.New(e, tokens, editorapi.WithLogger(log))
	return e, nil
}

// waitForSignals reloads on SIGHUP and shuts down on SIGTERM or SIGINT.
func waitForSignals(e *runtime.Engine) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			e.Reload()
			continue
		}
		break
	}
	signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownDeadline)
	defer cancel()
	err := e.Shutdown(ctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return findings("shutdown: work was still running after %s: sync requests in flight got no answer; "+
			"queued and interrupted messages run at the next start (%v)", shutdownDeadline, err)
	case err != nil:
		return findings("shutdown: %v", err)
	}
	return nil
}

// shutdownDeadline is how long SIGTERM waits for the work in flight.
const shutdownDeadline = 30 * time.Second
