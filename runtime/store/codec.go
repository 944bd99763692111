package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Stored records are binary, not JSON: a message is written at accept and
// at every checkpoint, and encoding/json spent more CPU re-validating the
// raw body and state than the rest of the write. The layout is
//
//	0xC1 version | id flow status due | the other fields in a fixed order
//
// with strings and byte slices as uvarint length + bytes, integers as
// varints and times as a presence byte + varint Unix nanoseconds. The
// queue fields come first so put can read a previous version's place in
// the queue without decoding its body (decodeHead). Records written
// before this format (JSON, starting with '{') are still read.
const codecV1 = 0xC1

var errCorrupt = errors.New("corrupt record")

type enc struct{ b []byte }

func (e *enc) uint(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)    { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)   { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte) { e.uint(uint64(len(p))); e.b = append(e.b, p...) }

// The times a record can hold: Unix nanoseconds in an int64. A time
// outside (a Retry-After date centuries ahead) is clamped, not wrapped.
var minTime, maxTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	switch {
	case t.Before(minTime):
		t = minTime
	case t.After(maxTime):
		t = maxTime
	}
	e.int(t.UnixNano())
}

// strMap writes m with sorted keys, so equal maps encode equally.
func (e *enc) strMap(m map[string]string) {
	e.uint(uint64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.str(k)
		e.str(m[k])
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *dec) uint() uint64 { return took(d, binary.Uvarint) }

func (d *dec) int() int64 { return took(d, binary.Varint) }

// took reads a varint with read and moves past it.
func took[T uint64 | int64](d *dec, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// raw returns the next length-prefixed bytes, aliasing the input.
func (d *dec) raw() []byte {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.raw()) }

// bytes copies: records read from bbolt are only valid in their transaction.
func (d *dec) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *dec) time() time.Time {
	if len(d.b) == 0 {
		d.fail()
		return time.Time{}
	}
	present := d.b[0]
	d.b = d.b[1:]
	if present == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.int()).UTC()
}

// count reads a collection length, refusing one the rest of the record
// cannot hold (each element takes at least one byte).
func (d *dec) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) || n > math.MaxInt32 {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) strMap() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// encodeMessage returns m's stored form.
func encodeMessage(m *Message) []byte {
	e := enc{b: make([]byte, 0, 256+len(m.Body)+len(m.State)+len(m.Trace)+len(m.Response))}
	e.b = append(e.b, codecV1)
	e.str(m.ID)
	e.str(m.Flow)
	e.str(string(m.Status))
	e.time(m.DueAt)
	e.int(int64(m.Revision))
	e.str(m.Source)
	e.str(m.DedupKey)
	e.time(m.ReceivedAt)
	e.time(m.UpdatedAt)
	e.int(int64(m.Attempt))
	e.bytes(m.Body)
	e.strMap(m.Headers)
	e.strMap(m.Query)
	e.strMap(m.Params)
	e.bytes(m.State)
	e.uint(uint64(len(m.Memo)))
	for _, k := range slices.Sorted(maps.Keys(m.Memo)) {
		e.str(k)
		e.bytes(m.Memo[k])
	}
	e.uint(uint64(len(m.Attempts)))
	for _, a := range m.Attempts {
		e.time(a.At)
		e.str(a.Step)
		e.str(a.Class)
		e.str(a.Error)
	}
	e.str(m.FailedStep)
	e.str(m.Error)
	e.bytes(m.Trace)
	e.bytes(m.Response)
	e.str(m.Reason)
	return e.b
}

// decodeMessage reads a stored message (binary or the older JSON).
func decodeMessage(b []byte) (*Message, error) {
	m := &Message{}
	if len(b) > 0 && b[0] == '{' {
		return m, json.Unmarshal(b, m)
	}
	d := head(b, m)
	m.Revision = int(d.int())
	m.Source = d.str()
	m.DedupKey = d.str()
	m.ReceivedAt = d.time()
	m.UpdatedAt = d.time()
	m.Attempt = int(d.int())
	m.Body = d.bytes()
	m.Headers = d.strMap()
	m.Query = d.strMap()
	m.Params = d.strMap()
	m.State = d.bytes()
	if n := d.count(); n > 0 {
		m.Memo = make(map[string]json.RawMessage, n)
		for range n {
			k := d.str()
			m.Memo[k] = d.bytes()
		}
	}
	if n := d.count(); n > 0 {
		m.Attempts = make([]Attempt, n)
		for i := range m.Attempts {
			m.Attempts[i] = Attempt{At: d.time(), Step: d.str(), Class: d.str(), Error: d.str()}
		}
	}
	m.FailedStep = d.str()
	m.Error = d.str()
	m.Trace = d.bytes()
	m.Response = d.bytes()
	m.Reason = d.str()
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return m, d.err
}

// decodeHead reads only what places a stored message in the queue: id,
// flow, status and due time.
func decodeHead(b []byte) (*Message, error) {
	if len(b) > 0 && b[0] == '{' {
		return decodeMessage(b)
	}
	m := &Message{}
	return m, head(b, m).err
}

func head(b []byte, m *Message) *dec {
	d := &dec{b: b}
	if len(b) == 0 || b[0] != codecV1 {
		d.err = fmt.Errorf("unknown record format 0x%02x", append(b, 0)[0])
		d.b = nil
		return d
	}
	d.b = b[1:]
	m.ID = d.str()
	m.Flow = d.str()
	m.Status = Status(d.str())
	m.DueAt = d.time()
	return d
}

// encodeDedup and decodeDedup store a dedup entry: a state byte (0
// claimed, 1 confirmed, 2 released to a retry), the
// expiry and the holder's id (older stores: JSON).
func encodeDedup(e dedupEntry) []byte {
	x := enc{b: make([]byte, 0, 16+len(e.ID))}
	x.b = append(x.b, codecV1)
	switch {
	case e.Released:
		x.b = append(x.b, 2)
	case e.Confirmed:
		x.b = append(x.b, 1)
	default:
		x.b = append(x.b, 0)
	}
	x.time(e.Expires)
	x.str(e.ID)
	return x.b
}

func decodeDedup(b []byte) (dedupEntry, error) {
	var e dedupEntry
	if len(b) > 0 && b[0] == '{' {
		return e, json.Unmarshal(b, &e)
	}
	if len(b) < 2 || b[0] != codecV1 {
		return e, errCorrupt
	}
	e.Confirmed, e.Released = b[1] == 1, b[1] == 2
	d := &dec{b: b[2:]}
	e.Expires = d.time()
	e.ID = d.str()
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return e, d.err
}
