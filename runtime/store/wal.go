package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// wal is the embedded store's write-ahead log: a directory of numbered
// segment files, each a run of frames. A frame is one commit of the
// committer (every write of a group, see Bolt.commit):
//
//	length(4, big endian) crc32c(4) payload(length)
//
// A commit is durable when its frame is synced. The applier copies what
// the frames hold into the bbolt file in large transactions and then
// deletes the segments it covered, oldest first; at open, the segments
// left are replayed into the file in order. Only the newest segment can
// end in a torn frame (a crash mid-write): that frame was never
// acknowledged and is dropped. A bad frame anywhere else is corruption,
// and opening fails rather than lose what follows it.
type wal struct {
	dir  string
	f    *os.File // the segment appended to
	seq  uint64   // its number
	size int64    // its length up to the last synced frame
	// broken is set when a failed append could not be cut off again:
	// the segment's tail is unknown, so nothing more is appended.
	broken error
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// maxFrame bounds a frame's length as read back: a larger length field
// is a torn or corrupt header, not an allocation to make.
const maxFrame = 1 << 30

func segmentName(seq uint64) string { return fmt.Sprintf("%016x.log", seq) }

// segments lists the segment numbers in dir, oldest first.
func segments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 16, 64); err == nil && len(name) == 16 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// readSegment returns the frames of segment seq. last tells whether it
// is the newest segment, the only one that may end in a torn frame; a
// torn frame is cut off (durably) before the caller starts a newer
// segment, which would make it look like damage to the next open.
func readSegment(dir string, seq uint64, last bool) ([][]byte, error) {
	path := filepath.Join(dir, segmentName(seq))
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for off := 0; off < len(b); {
		bad := ""
		n := 0
		switch {
		case len(b)-off < 8:
			bad = "a frame header cut short"
		default:
			n = int(binary.BigEndian.Uint32(b[off:]))
			switch {
			case n > maxFrame || n > len(b)-off-8:
				bad = "a frame cut short"
			case crc32.Checksum(b[off+8:off+8+n], crcTable) != binary.BigEndian.Uint32(b[off+4:]):
				bad = "a frame whose checksum does not match"
			}
		}
		if bad != "" {
			if last { // a torn write that was never acknowledged
				return frames, cutSegment(path, int64(off))
			}
			return nil, fmt.Errorf("write-ahead log %s: %s at offset %d, and newer segments follow: the file is damaged (restore the data directory from a backup, or move this segment away to lose what it holds)", path, bad, off)
		}
		frames = append(frames, b[off+8:off+8+n])
		off += 8 + n
	}
	return frames, nil
}

// cutSegment truncates the segment at path to size and syncs it.
func cutSegment(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// create starts segment seq, empty, and makes its name durable. It
// refuses while the log is broken: a newer segment would make the bad
// tail of the current one look like damage at the next open.
func (w *wal) create(seq uint64) error {
	if w.broken != nil {
		return w.broken
	}
	path := filepath.Join(w.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.seq, w.size = f, seq, 0
	return nil
}

// maxFrameBytes is the size past which a commit starts a new frame: the
// length field is 32 bits, and a reader takes a frame over maxFrame for
// a torn one. A commit of up to 2048 writes of a 1 MiB body each would
// pass both. One write's operations stay in one frame.
var maxFrameBytes = 64 << 20

// append writes each payload as a frame and syncs them all at once. When
// a write or the sync fails, the segment is cut back to its last synced
// frame, so a frame that was not acknowledged is never replayed; when
// even that fails, the log refuses every later append.
func (w *wal) append(payloads ...[]byte) error {
	if w.broken != nil {
		return w.broken
	}
	var err error
	size := w.size
	for _, p := range payloads {
		if len(p) > maxFrame {
			err = fmt.Errorf("a commit of %d bytes: at most %d", len(p), maxFrame)
			break
		}
		frame := make([]byte, 8, 8+len(p))
		binary.BigEndian.PutUint32(frame, uint32(len(p)))
		binary.BigEndian.PutUint32(frame[4:], crc32.Checksum(p, crcTable))
		frame = append(frame, p...)
		if _, err = w.f.WriteAt(frame, size); err != nil {
			break
		}
		size += int64(len(frame))
	}
	if err == nil {
		err = w.f.Sync()
	}
	if err != nil {
		if size != w.size {
			if terr := errors.Join(w.f.Truncate(w.size), w.f.Sync()); terr != nil {
				w.broken = fmt.Errorf("write-ahead log %s: a failed append could not be undone (%v); restart to recover: %w", w.f.Name(), terr, err)
			}
		}
		return fmt.Errorf("write-ahead log: %w", err)
	}
	w.size = size
	return nil
}

// removeBefore deletes the segments numbered below seq, oldest first,
// making each deletion durable before the next: a crash must never leave
// an older segment without the newer ones, whose replay would then roll
// messages back.
func (w *wal) removeBefore(seq uint64) error {
	segs, err := segments(w.dir)
	if err != nil {
		return err
	}
	for _, n := range segs {
		if n >= seq {
			break
		}
		if err := os.Remove(filepath.Join(w.dir, segmentName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := syncDir(w.dir); err != nil {
			return err
		}
	}
	return nil
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// The operations a frame holds, each a complete new state, so that a
// replay of frames the file already holds changes nothing once the
// newest frame is applied.
const (
	opMessage    byte = 'M' // id, record, has-body byte, body
	opDelMessage byte = 'R' // id
	opDedup      byte = 'D' // bucket key, entry
	opDelDedup   byte = 'X' // bucket key
)

// walOp is one decoded operation.
type walOp struct {
	kind    byte
	key     string // message id or dedup bucket key
	value   []byte // record or dedup entry
	body    []byte
	hasBody bool
}

// decodeOps reads the operations of a frame.
func decodeOps(frame []byte) ([]walOp, error) {
	var ops []walOp
	d := &dec{b: frame}
	for len(d.b) > 0 && d.err == nil {
		op := walOp{kind: d.b[0]}
		d.b = d.b[1:]
		op.key = d.str()
		switch op.kind {
		case opMessage:
			op.value = d.raw()
			op.hasBody = d.uint() == 1
			op.body = d.raw()
		case opDedup:
			op.value = d.raw()
		case opDelMessage, opDelDedup:
		default:
			return nil, fmt.Errorf("write-ahead log: unknown operation 0x%02x", op.kind)
		}
		ops = append(ops, op)
	}
	if d.err != nil {
		return nil, fmt.Errorf("write-ahead log: %w", d.err)
	}
	return ops, nil
}
