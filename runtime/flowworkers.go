package runtime

import (
	"context"
	"sync"
)

// flowWorkers keeps one goroutine per flow running, as the file and
// stream triggers need: started for a flow that wants one, restarted
// when the flow's spec changes, stopped when the flow no longer wants
// it. A stopped worker has returned before sync or stop returns, so two
// never work for one flow at once.
type flowWorkers[S comparable] struct {
	e       *Engine
	mu      sync.Mutex // held while workers start and stop
	running map[string]*flowWorker[S]
	stopped bool
}

type flowWorker[S comparable] struct {
	spec   S
	cancel context.CancelFunc
	done   chan struct{}
}

func newFlowWorkers[S comparable](e *Engine) *flowWorkers[S] {
	return &flowWorkers[S]{e: e, running: map[string]*flowWorker[S]{}}
}

// sync makes the workers match want, read under the lock so that
// concurrent syncs apply in order. start prepares the worker of a flow
// that has none: its run func works until ctx ends; an error (logged by
// start) leaves the flow without a worker until the next sync.
func (w *flowWorkers[S]) sync(want func() map[string]S, start func(id string, spec S) (func(ctx context.Context), error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	specs := want()
	for id, r := range w.running {
		if sp, ok := specs[id]; !ok || sp != r.spec {
			r.cancel()
			<-r.done
			delete(w.running, id)
		}
	}
	for id, sp := range specs {
		if w.running[id] != nil {
			continue
		}
		run, err := start(id, sp)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithCancel(w.e.ctx)
		r := &flowWorker[S]{spec: sp, cancel: cancel, done: make(chan struct{})}
		w.running[id] = r
		w.e.goLoop(func() {
			defer close(r.done)
			defer cancel()
			run(ctx)
		})
	}
}

// stop stops every worker; later syncs start none.
func (w *flowWorkers[S]) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for id, r := range w.running {
		r.cancel()
		<-r.done
		delete(w.running, id)
	}
}
