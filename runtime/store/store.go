// Package store defines what the engine keeps durably — the message queue
// with its checkpoints, memos and dead letters, the message journal, dedup
// keys and flow revisions — and implements it on an embedded bbolt file.
// The Redis implementation and the shared conformance suite (storetest)
// hold every implementation to the same semantics.
package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Status is where a message stands.
type Status string

// The statuses of a message.
const (
	Queued    Status = "queued"    // waiting for a worker, due at DueAt
	Running   Status = "running"   // leased by a worker
	Retrying  Status = "retrying"  // failed transiently, due again at DueAt
	Completed Status = "completed" // every step done
	Filtered  Status = "filtered"  // a filter step ended it
	Dead      Status = "dead"      // in the dead-letter queue
	Discarded Status = "discarded" // removed from the dead-letter queue
	Failed    Status = "failed"    // sync run that failed (journal only)
)

// Pending reports whether a message with status s still waits for a worker.
func (s Status) Pending() bool { return s == Queued || s == Retrying || s == Running }

// Attempt is one failed try of a message.
type Attempt struct {
	At    time.Time `json:"at"`
	Step  string    `json:"step,omitempty"`
	Class string    `json:"class,omitempty"`
	Error string    `json:"error"`
}

// Message is a stored message: the accepted payload and everything that
// happened to it.
type Message struct {
	ID         string                     `json:"id"`
	Flow       string                     `json:"flow"`
	Revision   int                        `json:"revision"`
	Status     Status                     `json:"status"`
	Source     string                     `json:"source,omitempty"` // http, event:<topic>, schedule, replay:<id>
	DedupKey   string                     `json:"dedup_key,omitempty"`
	ReceivedAt time.Time                  `json:"received_at"`
	UpdatedAt  time.Time                  `json:"updated_at"`
	DueAt      time.Time                  `json:"due_at"`
	Attempt    int                        `json:"attempt"` // attempts started
	Body       json.RawMessage            `json:"body"`
	Headers    map[string]string          `json:"headers,omitempty"`
	Query      map[string]string          `json:"query,omitempty"`
	Params     map[string]string          `json:"params,omitempty"`
	State      json.RawMessage            `json:"state,omitempty"` // checkpoint: flows.State
	Memo       map[string]json.RawMessage `json:"memo,omitempty"`  // idempotency key -> response
	Attempts   []Attempt                  `json:"attempts,omitempty"`
	FailedStep string                     `json:"failed_step,omitempty"`
	Error      string                     `json:"error,omitempty"`
	Trace      json.RawMessage            `json:"trace,omitempty"`
	Response   json.RawMessage            `json:"response,omitempty"`
	Reason     string                     `json:"reason,omitempty"` // why it was discarded

	lease string // the Redis stream entry this copy was leased as; Save checks it is still ours
	// Expect, when set, makes Save conditional: it writes only while the
	// stored message has this status and, for a message read with Get,
	// has not been written since; it fails with ErrChanged otherwise (a
	// dead letter that another replica replayed or discarded meanwhile,
	// even one that died again since). It is not stored.
	Expect Status `json:"-"`
	read   string // the stored record as Get read it (see Expect)
}

// Filter selects messages from the journal. Zero fields match all.
type Filter struct {
	Flow   string
	Status Status
	Key    string // dedup key
	Since  time.Time
	Limit  int     // default 100
	After  *Cursor // the next page: only what is listed after this place
}

// A listing is newest first: by receive time, then by id, both
// descending. Cursor is a place in it, taken from the last message of a
// page (CursorOf) so that the next page starts right after it, however
// many messages arrive meanwhile.
type Cursor struct {
	At time.Time
	ID string
}

// CursorOf is the place of m in a listing.
func CursorOf(m *Message) *Cursor { return &Cursor{At: m.ReceivedAt, ID: m.ID} }

// ListOrder compares a and b as a listing orders them (for
// slices.SortFunc).
func ListOrder(a, b *Message) int {
	if c := b.ReceivedAt.Compare(a.ReceivedAt); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// Precedes reports whether c comes before m in a listing, so that m
// belongs to the page after c. A nil cursor precedes everything.
func (c *Cursor) Precedes(m *Message) bool {
	return c == nil || ListOrder(&Message{ReceivedAt: c.At, ID: c.ID}, m) < 0
}

// String encodes c for a client to hand back as is (see ParseCursor).
func (c *Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d.%s", c.At.UnixNano(), c.ID))
}

// ParseCursor decodes what Cursor.String gave.
func ParseCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	ns, id, ok := strings.Cut(string(b), ".")
	n, nerr := strconv.ParseInt(ns, 10, 64)
	if err != nil || !ok || nerr != nil || id == "" {
		return nil, fmt.Errorf("%q is not a cursor of this listing", s)
	}
	return &Cursor{At: time.Unix(0, n).UTC(), ID: id}, nil
}

// Revision is one version of a flow file that went live.
type Revision struct {
	Flow   string    `json:"flow"`
	Number int       `json:"revision"`
	Hash   string    `json:"hash"`
	Source string    `json:"source"`
	Author string    `json:"author"`
	At     time.Time `json:"at"`
}

// AuditEntry records one change made through the API or on disk.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`  // token name, or "file"
	Action string    `json:"action"` // e.g. flow.update, flow.rollback, message.replay
	Target string    `json:"target"` // flow or message id
	Detail string    `json:"detail,omitempty"`
}

// ErrNotFound is returned for an unknown message id.
var ErrNotFound = errors.New("not found")

// ErrChanged is returned by a Save whose Message.Expect no longer holds.
var ErrChanged = errors.New("the message changed meanwhile")

// Store is the engine's durable state. Implementations are safe for
// concurrent use.
type Store interface {
	// Accept stores m (queued when its status is pending; a dead letter
	// from a trigger is journaled, not queued) and claims m.DedupKey for ttl, in one
	// transaction, durably, before it returns. When the key is held by a
	// live message, or a message with m.ID exists, nothing is stored and
	// that message is returned.
	Accept(ctx context.Context, m *Message, ttl time.Duration) (existing *Message, err error)
	// Lease hands out up to n messages of flow that are due at now, marking
	// them running. A message is leased to one worker at a time.
	Lease(ctx context.Context, flow string, now time.Time, n int) ([]*Message, error)
	// Save writes m. Status Queued or Retrying (re)queues it at DueAt;
	// other statuses take it off the queue. A message's body is the one
	// it was first stored with: a store may keep it apart and write it once.
	Save(ctx context.Context, m *Message) error
	// Get returns a message by id.
	Get(ctx context.Context, id string) (*Message, error)
	// List returns messages newest first.
	List(ctx context.Context, f Filter) ([]*Message, error)
	// Recover requeues messages leased by workers that are gone (all of
	// them for the embedded store, at start).
	Recover(ctx context.Context) (int, error)
	// Depth returns the number of queued messages of flow and the
	// receive time of the oldest.
	Depth(ctx context.Context, flow string) (int, time.Time, error)

	// ClaimKey claims a dedup key for a sync run: ok is false and holder
	// names the message when it is taken. A key that a failed run
	// released (Finish) is claimed for that run: ok is true and holder
	// names it, and the caller runs as that message, so the sender's
	// retry keeps its id, and with it the Idempotency-Keys of its calls
	// and the memo of those that succeeded.
	ClaimKey(ctx context.Context, key, messageID string, ttl time.Duration) (holder string, ok bool, err error)
	// ConfirmKey keeps a claimed key for ttl once the run succeeded.
	ConfirmKey(ctx context.Context, key, messageID string, ttl time.Duration) error
	// ReleaseKey frees a key claimed by messageID, so the sender's retry runs.
	ReleaseKey(ctx context.Context, key, messageID string) error
	// Finish journals a sync run and, in the same write, confirms its dedup
	// key for ttl (completed or filtered: a duplicate gets the cached
	// response) or releases it to the run for ttl (any other status: the
	// sender's retry runs, as this run; see ClaimKey).
	Finish(ctx context.Context, m *Message, ttl time.Duration) error

	// AddRevision stores a revision of a flow.
	AddRevision(ctx context.Context, r Revision) error
	// Revisions lists the revisions of a flow, oldest first.
	Revisions(ctx context.Context, flow string) ([]Revision, error)
	// Revision returns revision n of a flow, or its latest for n <= 0,
	// without reading the others; ErrNotFound when there is none.
	Revision(ctx context.Context, flow string, n int) (*Revision, error)

	// AppendAudit records a change; Audit lists the newest first.
	AppendAudit(ctx context.Context, a AuditEntry) error
	Audit(ctx context.Context, limit int) ([]AuditEntry, error)

	// PutMeta and GetMeta keep small settings across restarts (such as
	// which flows are disabled). GetMeta returns nil for an absent key.
	PutMeta(ctx context.Context, key string, value []byte) error
	GetMeta(ctx context.Context, key string) ([]byte, error)
	// SwapMeta writes value (nil: deletes the key) only while the key
	// still holds old (nil: is absent), in one atomic step across every
	// process sharing the store; ok reports whether it wrote.
	SwapMeta(ctx context.Context, key string, old, value []byte) (ok bool, err error)

	Close() error
}

// DeadLetteringLeaser is a Store whose Lease dead-letters messages
// itself instead of handing them out (Redis: a message leased
// MaxDeliveries times without an outcome, its worker lost each time).
// The engine leases through LeaseDeadLettering when a store has it, so
// that it counts and logs those dead letters like its own.
type DeadLetteringLeaser interface {
	// LeaseDeadLettering is Lease, and also returns the ids of the
	// messages it dead-lettered.
	LeaseDeadLettering(ctx context.Context, flow string, now time.Time, n int) (leased []*Message, dead []string, err error)
}

// takeReady appends to batch what ch holds right now, without waiting,
// up to batch's capacity: the group commit of Bolt and the pipelines of
// Redis both take what queued up while they were busy.
func takeReady[T any](batch []T, ch <-chan T) []T {
	for len(batch) < cap(batch) {
		select {
		case v := <-ch:
			batch = append(batch, v)
		default:
			return batch
		}
	}
	return batch
}
