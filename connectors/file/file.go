// Package fileconn owns files: the "file" connector, an outbox a call
// writes one file into atomically, and the inbox side the runtime's file
// trigger uses — when a dropped file is complete (stable size or a marker
// file), streaming record readers for CSV, JSON, JSON Lines and X12 with
// errors located by line and column or X12 segment and byte, and moving
// files to done/ or error/ with a .reason file.
//
// # Outbox
//
// A call on a file connection writes the call's body into
// <dir>/<path> in the connection's format (see Encode): into a
// temporary file in the same directory, synced, renamed over the target
// and the directory synced, so a reader of the outbox never sees half a
// file. The path is relative to dir (a leading "/" is the outbox itself;
// subdirectories are created) and may not leave it or name a dotfile;
// without a path the file is named after the idempotency key. POST and PUT
// write; other methods answer 405.
//
// Retries write once: the idempotency key of the call that wrote a file is
// kept in a sidecar .<name>.key beside it, and a call with the key of the
// last write of that name answers 200 without writing again, also when the
// outbox's reader has already taken the file away. A call with another key
// replaces the file. Sidecars stay, one small dotfile per name written;
// readers of the outbox skip dotfiles (temporary files are dotfiles too).
// The key is on disk before the file appears (see Call), so a crash in
// between does not make the retry write it a second time. A name too long
// for ".<name>.key" gets sidecar and temporary names made from its hash.
// The answer is 201 {"file": path, "bytes": n} (200 when already
// written). A body the format cannot write answers 422, a bad path 400,
// a path a directory or file is in the way of 409 (none retried); any
// other file-system failure is an error (retried).
//
// The outbox owns the control numbers of the X12 it builds: an object body
// (a friendly document such as {"isa": {...}, "ship_notice": {...}}, or a
// parsed interchange such as x12_parse(x12_ack(...)) gives) is numbered
// from a counter kept in <dir>/.x12-control, so no two interchanges
// written into the directory share an ISA13, also from several
// connections or processes (they take turns by a lock on
// <dir>/.x12-control.lock). Text is written as the flow built it.
package fileconn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/conveyor-run/conveyor/connectors"
)

func init() {
	connectors.MustRegister(connectors.Spec{
		Name: "file",
		Description: "An outbox directory: a call writes its body into dir/<path> atomically (temporary file, fsync, rename), " +
			"as json, jsonl (a list: one line each), csv (a list of objects or lists; csv: {delimiter, header, escape_formulas}) or x12 (text as is, " +
			"or an X12 document built with control numbers). A retry with the same idempotency key does not write again.",
	}, New)
}

var _ connectors.Caller = (*Outbox)(nil)

// Outbox is the caller of one file connection. It is safe for concurrent
// use; writes of the same name are serialised.
type Outbox struct {
	name   string
	dir    string
	format string
	csv    CSVOptions
	locks  [32]sync.Mutex // by hash of the target name
	ctlMu  sync.Mutex     // guards the X12 control counter
}

// New builds an Outbox from a connection's configuration. cfg.Values holds:
//
//	dir     string, required: absolute path of the outbox directory
//	format  json (default), jsonl, csv or x12
//	csv     {delimiter: one character (default ","), header: bool (default true),
//	         escape_formulas: bool (default false; see CSVOptions.EscapeFormulas)}
//
// Unknown keys are errors. The directory is created by the first write.
func New(cfg connectors.Config) (connectors.Caller, error) {
	o := &Outbox{name: cfg.Name, format: JSON, csv: DefaultCSV}
	var errs []error
	if err := connectors.CheckFields("", cfg.Values, "dir", "format", "csv"); err != nil {
		errs = append(errs, err)
	}
	for k, v := range cfg.Values {
		switch k {
		case "dir":
			s, _ := v.(string)
			if s == "" || !filepath.IsAbs(s) {
				errs = append(errs, fmt.Errorf("dir must be an absolute path, got %v", v))
			}
			o.dir = filepath.Clean(s)
		case "format":
			s, _ := v.(string)
			switch s {
			case JSON, JSONL, CSV, X12:
				o.format = s
			default:
				errs = append(errs, fmt.Errorf("format must be json, jsonl, csv or x12, got %v", v))
			}
		case "csv":
			c, err := ParseCSVOptions(v)
			if err != nil {
				errs = append(errs, err)
			}
			o.csv = c
		}
	}
	if _, ok := cfg.Values["dir"]; !ok {
		errs = append(errs, errors.New("dir is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, nil
}

// ParseCSVOptions reads {"delimiter": ",", "header": true,
// "escape_formulas": false} (nil: DefaultCSV).
func ParseCSVOptions(v any) (CSVOptions, error) {
	o := DefaultCSV
	if v == nil {
		return o, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return o, fmt.Errorf("csv must be an object, got %T", v)
	}
	if err := connectors.CheckFields("csv", m, "delimiter", "header", "escape_formulas"); err != nil {
		return o, err
	}
	for k, x := range m {
		switch k {
		case "delimiter":
			s, _ := x.(string)
			r := []rune(s)
			if len(r) != 1 || !validRune(r[0]) {
				return o, fmt.Errorf("csv.delimiter must be one character other than a quote or line break, got %q", s)
			}
			o.Delimiter = r[0]
		case "header":
			b, ok := x.(bool)
			if !ok {
				return o, fmt.Errorf("csv.header must be true or false, got %v", x)
			}
			o.Header = b
		case "escape_formulas":
			b, ok := x.(bool)
			if !ok {
				return o, fmt.Errorf("csv.escape_formulas must be true or false, got %v", x)
			}
			o.EscapeFormulas = b
		}
	}
	return o, nil
}

// Close implements connectors.Caller; an Outbox holds nothing open.
func (o *Outbox) Close() error { return nil }

// extensions name a file written without a path.
var extensions = map[string]string{JSON: ".json", JSONL: ".jsonl", CSV: ".csv", X12: ".edi"}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Call writes req.Body into the outbox (see the package comment).
//
// With an idempotency key the steps are: the body into a temporary file
// named after the key (.<name>.tmp-<hash of key>), synced; the key into
// the sidecar, synced (WriteAtomic); the temporary file renamed to the
// name and the directory synced. A crash
//
//   - before the sidecar holds the key leaves at most the temporary file:
//     the retry does not find its key and writes it over from the start;
//   - after the sidecar, before the rename is on disk, leaves the key and
//     the temporary file: the retry finds both and finishes the rename;
//   - after the rename leaves the key and no temporary file: the retry
//     answers 200 and writes nothing, whether or not the partner has
//     taken the file since.
//
// So the partner sees the file at most once per key, and at least once
// once a call has answered 200 or 201.
func (o *Outbox) Call(ctx context.Context, req connectors.Request) (*connectors.Response, error) {
	if req.Method != http.MethodPost && req.Method != http.MethodPut {
		return answer(http.StatusMethodNotAllowed, fmt.Sprintf("a file connection writes with POST or PUT, not %s", req.Method)), nil
	}
	rel, err := o.target(req)
	if err != nil {
		return answer(http.StatusBadRequest, err.Error()), nil
	}
	path := filepath.Join(o.dir, filepath.FromSlash(rel))
	dir, base := filepath.Split(path)
	key := filepath.Join(dir, sideName(base, ".key", 0))
	h := fnv.New32a()
	h.Write([]byte(path))
	mu := &o.locks[h.Sum32()%uint32(len(o.locks))]
	mu.Lock()
	defer mu.Unlock()
	var tmp string // the temporary file of a write with a key
	if req.IdempotencyKey != "" {
		sum := sha256.Sum256([]byte(req.IdempotencyKey))
		tmp = filepath.Join(dir, sideName(base, ".tmp-"+hex.EncodeToString(sum[:8]), 0))
		if prev, err := os.ReadFile(key); err == nil && string(prev) == req.IdempotencyKey {
			status := http.StatusOK
			if _, err := os.Lstat(tmp); err == nil { // cut short before the rename: finish it
				if err := rename(tmp, path); err != nil {
					return refused(rel, fmt.Errorf("write %s: %w", rel, err))
				}
				status = http.StatusCreated
			}
			n := int64(0)
			if fi, err := os.Stat(path); err == nil {
				n = fi.Size()
			}
			body := map[string]any{"file": rel, "bytes": n}
			if status == http.StatusOK {
				body["existing"] = true
			}
			return &connectors.Response{Status: status, Body: body}, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return answer(http.StatusConflict, fmt.Sprintf("path %q is a directory in the outbox", rel)), nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return refused(rel, err)
	}
	var f *os.File
	if tmp != "" {
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	} else {
		f, err = os.CreateTemp(dir, sideName(base, ".tmp-*", 10))
	}
	if err != nil {
		return refused(rel, fmt.Errorf("write %s: %w", rel, err))
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	var n int64
	var encErr error
	err = writeTemp(f, func(w io.Writer) error {
		cw := &countWriter{w: w}
		if encErr = Encode(cw, o.format, req.Body, o.csv, o.nextControl); encErr != nil {
			return encErr
		}
		n = cw.n
		return ctx.Err()
	})
	if encErr != nil && !errors.As(encErr, new(ioError)) {
		return answer(http.StatusUnprocessableEntity, fmt.Sprintf("%s: %v", o.format, encErr)), nil
	}
	if encErr != nil { // the disk's doing (full, quota, I/O): retried
		return nil, fmt.Errorf("write %s: %w", rel, encErr)
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", rel, err)
	}
	if req.IdempotencyKey != "" {
		if err := WriteAtomic(key, func(w io.Writer) error { _, err := io.WriteString(w, req.IdempotencyKey); return err }); err != nil {
			return nil, fmt.Errorf("write %s: %w", rel, err)
		}
	}
	if err := os.Rename(f.Name(), path); err != nil {
		if req.IdempotencyKey != "" {
			// The key must not stand for a file that never appeared.
			os.Remove(key)
		}
		return refused(rel, fmt.Errorf("write %s: %w", rel, err))
	}
	done = true
	if err := syncDir(dir); err != nil { // retried; the retry finds the key and no temporary file
		return nil, fmt.Errorf("write %s: %w", rel, err)
	}
	return &connectors.Response{Status: http.StatusCreated, Body: map[string]any{"file": rel, "bytes": n}}, nil
}

// refused answers a file-system error no retry can get past: a name
// longer than the file system takes (400), a directory where the file
// goes or a file where a directory of its path goes (409). Other errors
// are returned, to be retried.
func refused(rel string, err error) (*connectors.Response, error) {
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return answer(http.StatusBadRequest, fmt.Sprintf("path %q: a name in it is longer than the file system takes", rel)), nil
	case errors.Is(err, syscall.EISDIR):
		return answer(http.StatusConflict, fmt.Sprintf("path %q is a directory in the outbox", rel)), nil
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EEXIST): // EEXIST: MkdirAll met a file
		return answer(http.StatusConflict, fmt.Sprintf("path %q: a file in the outbox is in the way of one of its directories", rel)), nil
	}
	return nil, err
}

// maxName is the longest file name common file systems take (NAME_MAX).
const maxName = 255

// sideName is the name of a file kept beside base: "."+base+suffix, or,
// when that and reserve more bytes (the digits os.CreateTemp puts for a
// "*") would be longer than a file system takes, the same made from a
// hash of base. Every name that can be written so has its sidecar and
// temporary files.
func sideName(base, suffix string, reserve int) string {
	if 1+len(base)+len(suffix)+reserve <= maxName {
		return "." + base + suffix
	}
	sum := sha256.Sum256([]byte(base))
	return "." + hex.EncodeToString(sum[:16]) + suffix
}

// target is the slash-separated path below the outbox a request writes.
func (o *Outbox) target(req connectors.Request) (string, error) {
	p, _, _ := strings.Cut(req.Path, "?")
	p, err := url.PathUnescape(p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", req.Path, err)
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		if req.IdempotencyKey == "" {
			return "", errors.New("the call has no path and no idempotency key to name the file after")
		}
		sum := sha256.Sum256([]byte(req.IdempotencyKey))
		name := strings.Trim(unsafeName.ReplaceAllString(req.IdempotencyKey, "-"), "-.")
		if len(name) > 80 {
			name = name[:80]
		}
		return name + "-" + hex.EncodeToString(sum[:4]) + extensions[o.format], nil
	}
	if strings.HasSuffix(p, "/") || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q does not name a file", req.Path)
	}
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		return "", fmt.Errorf("path %q leaves the outbox (no .., no absolute paths)", req.Path)
	}
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") {
			return "", fmt.Errorf("path %q: names starting with a dot are not written", req.Path)
		}
	}
	return p, nil
}

// nextControl hands out X12 control numbers from <dir>/.x12-control.
// Lock order: ctlMu, then the flock on .x12-control.lock, which every
// connection and process writing into the directory takes for the whole
// read-increment-write. The lock is a file of its own because the counter
// is replaced by a rename, and a lock on the replaced file would keep
// nobody out.
func (o *Outbox) nextControl(string) (int64, error) {
	o.ctlMu.Lock()
	defer o.ctlMu.Unlock()
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return 0, ioError{err}
	}
	unlock, err := lockFile(filepath.Join(o.dir, ".x12-control.lock"))
	if err != nil {
		return 0, ioError{err}
	}
	defer unlock()
	path := filepath.Join(o.dir, ".x12-control")
	n := int64(0)
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, ioError{err}
	}
	n = n%999999999 + 1
	if err := WriteAtomic(path, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%d\n", n); return err }); err != nil {
		return 0, ioError{err}
	}
	return n, nil
}

// ioError is a write or read the disk refused (full, over quota, an I/O
// error), as opposed to a body the format cannot hold: the call is
// retried rather than dead-lettered.
type ioError struct{ error }

func (e ioError) Unwrap() error { return e.error }

func answer(status int, msg string) *connectors.Response {
	return &connectors.Response{Status: status, Body: map[string]any{"error": msg}}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		err = ioError{err}
	}
	return n, err
}
