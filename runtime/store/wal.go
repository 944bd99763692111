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
//	length(4, big endian) crc32c(segment number(8, big endian) payload)(4) payload(length)
//
// A commit is durable when its frame is synced. The applier copies what
// the frames hold into the bbolt file in large transactions and then
// retires the segments it covered, oldest first; at open, the segments
// left are replayed into the file in order.
//
// Segment files are recycled, not deleted: a retired one is renamed to a
// spare, and a new segment is a spare renamed back. An fsync after
// writing over blocks a file already has costs the kernel half the time
// and two thirds of the CPU of one after an append that grows it (the
// new size and blocks go through the file system's journal first), and
// a commit syncs once per group of requests. The first segments are
// written full of zeros once for the same reason.
//
// A recycled file still holds the frames of its last life after what is
// written now; the segment number in each checksum makes them invalid
// here, as numbers never repeat in a directory (a spare keeps its last
// number in its name, and a new segment's is above them all). So that a reader can tell the end of a segment from damage, a
// segment that is done ends in an end frame (length 0). Only the newest
// segment holding anything may end otherwise, in a torn or stale frame
// (a crash mid-write, never acknowledged): reading stops there. A
// segment before it without its end frame is damaged, and opening fails
// rather than lose what follows.
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

const (
	// maxFrame bounds a frame's length as read back: a larger length
	// field is a torn or stale header, not an allocation to make.
	maxFrame = 1 << 30
	// segmentSize is how much of a new segment file is written with
	// zeros before use (commits past it grow the file).
	segmentSize = 4 << 20
	// maxSpares is how many retired segment files are kept for reuse.
	maxSpares = 4
)

func segmentName(seq uint64) string { return fmt.Sprintf("%016x.log", seq) }

func spareName(seq uint64) string { return fmt.Sprintf("spare-%016x", seq) }

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

// spares lists the spare files in dir, and the highest segment number
// any of them had.
func spares(dir string) (paths []string, top uint64) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e.Name(), "spare-"); ok {
			paths = append(paths, filepath.Join(dir, e.Name()))
			if seq, err := strconv.ParseUint(n, 16, 64); err == nil {
				top = max(top, seq)
			}
		}
	}
	return paths, top
}

func frameCRC(seq uint64, payload []byte) uint32 {
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	return crc32.Update(crc32.Checksum(s[:], crcTable), crcTable, payload)
}

// frame returns payload framed for segment seq (nil: the end frame).
func frame(seq uint64, payload []byte) []byte {
	f := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint32(f, uint32(len(payload)))
	binary.BigEndian.PutUint32(f[4:], frameCRC(seq, payload))
	return append(f, payload...)
}

// segment is what reading a segment found: its frames, whether it ended
// in an end frame, and if not, where and why reading stopped.
type segment struct {
	seq    uint64
	frames [][]byte
	ended  bool
	stop   string
	at     int
}

func readSegment(dir string, seq uint64) (*segment, error) {
	b, err := os.ReadFile(filepath.Join(dir, segmentName(seq)))
	if err != nil {
		return nil, err
	}
	sg := &segment{seq: seq}
	for off := 0; ; {
		if off == len(b) {
			sg.stop, sg.at = "the end of the file", off
			return sg, nil
		}
		if len(b)-off < 8 {
			sg.stop, sg.at = "a frame header cut short", off
			return sg, nil
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n > maxFrame || n > len(b)-off-8 || frameCRC(seq, b[off+8:off+8+n]) != binary.BigEndian.Uint32(b[off+4:]) {
			sg.stop, sg.at = "a frame that does not check out", off
			return sg, nil
		}
		if n == 0 {
			sg.ended = true
			return sg, nil
		}
		sg.frames = append(sg.frames, b[off+8:off+8+n])
		off += 8 + n
	}
}

// readLog reads every segment in dir, oldest first, and checks that each
// one before the newest that holds anything ended in an end frame.
func readLog(dir string) ([]*segment, error) {
	seqs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	last := -1
	for i, seq := range seqs {
		sg, err := readSegment(dir, seq)
		if err != nil {
			return nil, err
		}
		if len(sg.frames) > 0 || sg.ended {
			last = i
		}
		segs = append(segs, sg)
	}
	for _, sg := range segs[:max(last, 0)] {
		if !sg.ended {
			return nil, fmt.Errorf("write-ahead log %s: %s at offset %d, and newer segments follow: the file is damaged (restore the data directory from a backup, or move this segment away to lose what it holds)",
				filepath.Join(dir, segmentName(sg.seq)), sg.stop, sg.at)
		}
	}
	return segs, nil
}

// create starts segment seq from a spare file (or a new one written with
// zeros), makes its name durable, and only then ends the segment before
// with an end frame. It refuses while the log is broken: the tail of the
// current segment is unknown, and cannot be ended.
func (w *wal) create(seq uint64) error {
	if w.broken != nil {
		return w.broken
	}
	path := filepath.Join(w.dir, segmentName(seq))
	if sp, _ := spares(w.dir); len(sp) > 0 {
		if err := os.Rename(sp[0], path); err != nil {
			return err
		}
	} else if err := zeroFile(path); err != nil {
		os.Remove(path)
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err == nil {
		err = syncDir(w.dir)
	}
	if err == nil && w.f != nil {
		// Were this end frame lost, the next open would take the new
		// segment, holding nothing yet, for the end of the log.
		_, err = w.f.WriteAt(frame(w.seq, nil), w.size)
		if err == nil {
			err = w.f.Sync()
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return err
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.seq, w.size = f, seq, 0
	return nil
}

// zeroFile writes a new file of segmentSize zeros at path, synced.
func zeroFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := 0; off < segmentSize && err == nil; off += len(zeros) {
		_, err = f.Write(zeros)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
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
		if len(p) > maxFrame || len(p) == 0 {
			err = fmt.Errorf("a frame of %d bytes: from 1 to %d", len(p), maxFrame)
			break
		}
		fr := frame(w.seq, p)
		if _, err = w.f.WriteAt(fr, size); err != nil {
			break
		}
		size += int64(len(fr))
	}
	if err == nil {
		err = datasync(w.f)
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

// removeBefore retires the segments numbered below seq, oldest first,
// making each durable before the next: a crash must never leave an older
// segment without the newer ones, whose replay would then roll messages
// back. Up to maxSpares are kept for reuse.
func (w *wal) removeBefore(seq uint64) error {
	segs, err := segments(w.dir)
	if err != nil {
		return err
	}
	sp, _ := spares(w.dir)
	kept := len(sp)
	for _, n := range segs {
		if n >= seq {
			break
		}
		path := filepath.Join(w.dir, segmentName(n))
		if kept < maxSpares {
			err = os.Rename(path, filepath.Join(w.dir, spareName(n)))
			kept++
		} else {
			err = os.Remove(path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
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
