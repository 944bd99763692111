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
// The answer is 201 {"file": path, "bytes": n} (200 when already
// written). A body the format cannot write, or a bad path, answers 422 or
// 400 (not retried); a file-system failure is an error (retried).
//
// The outbox owns the control numbers of the X12 it builds: an object body
// (a friendly document such as {"isa": {...}, "ship_notice": {...}}, or a
// parsed interchange such as x12_parse(x12_ack(...)) gives) is numbered
// from a counter kept in <dir>/.x12-control, so no two interchanges it
// writes share an ISA13. Text is written as the flow built it.
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
	key := filepath.Join(dir, "."+base+".key")
	h := fnv.New32a()
	h.Write([]byte(path))
	mu := &o.locks[h.Sum32()%uint32(len(o.locks))]
	mu.Lock()
	defer mu.Unlock()
	if req.IdempotencyKey != "" {
		if prev, err := os.ReadFile(key); err == nil && string(prev) == req.IdempotencyKey {
			n := int64(0)
			if fi, err := os.Stat(path); err == nil {
				n = fi.Size()
			}
			return &connectors.Response{Status: http.StatusOK, Body: map[string]any{"file": rel, "bytes": n, "existing": true}}, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var n int64
	var encErr error
	err = WriteAtomic(path, func(w io.Writer) error {
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
	return &connectors.Response{Status: http.StatusCreated, Body: map[string]any{"file": rel, "bytes": n}}, nil
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
func (o *Outbox) nextControl(string) (int64, error) {
	o.ctlMu.Lock()
	defer o.ctlMu.Unlock()
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
