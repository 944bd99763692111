package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// Publish delivers body to every flow whose trigger is the event topic:
// each gets its own durable copy. The copy's id derives from the
// publication key and the subscriber, so a publication repeated by a
// retry stores nothing new. A subscriber with dedup claims its own key
// for its copy, computed on the body as the subscriber will read it: a
// copy whose key is held already is a duplicate for that subscriber
// only, and a copy whose key cannot be computed is journaled as a dead
// letter saying why, as a stream trigger does (the publisher's retry
// would compute the same key again). A subscriber whose file has had
// errors since the start (no revision went live) is known by its
// decoded trigger: its copy waits for the fix, without a dedup check.
func (e *Engine) Publish(ctx context.Context, topic string, body any, key string) error {
	raw, err := jsonv.Marshal(body)
	if err != nil {
		return err
	}
	type subscriber struct {
		lf *liveFlow
		f  *flows.Flow // nil: the flow has no live revision yet
	}
	e.mu.RLock()
	var subs []subscriber
	for _, lf := range e.flows {
		f := lf.cur.Load()
		switch {
		case f != nil && f.Trigger.Event != nil && f.Trigger.Event.Topic == topic:
			subs = append(subs, subscriber{lf, f})
		case f == nil && e.ws != nil && subscribes(e.ws.Sources[lf.id], topic):
			// A flow whose file had errors since the start: it gets its
			// copy all the same, run once the file is fixed (on the
			// revision then live), rather than losing the event.
			subs = append(subs, subscriber{lf, nil})
		}
	}
	e.mu.RUnlock()
	if len(subs) == 0 {
		e.log.Debug("published to a topic without subscribers", "topic", topic)
		return nil
	}
	now := time.Now().UTC()
	var stored any // body as stored, decoded once for the dedup keys
	decoded := false
	for _, sub := range subs {
		lf, f := sub.lf, sub.f
		m := &store.Message{ID: eventID(key, lf.id), Flow: lf.id, Status: store.Queued, Source: "event:" + topic,
			ReceivedAt: now, DueAt: now, Body: raw}
		var ttl time.Duration
		var why error
		if f == nil {
			e.log.Warn("event stored for a flow that has no live revision: it runs once the flow's file loads (unchecked for duplicates)",
				"flow", lf.id, "message", m.ID, "topic", topic)
		} else {
			m.Revision = f.Revision
		}
		if f != nil && f.Dedup != nil {
			if !decoded {
				stored, err = jsonv.Decode(raw)
				if err != nil {
					return err
				}
				decoded = true
			}
			if m.DedupKey, why = eventDedupKey(f, m, stored); why == nil {
				ttl = f.Dedup.TTL
			} else {
				m.Status, m.Error = store.Dead, why.Error()
				m.Attempts = []store.Attempt{{At: now, Step: "trigger", Class: "permanent", Error: why.Error()}}
			}
		}
		e.metrics.received.WithLabelValues(lf.id).Inc()
		existing, err := e.store.Accept(ctx, m, ttl)
		switch {
		case err != nil:
			e.metrics.rejected.WithLabelValues(lf.id, "store").Inc()
			// The store's failure, not the publishing message's: it waits
			// for the store without using up an attempt. The copies stored
			// already are found again by their ids when it publishes again.
			return retryLater{err}
		case existing != nil:
			// Held by a live message with the same key, or stored already by
			// an earlier try of this publication.
			e.metrics.duplicates.WithLabelValues(lf.id).Inc()
		case why != nil:
			e.metrics.rejected.WithLabelValues(lf.id, "dedup_key").Inc()
			e.metrics.deadLettered.WithLabelValues(lf.id).Inc()
			e.log.Error("event dead-lettered", "flow", lf.id, "message", m.ID, "topic", topic, "error", why)
		default:
			e.metrics.accepted.WithLabelValues(lf.id).Inc()
			lf.pool.wake()
		}
	}
	return nil
}

// subscribes reports whether src, a flow file that decoded, has the event
// trigger topic.
func subscribes(src *dsl.Flow, topic string) bool {
	return src != nil && src.Trigger != nil && src.Trigger.Event != nil && src.Trigger.Event.Topic == topic
}

// eventDedupKey computes the dedup key of m, subscriber f's copy of a
// publication whose body is body, as the other triggers do.
func eventDedupKey(f *flows.Flow, m *store.Message, body any) (string, error) {
	return dedupKeyOf(f, mappings.NewEnv(body, nil, mappings.Meta{ID: m.ID, Flow: f.ID, Revision: f.Revision, ReceivedAt: m.ReceivedAt}))
}

func eventID(key, flow string) string {
	h := sha256.Sum256([]byte(key + "\x00" + flow))
	return "evt-" + hex.EncodeToString(h[:16])
}

// slogLogger adapts slog to flows.Logger for log steps.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Log(ctx context.Context, level, msg string, attrs ...any) {
	lv := slog.LevelInfo
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	s.l.Log(ctx, lv, msg, attrs...)
}
