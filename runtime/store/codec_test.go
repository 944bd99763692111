package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func fullMessage() *Message {
	at := time.Unix(1764000000, 123456789)
	return &Message{
		ID: "01JMSG", Flow: "order-capture", Revision: 7, Status: Retrying, Source: "http",
		DedupKey: "order-capture:42", ReceivedAt: at, UpdatedAt: at.Add(time.Second), DueAt: at.Add(time.Minute),
		Attempt: 3, Body: json.RawMessage(`{"id": 42, "name": "Zoë"}`),
		Headers: map[string]string{"Content-Type": "application/json", "X-A": ""},
		Query:   map[string]string{"q": "1"}, Params: map[string]string{"id": "42"},
		State: json.RawMessage(`{"vars":{}}`), Memo: map[string]json.RawMessage{"f:m:s[0]": json.RawMessage(`{"status":201}`), "f:m:s[1]": nil},
		Attempts:   []Attempt{{At: at, Step: "erp", Class: "transient", Error: "503"}, {At: at.Add(time.Second), Error: "timeout"}},
		FailedStep: "erp", Error: "503", Trace: json.RawMessage(`[]`), Response: json.RawMessage(`{"ok":true}`), Reason: "r",
	}
}

// The binary record holds every field of a message, and a JSON record of
// an older store reads back the same.
func TestMessageCodecRoundTrip(t *testing.T) {
	m := fullMessage()
	for name, b := range map[string][]byte{"binary": encodeMessage(m), "json": must(json.Marshal(m))} {
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "json" { // JSON compacts raw bodies and drops the nil memo value
			continue
		}
		if !reflect.DeepEqual(normal(got), normal(m)) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", name, got, m)
		}
	}
	h, err := decodeHead(encodeMessage(m))
	if err != nil || h.ID != m.ID || h.Flow != m.Flow || h.Status != m.Status || !h.DueAt.Equal(m.DueAt) || h.Body != nil {
		t.Errorf("head = %+v, %v", h, err)
	}
	far := &Message{ID: "far", DueAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if got, err := decodeMessage(encodeMessage(far)); err != nil || !got.DueAt.Equal(maxTime) || got.DueAt.Location() != time.UTC {
		t.Errorf("a due time beyond int64 nanoseconds reads back as %v, %v; want %v (clamped, UTC)", got.DueAt, err, maxTime)
	}
	empty, err := decodeMessage(encodeMessage(&Message{ID: "x"}))
	if err != nil || !reflect.DeepEqual(empty, &Message{ID: "x"}) {
		t.Errorf("empty message round trip = %+v, %v", empty, err)
	}
}

// normal drops what a round trip may legitimately change: the time
// location and monotonic reading.
func normal(m *Message) *Message {
	c := *m
	for _, t := range []*time.Time{&c.ReceivedAt, &c.UpdatedAt, &c.DueAt} {
		*t = t.UTC()
	}
	c.Attempts = append([]Attempt(nil), m.Attempts...)
	for i := range c.Attempts {
		c.Attempts[i].At = c.Attempts[i].At.UTC()
	}
	return &c
}

// A truncated or foreign record is an error, never a panic or a
// half-read message passed on as whole.
func TestMessageCodecCorrupt(t *testing.T) {
	b := encodeMessage(fullMessage())
	for i := range len(b) {
		if _, err := decodeMessage(b[:i]); err == nil {
			t.Fatalf("truncated at %d of %d: no error", i, len(b))
		}
	}
	if _, err := decodeMessage(append(b, 0)); err == nil {
		t.Error("trailing byte: no error")
	}
	if _, err := decodeMessage([]byte{0x01, 0x02}); err == nil {
		t.Error("unknown format: no error")
	}
	d := encodeDedup(dedupEntry{ID: "m1", Expires: time.Unix(5, 0), Confirmed: true})
	e, err := decodeDedup(d)
	if err != nil || e.ID != "m1" || !e.Confirmed || !e.Expires.Equal(time.Unix(5, 0)) {
		t.Errorf("dedup round trip = %+v, %v", e, err)
	}
	if _, err := decodeDedup(d[:len(d)-1]); err == nil {
		t.Error("truncated dedup entry: no error")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(fullMessage()))
	f.Add([]byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil || len(b) == 0 || b[0] != codecV1 {
			return
		}
		if again := encodeMessage(m); string(again) != string(encodeMessage(mustDecode(t, again))) {
			t.Fatalf("re-encoding is not stable")
		}
	})
}

func mustDecode(t *testing.T, b []byte) *Message {
	m, err := decodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
