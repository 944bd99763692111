package runtime

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	fileconn "github.com/conveyor-run/conveyor/connectors/file"
	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// File triggers. A poller per live flow with a file trigger lists its
// inbox every filePollInterval (or half its stable_for, when shorter) and
// takes the files matching the pattern — dotfiles, temporary files
// (.tmp, .part, ~ ...), marker files and subdirectories are left alone —
// once they are complete: unchanged in size and modification time for
// stable_for and not empty, or with their marker file <name><marker>
// beside them (then an empty file is taken too).
//
// A complete file is read twice, streaming. The first pass checks it
// whole: it must parse, and every message must pass the flow's leading
// validate steps and give a dedup key; otherwise the file moves to
// error_dir with <name>.reason naming each problem and its position, and
// nothing is accepted. The second pass accepts the messages, then the
// file moves to done_dir (a name already there gets a timestamp). A file
// that cannot be moved stays in the inbox and is tried again; while it is
// unchanged, a try only moves it.
//
// per: file makes one message whose body is the whole file: the JSON
// value, the list of CSV records or JSON lines, or the X12 interchange's
// JSON view; files above maxWholeFile are refused (use per: record).
// per: record makes one message per CSV row, JSON line, element of a
// JSON array or X12 transaction set (the interchange view holding only
// it); its body is the record itself, so that a flow and its tests read
// the same body whether a record comes from a file or over HTTP.
// Every message carries the headers X-File-Name (the file's name),
// X-File-Records (how many records the file holds; 0 while the first pass
// of per: record runs the validate steps) and, per record, X-File-Record
// (1-based position). Its source is "file:<name>". The trigger's
// settings: dir, done_dir and error_dir are relative to the workspace;
// a flow-level rate_limit is refused at load (it limits http requests).
//
// Message ids derive from the flow, the file's name, modification time
// and content hash, and the record's position: when accepting stops
// midway (a crash, a shutdown, the store unavailable) the file stays in
// the inbox and the next look accepts only what is missing. A file
// dropped again later with a new modification time is a new delivery; a
// flow that must not take the same order twice says so with dedup. One
// moved back from done/ as it was (mv, scp -p and rsync -t keep the
// modification time) is the same delivery while its messages are kept
// (the journal's retention), and nothing of it is taken again: touch it
// to send it once more. A file replaced by name while it is taken, or
// rewritten in place with another size or modification time, is left for
// the next look (a same-size rewrite within the file system's timestamp
// resolution is not seen).
//
// An inbox that does not exist yet is waited for (and logged once), not
// created (unless Options.CreateInboxes). A disabled flow leaves its inbox alone. Several replicas
// polling one shared inbox may read a file at the same time; ids keep
// what they accept single, and whichever moves it first wins.

func init() { triggerSources = append(triggerSources, newFileTriggers) }

var (
	// filePollInterval is how often inboxes are listed.
	filePollInterval = 500 * time.Millisecond
	// fileRetryAfter is how long a file whose taking failed (store
	// unavailable, file system error) waits before the next try.
	fileRetryAfter = 5 * time.Second
)

const (
	// maxWholeFile bounds files read whole: per: file, and format json.
	maxWholeFile = 64 << 20
	// fileAccepts is how many accepts of one file are in flight at once,
	// so the store's group commit can batch them.
	fileAccepts = 256
	// maxProblems bounds the problems a .reason file lists.
	maxProblems = 20
)

// fileTriggers runs one inbox poller per live flow with a file trigger,
// restarted when the inbox's settings change (its key).
type fileTriggers struct {
	e       *Engine
	workers *flowWorkers[string]
}

func newFileTriggers(e *Engine) triggerSource {
	return &fileTriggers{e: e, workers: newFlowWorkers[string](e)}
}

// sync starts, restarts and stops pollers to match the live flows.
func (s *fileTriggers) sync() {
	inboxes := map[string]*inbox{}
	s.workers.sync(func() map[string]string {
		keys := map[string]string{}
		s.e.mu.RLock()
		defer s.e.mu.RUnlock()
		for id, lf := range s.e.flows {
			if f := lf.cur.Load(); f != nil && f.Trigger.File != nil {
				in := s.e.inboxOf(f.Trigger.File)
				inboxes[id], keys[id] = in, in.key()
			}
		}
		return keys
	}, func(id, _ string) (func(context.Context), error) {
		in := inboxes[id]
		if err := in.check(); err != nil {
			s.e.log.Error("file trigger not started", "flow", id, "error", err)
			return nil, err
		}
		return func(ctx context.Context) { s.e.pollInbox(ctx, id, in) }, nil
	})
}

func (s *fileTriggers) stop() { s.workers.stop() }

// inbox is a file trigger with its defaults applied and its directories
// made absolute against the workspace.
type inbox struct {
	dir, pattern, format, per, complete, marker, doneDir, errorDir string
	stableFor                                                      time.Duration
	csv                                                            fileconn.CSVOptions
}

func (e *Engine) inboxOf(t *dsl.FileTrigger) *inbox {
	in := &inbox{dir: filepath.Clean(e.workspacePath(t.Dir)), pattern: cmp.Or(t.Pattern, "*"), format: cmp.Or(t.Format, fileconn.JSON),
		per: cmp.Or(t.Per, "file"), complete: cmp.Or(t.Complete, "stable"), marker: cmp.Or(t.Marker, ".done"),
		stableFor: time.Second, csv: fileconn.DefaultCSV}
	if t.StableFor != nil && t.StableFor.D > 0 {
		in.stableFor = t.StableFor.D
	}
	in.doneDir, in.errorDir = filepath.Join(in.dir, "done"), filepath.Join(in.dir, "error")
	if t.DoneDir != "" {
		in.doneDir = filepath.Clean(e.workspacePath(t.DoneDir))
	}
	if t.ErrorDir != "" {
		in.errorDir = filepath.Clean(e.workspacePath(t.ErrorDir))
	}
	if c := t.CSV; c != nil {
		if r := []rune(c.Delimiter); len(r) == 1 {
			in.csv.Delimiter = r[0]
		}
		if c.Header != nil {
			in.csv.Header = *c.Header
		}
	}
	return in
}

func (in *inbox) key() string { return fmt.Sprintf("%+v", *in) }

// check refuses settings the poller cannot run with.
func (in *inbox) check() error {
	if _, err := filepath.Match(in.pattern, "x"); err != nil {
		return fmt.Errorf("pattern %q: %w", in.pattern, err)
	}
	if in.doneDir == in.dir || in.errorDir == in.dir {
		return errors.New("done_dir and error_dir must differ from dir")
	}
	if _, err := fileconn.NewRecords(strings.NewReader(""), in.format, in.csv); err != nil {
		return err
	}
	return nil
}

// pollInbox looks at the inbox until ctx ends.
func (e *Engine) pollInbox(ctx context.Context, id string, in *inbox) {
	interval := min(filePollInterval, max(in.stableFor/2, 20*time.Millisecond))
	p := &poller{e: e, id: id, in: in, stable: &fileconn.Stability{For: in.stableFor},
		retry: map[string]time.Time{}, empty: map[string]bool{}, settled: map[string]settled{}}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		p.look(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poller is the state of one inbox's poller.
type poller struct {
	e       *Engine
	id      string
	in      *inbox
	stable  *fileconn.Stability
	retry   map[string]time.Time // file -> not before
	empty   map[string]bool      // empty files whose waiting was logged
	settled map[string]settled   // files whose move failed (see settle)
	warned  bool                 // the inbox is unreadable and that was logged
}

// look lists the inbox once and takes every complete file, in name order.
func (p *poller) look(ctx context.Context) {
	lf, f := p.e.live(p.id)
	if f == nil || lf.disabled.Load() {
		return
	}
	entries, err := os.ReadDir(p.in.dir)
	if errors.Is(err, fs.ErrNotExist) && p.e.opts.CreateInboxes {
		if err = os.MkdirAll(p.in.dir, 0o755); err == nil {
			entries, err = os.ReadDir(p.in.dir)
		}
	}
	if err != nil {
		if !p.warned {
			p.warned = true
			p.e.log.Warn("cannot list the inbox; waiting for it", "flow", p.id, "dir", p.in.dir, "error", err)
		}
		return
	}
	p.warned = false
	marker := ""
	if p.in.complete == "marker" {
		marker = p.in.marker
	}
	present := map[string]bool{}
	for _, de := range entries {
		if ctx.Err() != nil {
			return
		}
		name := de.Name()
		if ok, _ := fileconn.Candidate(name, p.in.pattern, marker); !ok || !de.Type().IsRegular() {
			continue
		}
		present[name] = true
		if t, ok := p.retry[name]; ok && time.Now().Before(t) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		if marker != "" && !fileconn.MarkerComplete(p.in.dir, name, marker) ||
			marker == "" && !p.stable.Complete(name, info, time.Now()) {
			continue
		}
		if marker == "" && info.Size() == 0 {
			// Not taken empty: a writer that creates its file before it
			// has data (an export still running its query) leaves it
			// empty for any time, and a file moved away then takes the
			// rows written after into done/. Content makes it unstable
			// again; a marker says an empty file is complete.
			if !p.empty[name] {
				p.empty[name] = true
				p.e.log.Info("an empty file waits for content; with complete: marker an empty file is taken", "flow", p.id, "file", name)
			}
			continue
		}
		delete(p.empty, name)
		if err := p.take(ctx, name, info); err != nil {
			if ctx.Err() == nil {
				p.e.log.Error("cannot take a file; it stays in the inbox and is tried again", "flow", p.id, "file", name,
					"retry_in", fileRetryAfter.String(), "error", err)
				p.retry[name] = time.Now().Add(fileRetryAfter)
			}
			continue
		}
		delete(p.retry, name)
		delete(present, name)
	}
	p.stable.Forget(func(name string) bool { return present[name] })
	for name := range p.retry {
		if !present[name] {
			delete(p.retry, name)
		}
	}
	for name := range p.empty {
		if !present[name] {
			delete(p.empty, name)
		}
	}
	for name := range p.settled {
		if !present[name] {
			delete(p.settled, name)
		}
	}
}

// problem is something wrong with a file's content: it goes to error/.
type problem struct {
	reason string // metric label: malformed, validation, dedup_key, too_large
	lines  []string
}

func (pr *problem) Error() string { return strings.Join(pr.lines, "; ") }

// take reads a complete file, accepts its messages and moves it to done/,
// or moves it to error/ when its content is wrong. An error leaves the
// file in place for a later try.
func (p *poller) take(ctx context.Context, name string, info fs.FileInfo) error {
	lf, f := p.e.live(p.id)
	if f == nil || lf.disabled.Load() {
		return nil
	}
	start := time.Now()
	path := filepath.Join(p.in.dir, name)
	// One handle for both passes and the check before the move: a sender
	// may replace the file by name meanwhile (an atomic rename), and the
	// new file is another delivery, for the next look.
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // taken away meanwhile (another replica)
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	if info, err = fh.Stat(); err != nil {
		return err
	}
	if st, ok := p.settled[name]; ok && sameVersion(st.info, info) {
		// An earlier try accepted it whole, or found it wrong, and could
		// not move it: only the move remains. Reading and accepting it
		// again would cost the store an accept per record at every try.
		return p.settle(name, info, st.pr, nil)
	}
	delete(p.settled, name)
	ft := &fileTake{p: p, f: f, lf: lf, name: name, mod: info.ModTime(), received: start.UTC()}
	if p.in.per == "record" {
		err = ft.records(ctx, fh, info.Size())
	} else {
		err = ft.whole(ctx, fh, info.Size())
	}
	switch cur, lerr := os.Lstat(path); {
	case errors.Is(lerr, fs.ErrNotExist):
		return nil // taken away meanwhile (another replica)
	case lerr == nil && !sameVersion(info, cur):
		// Replaced (or rewritten in place) while it was read: what was
		// accepted is the old content's; the name is the new file's, for
		// the next look.
		p.e.log.Warn("file replaced while it was taken; the new one is taken next", "flow", p.id, "file", name,
			"accepted", ft.accepted.Load(), "error", err)
		return nil
	}
	var pr *problem
	if errors.As(err, &pr) {
		return p.settle(name, info, pr, nil)
	}
	if err != nil {
		return err
	}
	return p.settle(name, info, nil, ft)
}

// settled is a file whose outcome is known and whose move failed: its
// messages are all accepted (pr nil) or its content is wrong (pr).
type settled struct {
	info fs.FileInfo
	pr   *problem
}

// sameVersion reports whether two looks at a name see the same file, unchanged.
func sameVersion(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// settle moves a file whose messages are all accepted to done/ (pr nil;
// ft is the take that accepted them, nil for an earlier take), or one
// whose content is wrong to error/. A move that fails is remembered, so
// that the next try of the file, unchanged, only moves it.
func (p *poller) settle(name string, info fs.FileInfo, pr *problem, ft *fileTake) error {
	var err error
	if pr != nil {
		err = p.reject(name, pr)
	} else {
		err = p.done(name, ft)
	}
	if err != nil {
		p.settled[name] = settled{info: info, pr: pr}
		return err
	}
	delete(p.settled, name)
	return nil
}

// done moves a file whose messages are all accepted to done/.
func (p *poller) done(name string, ft *fileTake) error {
	if _, err := fileconn.MoveTo(p.in.dir, name, p.in.doneDir, time.Now()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("move to %s: %w", p.in.doneDir, err)
	}
	p.removeMarker(name)
	if ft == nil {
		p.e.log.Info("file taken: moved to done/ after an earlier try accepted it", "flow", p.id, "file", name)
		return nil
	}
	p.e.log.Info("file taken", "flow", p.id, "file", name, "records", ft.total, "accepted", ft.accepted.Load(),
		"duplicates", ft.duplicates.Load(), "took", time.Since(ft.received).Round(time.Millisecond).String())
	return nil
}

// reject moves a file to error/ with a .reason file.
func (p *poller) reject(name string, pr *problem) error {
	dest, err := fileconn.MoveTo(p.in.dir, name, p.in.errorDir, time.Now())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("move to %s: %w", p.in.errorDir, err)
	}
	if err := fileconn.WriteReason(dest, name, pr.lines); err != nil {
		p.e.log.Error("cannot write the reason file", "flow", p.id, "file", dest, "error", err)
	}
	p.removeMarker(name)
	p.e.metrics.received.WithLabelValues(p.id).Inc()
	p.e.metrics.rejected.WithLabelValues(p.id, pr.reason).Inc()
	p.e.log.Warn("file rejected: moved to the error directory", "flow", p.id, "file", name, "to", dest, "reason", pr.Error())
	return nil
}

func (p *poller) removeMarker(name string) {
	if p.in.complete == "marker" {
		_ = os.Remove(filepath.Join(p.in.dir, name+p.in.marker))
	}
}

// fileTake is one file being taken.
type fileTake struct {
	p        *poller
	f        *flows.Flow
	lf       *liveFlow
	name     string
	mod      time.Time
	sum      []byte // content hash
	total    int
	received time.Time

	accepted, duplicates atomic.Int64
}

// whole takes a file as one message.
func (t *fileTake) whole(ctx context.Context, fh *os.File, size int64) error {
	if size > maxWholeFile {
		return t.tooLarge(size, "per: file makes one message of the whole file; use per: record")
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	t.sum = sum[:]
	v, err := fileconn.ReadAll(bytes.NewReader(data), t.p.in.format, t.p.in.csv)
	if err != nil {
		return malformed(err)
	}
	t.total = 1
	if list, ok := v.([]any); ok && (t.p.in.format == fileconn.CSV || t.p.in.format == fileconn.JSONL) {
		t.total = len(list)
	}
	if line, reason := t.check(ctx, -1, v); line != "" {
		return &problem{reason: reason, lines: []string{line}}
	}
	m, err := t.message(-1, v)
	if err != nil {
		return err
	}
	acc := t.newAccepter(ctx)
	acc.accept(m)
	return acc.wait()
}

// records takes a file as one message per record, in two passes.
func (t *fileTake) records(ctx context.Context, fh *os.File, size int64) error {
	if t.p.in.format == fileconn.JSON && size > maxWholeFile {
		return t.tooLarge(size, "a JSON file is read whole; write one record per line (format: jsonl)")
	}
	var issues []string
	var reason string
	h := sha256.New()
	n, err := t.each(ctx, fh, h, func(i int, v any) error {
		if line, why := t.check(ctx, i, v); line != "" {
			issues = append(issues, line)
			if reason == "" {
				reason = why
			}
			if len(issues) >= maxProblems {
				return errStop
			}
		}
		return nil
	}, func(e *fileconn.Error) bool {
		issues, reason = append(issues, e.Error()), "malformed" // the first file error makes it malformed
		return !e.Fatal && len(issues) < maxProblems
	})
	if err != nil && err != errStop {
		return err
	}
	if len(issues) > 0 {
		return &problem{reason: reason, lines: issues}
	}
	t.sum, t.total = h.Sum(nil), n
	acc := t.newAccepter(ctx)
	_, err = t.each(ctx, fh, nil, func(i int, v any) error {
		m, err := t.message(i, v)
		if err != nil {
			return err
		}
		acc.accept(m)
		return acc.failed()
	}, func(e *fileconn.Error) bool { return false })
	if werr := acc.wait(); werr != nil {
		return werr
	}
	if err == errStop {
		return errors.New("the file changed between the check and the accept pass")
	}
	return err
}

var errStop = errors.New("stop")

// each streams the records of fh, from its start, through fn (and the
// bytes through h), handing format errors to bad, which says whether to
// go on.
func (t *fileTake) each(ctx context.Context, fh *os.File, h hash.Hash, fn func(int, any) error, bad func(*fileconn.Error) bool) (int, error) {
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	var r io.Reader = fh
	if h != nil {
		r = io.TeeReader(fh, h)
	}
	rs, err := fileconn.NewRecords(r, t.p.in.format, t.p.in.csv)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		v, err := rs.Next()
		if err == io.EOF {
			break
		}
		var fe *fileconn.Error
		if errors.As(err, &fe) {
			if !bad(fe) {
				return n, errStop
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if err := fn(n, v); err != nil {
			return n, err
		}
		n++
	}
	if h != nil {
		_, err = io.Copy(io.Discard, r) // what the reader left unread (trailing blanks)
	}
	return n, err
}

// headers are the headers of record i (-1: the whole file).
func (t *fileTake) headers(i int) (map[string]string, string) {
	h := map[string]string{"X-File-Name": t.name, "X-File-Records": strconv.Itoa(t.total)}
	if i < 0 {
		return h, "the file"
	}
	h["X-File-Record"] = strconv.Itoa(i + 1)
	return h, "record " + strconv.Itoa(i+1)
}

// check runs the flow's leading validate steps on record i (-1: the
// whole file) and computes its dedup key. It returns what is wrong, as a
// line of the .reason file, and the metric's reason ("" when all is well).
// In the first pass of per: record meta.id is empty: the ids derive from
// the content hash, known at its end.
func (t *fileTake) check(ctx context.Context, i int, v any) (line, reason string) {
	f := t.f
	headers, where := t.headers(i)
	if f.AcceptSteps > 0 {
		msg := &flows.Message{ID: t.messageID(i), ReceivedAt: t.received, Attempt: 1, Revision: f.Revision, Body: v, Headers: headers}
		if res := f.Run(ctx, msg, nil, f.AcceptSteps, flows.Deps{}); res.Err != nil {
			var se *flows.StepError
			if errors.As(res.Err, &se) && se.Class == flows.Validation {
				return where + ": " + strings.Join(se.Errors, "; "), "validation"
			}
			return where + ": " + res.Err.Error(), "validation"
		}
	}
	if _, err := t.dedupKey(i, v, headers); err != nil {
		return where + ": " + err.Error(), "dedup_key"
	}
	return "", ""
}

func (t *fileTake) dedupKey(i int, v any, headers map[string]string) (string, error) {
	f := t.f
	if f.Dedup == nil {
		return "", nil
	}
	env := mappings.NewEnv(v, headers, mappings.Meta{ID: t.messageID(i), Flow: f.ID, Revision: f.Revision, ReceivedAt: t.received})
	return dedupKeyOf(f, env)
}

// message is the stored message of record i (-1: the whole file).
func (t *fileTake) message(i int, v any) (*store.Message, error) {
	f := t.f
	headers, where := t.headers(i)
	key, err := t.dedupKey(i, v, headers)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	raw, err := jsonv.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &store.Message{ID: t.messageID(i), Flow: f.ID, Revision: f.Revision, Status: store.Queued, Source: "file:" + t.name, DedupKey: key,
		ReceivedAt: t.received, DueAt: t.received, Body: raw, Headers: headers}, nil
}

// messageID derives a record's id from the flow, the file and the
// position, so a second look at the same file stores nothing twice.
func (t *fileTake) messageID(i int) string {
	if t.sum == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%x\x00%d", t.f.ID, t.name, t.mod.UnixNano(), t.sum, i)
	return "file-" + hex.EncodeToString(h.Sum(nil)[:16])
}

func (t *fileTake) tooLarge(size int64, hint string) error {
	return &problem{reason: "too_large", lines: []string{fmt.Sprintf("the file has %d bytes, more than the %d MiB read whole: %s", size, maxWholeFile>>20, hint)}}
}

func malformed(err error) error {
	return &problem{reason: "malformed", lines: []string{err.Error()}}
}

// accepter stores a file's messages, fileAccepts at a time.
type accepter struct {
	t    *fileTake
	ctx  context.Context
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	ttl  time.Duration
	bail atomic.Bool
}

func (t *fileTake) newAccepter(ctx context.Context) *accepter {
	a := &accepter{t: t, ctx: ctx, sem: make(chan struct{}, fileAccepts)}
	if t.f.Dedup != nil {
		a.ttl = t.f.Dedup.TTL
	}
	return a
}

func (a *accepter) accept(m *store.Message) {
	a.sem <- struct{}{}
	a.wg.Add(1)
	go func() {
		defer func() { <-a.sem; a.wg.Done() }()
		t, e := a.t, a.t.p.e
		e.metrics.received.WithLabelValues(t.f.ID).Inc()
		existing, err := e.store.Accept(a.ctx, m, a.ttl)
		switch {
		case err != nil:
			e.metrics.rejected.WithLabelValues(t.f.ID, "store").Inc()
			a.mu.Lock()
			if a.err == nil {
				a.err = fmt.Errorf("accept: %w", err)
			}
			a.mu.Unlock()
			a.bail.Store(true)
		case existing == nil:
			t.accepted.Add(1)
			e.metrics.accepted.WithLabelValues(t.f.ID).Inc()
			t.lf.pool.wake()
		case existing.ID != m.ID:
			t.duplicates.Add(1)
			e.metrics.duplicates.WithLabelValues(t.f.ID).Inc()
		default:
			// Stored by an earlier take of this file (one that stopped
			// midway): delivered again, so a duplicate for the metrics, as
			// an event stored by an earlier try is; not one for the log,
			// whose duplicates are other messages'.
			e.metrics.duplicates.WithLabelValues(t.f.ID).Inc()
		}
	}()
}

// failed returns the first accept error so far.
func (a *accepter) failed() error {
	if !a.bail.Load() {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// wait waits for the accepts in flight and returns the first error.
func (a *accepter) wait() error {
	a.wg.Wait()
	return a.failed()
}
