package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// Aggregate steps collect items into batches, one open batch per flow,
// topic and key. A batch lives in the store's meta records, so an item is
// accepted only once it is durable, and a restart loses nothing:
//
//	aggregate/index         JSON list of the slots of open batches
//	aggregate/batch/<slot>  JSON batchRecord of one open batch
//
// A batch is published as one message {key, count, items, first_at,
// flushed_at} when it holds size items (at once, from Add) or when within
// has passed since its first item (the flush loop, every aggFlushEvery).
// Publish fans out with ids derived from the batch id, so a crash between
// publishing and deleting the batch publishes it again without storing a
// second copy. Writes go index before record when a batch opens and record
// before index when it closes: a crash in between leaves an index entry
// without a record, which the flush loop drops.
//
// An item whose IdempotencyKey is already in its open batch is not added
// again (a retried split, a crash before the checkpoint). Once its batch
// is published, a re-run of the step adds it to the next batch: that is
// at-least-once, like every other effect without a durable memo.
//
// Limitation: the read-modify-write of a batch is serialized by an
// in-process mutex. With the Redis store and several replicas, two
// replicas adding to the same batch can lose an item; that needs a
// store-level atomic append (a Lua script over the meta hash) before
// aggregate steps run on more than one replica. Flushing from several
// replicas is safe: the deterministic message ids keep it single.
type aggregator struct {
	e  *Engine
	mu sync.Mutex // serializes every read-modify-write of the index and batches
}

// aggFlushEvery is how often the flush loop looks for batches whose within
// has passed.
const aggFlushEvery = 200 * time.Millisecond

const (
	aggIndexKey = "aggregate/index"
	aggBatchKey = "aggregate/batch/"
	// aggMaxStored bounds the items of one batch: each Add rewrites the
	// batch's record, so batches are meant for tens to thousands of items.
	aggMaxStored = 10_000
)

var _ flows.Aggregator = (*aggregator)(nil)

// batchRecord is an open batch as stored.
type batchRecord struct {
	ID      string            `json:"id"` // publication key of the batch
	Flow    string            `json:"flow"`
	Topic   string            `json:"topic"`
	Key     string            `json:"key"`
	Size    int               `json:"size,omitempty"`
	Within  time.Duration     `json:"within,omitempty"`
	FirstAt time.Time         `json:"first_at"`
	Items   []json.RawMessage `json:"items"`
	Keys    []string          `json:"keys"` // idempotency keys of the items, in order
}

func newAggregator(e *Engine) *aggregator { return &aggregator{e: e} }

// slot names the open batch of a flow, topic and key.
func slot(flow, topic, key string) string {
	h := sha256.Sum256([]byte(flow + "\x00" + topic + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// Add stores b.Item in its open batch, opening one when there is none,
// and publishes the batch when it is full.
func (a *aggregator) Add(ctx context.Context, b flows.Batch) error {
	item, err := jsonv.Marshal(b.Item)
	if err != nil {
		return fmt.Errorf("aggregate: item: %w", err)
	}
	s := slot(b.Flow, b.Topic, b.Key)
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, err := a.load(ctx, s)
	if err != nil {
		return err
	}
	if rec != nil && b.IdempotencyKey != "" && slices.Contains(rec.Keys, b.IdempotencyKey) {
		return nil // a retry of a step whose item is already in
	}
	if rec != nil && full(rec) {
		// Left full by a publish that failed: publish it before this item.
		if err := a.flush(ctx, s, rec); err != nil {
			return err
		}
		rec = nil
	}
	if rec == nil {
		now := time.Now().UTC()
		h := sha256.Sum256([]byte(s + "\x00" + b.IdempotencyKey + "\x00" + strconv.FormatInt(now.UnixNano(), 10)))
		rec = &batchRecord{ID: "agg-" + hex.EncodeToString(h[:16]), Flow: b.Flow, Topic: b.Topic, Key: b.Key, FirstAt: now}
		if err := a.updateIndex(ctx, func(idx []string) []string {
			if slices.Contains(idx, s) {
				return idx // left by a crash before the record was written
			}
			return append(idx, s)
		}); err != nil {
			return err
		}
	}
	if len(rec.Items) >= aggMaxStored {
		return fmt.Errorf("aggregate: batch %q of flow %s holds %d items already; set a size or a shorter within", b.Key, b.Flow, len(rec.Items))
	}
	rec.Size, rec.Within = b.Size, b.Within // the latest revision of the step decides
	rec.Items, rec.Keys = append(rec.Items, item), append(rec.Keys, b.IdempotencyKey)
	if err := a.save(ctx, s, rec); err != nil {
		return err
	}
	if full(rec) {
		if err := a.flush(ctx, s, rec); err != nil {
			// The item is stored; the flush loop publishes the batch.
			a.e.log.Warn("cannot publish a full batch yet; retrying", "flow", b.Flow, "topic", b.Topic, "error", err)
		}
	}
	return nil
}

func full(rec *batchRecord) bool { return rec.Size > 0 && len(rec.Items) >= rec.Size }

func due(rec *batchRecord, now time.Time) bool {
	return full(rec) || (rec.Within > 0 && !now.Before(rec.FirstAt.Add(rec.Within)))
}

// flushDue publishes every batch that is full or whose within has passed.
func (a *aggregator) flushDue(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	idx, err := a.index(ctx)
	if err != nil {
		return err
	}
	var errs []error
	var gone []string
	for _, s := range idx {
		rec, err := a.load(ctx, s)
		switch {
		case err != nil:
			errs = append(errs, err)
		case rec == nil:
			gone = append(gone, s) // a crash between index and record
		case due(rec, time.Now()):
			errs = append(errs, a.flush(ctx, s, rec))
		}
	}
	if len(gone) > 0 {
		errs = append(errs, a.updateIndex(ctx, func(idx []string) []string {
			return slices.DeleteFunc(idx, func(s string) bool { return slices.Contains(gone, s) })
		}))
	}
	return errors.Join(errs...)
}

// flush publishes rec and deletes it; a.mu is held.
func (a *aggregator) flush(ctx context.Context, s string, rec *batchRecord) error {
	items := make([]any, len(rec.Items))
	for i, raw := range rec.Items {
		v, err := jsonv.Decode(raw)
		if err != nil {
			return fmt.Errorf("aggregate: batch %s: item %d unreadable: %w", rec.ID, i, err)
		}
		items[i] = v
	}
	body := map[string]any{"key": rec.Key, "count": len(items), "items": items,
		"first_at": rec.FirstAt.Format(time.RFC3339Nano), "flushed_at": time.Now().UTC().Format(time.RFC3339Nano)}
	if err := a.e.Publish(ctx, rec.Topic, body, rec.ID); err != nil {
		return fmt.Errorf("aggregate: publish batch %s to %s: %w", rec.ID, rec.Topic, err)
	}
	a.e.log.Info("published a batch", "flow", rec.Flow, "topic", rec.Topic, "key", rec.Key, "count", len(items), "batch", rec.ID)
	// Published: the rest must happen even when shutdown interrupts ctx.
	ctx = context.WithoutCancel(ctx)
	if err := a.e.store.PutMeta(ctx, aggBatchKey+s, nil); err != nil {
		return fmt.Errorf("aggregate: delete batch %s: %w", rec.ID, err)
	}
	return a.updateIndex(ctx, func(idx []string) []string {
		return slices.DeleteFunc(idx, func(x string) bool { return x == s })
	})
}

func (a *aggregator) load(ctx context.Context, s string) (*batchRecord, error) {
	raw, err := a.e.store.GetMeta(ctx, aggBatchKey+s)
	if err != nil || raw == nil {
		return nil, err
	}
	var rec batchRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("aggregate: stored batch %s unreadable: %w", s, err)
	}
	return &rec, nil
}

func (a *aggregator) save(ctx context.Context, s string, rec *batchRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return a.e.store.PutMeta(ctx, aggBatchKey+s, raw)
}

func (a *aggregator) index(ctx context.Context) ([]string, error) {
	raw, err := a.e.store.GetMeta(ctx, aggIndexKey)
	if err != nil || raw == nil {
		return nil, err
	}
	var idx []string
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("aggregate: stored index unreadable: %w", err)
	}
	return idx, nil
}

func (a *aggregator) updateIndex(ctx context.Context, change func([]string) []string) error {
	idx, err := a.index(ctx)
	if err != nil {
		return err
	}
	idx = change(idx)
	if len(idx) == 0 {
		return a.e.store.PutMeta(ctx, aggIndexKey, nil)
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return a.e.store.PutMeta(ctx, aggIndexKey, raw)
}

// flushBatches is the flush loop; it runs until the engine's context ends.
func (e *Engine) flushBatches() {
	a, ok := e.aggregator.(*aggregator)
	if !ok {
		return
	}
	tick := time.NewTicker(aggFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		if !e.ready.Load() {
			continue // events fan out once the work starts (open)
		}
		if err := a.flushDue(e.ctx); err != nil && !errors.Is(err, context.Canceled) {
			e.log.Error("cannot flush batches; retrying", "error", err)
		}
	}
}
