package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// Publish delivers body to every flow whose trigger is the event topic:
// each gets its own durable copy. The copy's id derives from the
// publication key and the subscriber, so a publication repeated by a
// retry stores nothing new.
func (e *Engine) Publish(ctx context.Context, topic string, body any, key string) error {
	raw, err := jsonv.Marshal(body)
	if err != nil {
		return err
	}
	e.mu.RLock()
	var subs []*liveFlow
	for _, lf := range e.flows {
		if f := lf.cur.Load(); f != nil && f.Trigger.Event != nil && f.Trigger.Event.Topic == topic {
			subs = append(subs, lf)
		}
	}
	e.mu.RUnlock()
	if len(subs) == 0 {
		e.log.Debug("published to a topic without subscribers", "topic", topic)
		return nil
	}
	now := time.Now().UTC()
	for _, lf := range subs {
		f := lf.cur.Load()
		m := &store.Message{ID: eventID(key, lf.id), Flow: lf.id, Revision: f.Revision, Status: store.Queued, Source: "event:" + topic,
			ReceivedAt: now, DueAt: now, Body: raw}
		e.metrics.received.WithLabelValues(lf.id).Inc()
		existing, err := e.store.Accept(ctx, m, 0)
		if err != nil {
			return err
		}
		if existing == nil {
			e.metrics.accepted.WithLabelValues(lf.id).Inc()
			lf.pool.wake()
		}
	}
	return nil
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
