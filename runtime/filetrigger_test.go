package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// drop writes a file into dir the way a careful sender does: under a
// temporary name, renamed when complete.
func drop(t *testing.T, dir, name, content string) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o755))
	tmp := filepath.Join(dir, name+".part")
	must(t, os.WriteFile(tmp, []byte(content), 0o644))
	must(t, os.Rename(tmp, filepath.Join(dir, name)))
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// bodies returns what the target received, by the field key.
func (tg *target) bodies(key string) map[string]map[string]any {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	out := map[string]map[string]any{}
	for _, b := range tg.orders {
		out[fmt.Sprint(b[key])] = b
	}
	return out
}

func fileFlow(dir, format, per, extra string, steps string) string {
	return fmt.Sprintf("trigger: {file: {dir: %s, format: %s, per: %s, stable_for: 100ms%s}}\nretry: {attempts: 3, initial: 50ms, max: 100ms}\nsteps:\n%s", dir, format, per, extra, steps)
}

const x12Order = "ISA*00*          *00*          *ZZ*NORTHWIND      *ZZ*ACMESUPPLY     *240116*0930*U*00401*000000905*0*P*>~\n" +
	"GS*PO*NORTHWIND*ACMESUPPLY*20240116*0930*905*X*004010~\n" +
	"ST*850*0001~\nBEG*00*SA*4500012345**20240115~\nN1*ST*NORTHWIND STORE 0042*92*0042~\nPO1*1*24*EA*9.95*PE*VP*WID-100-BL~\nPID*F****WIDGET, BLUE~\nCTT*1~\nSE*7*0001~\n" +
	"ST*850*0002~\nBEG*00*SA*4500012346**20240116~\nPO1*1*100*EA*0.89*PE*VP*BLT-M6~\nCTT*1~\nSE*5*0002~\n" +
	"GE*2*905~\nIEA*1*000000905~\n"

// Each format produces the right messages: per file the whole value, per
// record one message a record, with the file's name in the headers.
func TestFileTriggerFormats(t *testing.T) {
	erp := newTarget(t)
	call := "  - call: {connection: erp, path: /in, body: '%s'}\n"
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"json-file":  fileFlow("in/json", "json", "file", "", fmt.Sprintf(call, `{key: "json:" + body.ref, lines: len(body.lines), file: header("X-File-Name")}`)),
		"jsonl-rec":  fileFlow("in/jsonl", "jsonl", "record", "", fmt.Sprintf(call, `{key: "jsonl:" + string(body.n), of: header("X-File-Records"), at: header("X-File-Record")}`)),
		"csv-rec":    fileFlow("in/csv", "csv", "record", ", csv: {delimiter: ';'}", fmt.Sprintf(call, `{key: "csv:" + body.sku, qty: int(body.qty)}`)),
		"csv-file":   fileFlow("in/csvfile", "csv", "file", "", fmt.Sprintf(call, `{key: "csvfile", rows: len(body), first: body[0].sku}`)),
		"x12-rec":    fileFlow("in/x12", "x12", "record", ", pattern: '*.edi'", fmt.Sprintf(call, `{key: "x12:" + body.groups[0].transactions[0].purchase_order.beg.po_number, set: body.groups[0].transactions[0].set}`)),
		"x12-file":   fileFlow("in/x12file", "x12", "file", "", fmt.Sprintf(call, `{key: "x12file", orders: len(body.groups[0].transactions)}`)),
		"json-array": fileFlow("in/array", "json", "record", "", fmt.Sprintf(call, `{key: "array:" + string(body)}`)),
	})
	e := start(t, dir, runtime.Options{})
	in := func(sub string) string { return filepath.Join(dir, "in", sub) }
	drop(t, in("json"), "order.json", `{"ref": "R1", "lines": [1, 2, 3]}`)
	drop(t, in("jsonl"), "events.jsonl", "{\"n\": 1}\n\n{\"n\": 2}\n{\"n\": 3}\n")
	drop(t, in("csv"), "stock.csv", "\xef\xbb\xbfsku;qty\nA-1;5\nB-2;7\n")
	drop(t, in("csvfile"), "stock.csv", "sku,qty\nA-1,5\nB-2,7\n")
	drop(t, in("x12"), "po.edi", x12Order)
	drop(t, in("x12"), "notes.txt", "not for this flow")
	drop(t, in("x12file"), "po.edi", x12Order)
	drop(t, in("array"), "list.json", `[10, 20]`)
	want := 1 + 3 + 2 + 1 + 2 + 1 + 2
	eventually(t, 10*time.Second, "every message at the target", func() bool { return erp.count() == want })
	got := erp.bodies("key")
	seen := func(map[string]any) bool { return true }
	for key, check := range map[string]func(map[string]any) bool{
		"json:R1":        func(b map[string]any) bool { return b["lines"] == float64(3) && b["file"] == "order.json" },
		"jsonl:2":        func(b map[string]any) bool { return b["of"] == "3" && b["at"] == "2" },
		"csv:B-2":        func(b map[string]any) bool { return b["qty"] == float64(7) },
		"csvfile":        func(b map[string]any) bool { return b["rows"] == float64(2) && b["first"] == "A-1" },
		"x12:4500012346": func(b map[string]any) bool { return b["set"] == "850" },
		"x12file":        func(b map[string]any) bool { return b["orders"] == float64(2) },
		"x12:4500012345": seen, "jsonl:1": seen, "jsonl:3": seen, "csv:A-1": seen, "array:10": seen, "array:20": seen,
	} {
		if b, ok := got[key]; !ok || !check(b) {
			t.Errorf("%s: got %v", key, b)
		}
	}
	for _, p := range []string{"json/done/order.json", "jsonl/done/events.jsonl", "csv/done/stock.csv", "x12/done/po.edi", "x12/notes.txt", "array/done/list.json"} {
		eventually(t, 2*time.Second, p, func() bool { return exists(in(p)) })
	}
	msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "csv-rec"})
	must(t, err)
	if len(msgs) != 2 || msgs[0].Source != "file:stock.csv" || msgs[0].Headers["X-File-Name"] != "stock.csv" {
		t.Errorf("csv messages: %d, %+v", len(msgs), msgs)
	}
}

// flakyStore fails every Accept after the first n, like a store that goes
// away while a file is being accepted.
type flakyStore struct {
	store.Store
	left atomic.Int64
}

func (s *flakyStore) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	if s.left.Add(-1) < 0 {
		return nil, errors.New("store unavailable")
	}
	return s.Store.Accept(ctx, m, ttl)
}

// A file whose accepting stops midway stays in the inbox; after a restart
// the rest is accepted and nothing twice.
func TestFileTriggerResumesAfterRestart(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"rows": fileFlow("inbox", "csv", "record", "", "  - call: {connection: erp, path: /rows, body: '{row: body.n}'}\n"),
	})
	const rows, first = 1000, 400
	var csv strings.Builder
	csv.WriteString("n\n")
	for i := range rows {
		fmt.Fprintf(&csv, "%d\n", i)
	}
	data := filepath.Join(dir, "data")
	bolt, err := store.OpenBolt(data)
	must(t, err)
	flaky := &flakyStore{Store: bolt}
	flaky.left.Store(first)
	e := start(t, dir, runtime.Options{Store: flaky})
	drop(t, filepath.Join(dir, "inbox"), "rows.csv", csv.String())
	eventually(t, 10*time.Second, "the first rows delivered", func() bool { return erp.count() == first })
	time.Sleep(300 * time.Millisecond)
	if !exists(filepath.Join(dir, "inbox", "rows.csv")) {
		t.Fatal("a file not wholly accepted left the inbox")
	}
	must(t, e.Shutdown(context.Background()))
	// An operator's chmod (or a kubelet applying fsGroup) meanwhile
	// changes the file's status, not its content or modification time.
	must(t, os.Chmod(filepath.Join(dir, "inbox", "rows.csv"), 0o640))

	e = start(t, dir, runtime.Options{DataDir: data})
	eventually(t, 15*time.Second, "every row delivered", func() bool { return erp.count() == rows })
	eventually(t, 2*time.Second, "the file in done/", func() bool { return exists(filepath.Join(dir, "inbox", "done", "rows.csv")) })
	msgs, err := e.Store().List(context.Background(), store.Filter{Flow: "rows", Limit: 2 * rows})
	must(t, err)
	if len(msgs) != rows || erp.replays != 0 || int(erp.calls.Load()) != rows {
		t.Errorf("%d messages, %d calls, %d replays; want %d, %d, 0", len(msgs), erp.calls.Load(), erp.replays, rows, rows)
	}
}

// complete: marker waits for <name>.done, then removes it.
func TestFileTriggerMarker(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"marked": fileFlow("inbox", "json", "file", ", complete: marker, marker: .ok", "  - call: {connection: erp, path: /x}\n"),
	})
	e := start(t, dir, runtime.Options{})
	inbox := filepath.Join(dir, "inbox")
	must(t, os.MkdirAll(inbox, 0o755))
	must(t, os.WriteFile(filepath.Join(inbox, "a.json"), []byte(`{"id": "a"}`), 0o644))
	time.Sleep(600 * time.Millisecond)
	if erp.count() != 0 || !exists(filepath.Join(inbox, "a.json")) {
		t.Fatal("a file without its marker was taken")
	}
	must(t, os.WriteFile(filepath.Join(inbox, "a.json.ok"), nil, 0o644))
	eventually(t, 5*time.Second, "the marked file taken", func() bool { return erp.count() == 1 })
	eventually(t, 2*time.Second, "the file in done/ and the marker gone", func() bool {
		return exists(filepath.Join(inbox, "done", "a.json")) && !exists(filepath.Join(inbox, "a.json.ok"))
	})

	// A disabled flow leaves its inbox alone until it is enabled again.
	_, err := e.SetEnabled(context.Background(), "marked", false, "test")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(inbox, "b.json"), []byte(`{"id": "b"}`), 0o644))
	must(t, os.WriteFile(filepath.Join(inbox, "b.json.ok"), nil, 0o644))
	time.Sleep(600 * time.Millisecond)
	if erp.count() != 1 || !exists(filepath.Join(inbox, "b.json")) {
		t.Fatal("a disabled flow took a file")
	}
	_, err = e.SetEnabled(context.Background(), "marked", true, "test")
	must(t, err)
	eventually(t, 5*time.Second, "the file taken once enabled", func() bool { return erp.count() == 2 })
}

// A corpus of broken files: each ends in error/ with a reason naming the
// position; good files dropped alongside are processed, and the engine
// keeps taking files afterwards.
func TestFileTriggerBadInput(t *testing.T) {
	erp := newTarget(t)
	call := "  - call: {connection: erp, path: /x, body: '{k: %s}'}\n"
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"csv":   fileFlow("in/csv", "csv", "record", "", "  - validate: [{rule: 'int(body.qty) > 0', message: qty must be positive}]\n"+fmt.Sprintf(call, `"csv:" + body.sku`)),
		"json":  fileFlow("in/json", "json", "file", "", fmt.Sprintf(call, `"json:" + body.id`)),
		"jsonl": fileFlow("in/jsonl", "jsonl", "record", "", fmt.Sprintf(call, `"jsonl:" + string(body.n)`)),
		"x12":   fileFlow("in/x12", "x12", "record", "", fmt.Sprintf(call, `"x12:" + body.groups[0].transactions[0].control`)),
	})
	e := start(t, dir, runtime.Options{})
	in := func(sub string) string { return filepath.Join(dir, "in", sub) }
	bad := map[string]string{ // path below in/ -> what the reason must say
		"csv/unterminated.csv": "line 3, column 6: a quoted field of the row starting on line 3 is not closed before the end of the file",
		"csv/fields.csv":       "line 3: the row has 3 fields, the header has 2",
		"csv/rule.csv":         "record 2: qty must be positive",
		"json/broken.json":     "line 2, column 12: invalid character '}'",
		"jsonl/line3.jsonl":    "line 3, column 7: invalid character",
		"x12/se01.edi":         "segment 9 (SE) at byte 311: SE01 says 9 segments, the transaction has 7",
		"x12/truncated.edi":    "input ends without SE",
	}
	drop(t, in("csv"), "unterminated.csv", "sku,qty\nA,1\nB,\"2\n")
	drop(t, in("csv"), "fields.csv", "sku,qty\nA,1\nB,2,3\nC,4\n")
	drop(t, in("csv"), "rule.csv", "sku,qty\nA,1\nB,0\n")
	drop(t, in("csv"), "good.csv", "sku,qty\nA,1\nB,2\n")
	drop(t, in("json"), "broken.json", "{\"id\": \"a\",\n  \"lines\": }\n")
	drop(t, in("json"), "good.json", `{"id": "a"}`)
	drop(t, in("jsonl"), "line3.jsonl", "{\"n\": 1}\n{\"n\": 2}\n{\"n\": }\n{\"n\": 4}\n")
	drop(t, in("jsonl"), "good.jsonl", "{\"n\": 1}\n")
	drop(t, in("x12"), "se01.edi", strings.Replace(x12Order, "SE*7*0001", "SE*9*0001", 1))
	drop(t, in("x12"), "truncated.edi", x12Order[:300])
	drop(t, in("x12"), "good.edi", x12Order)
	// per: file holds a file in one message: 65 MiB is refused (a sparse
	// file: its size is all that is read).
	must(t, os.WriteFile(in("json/huge.json.part"), nil, 0o644))
	must(t, os.Truncate(in("json/huge.json.part"), 65<<20))
	must(t, os.Rename(in("json/huge.json.part"), in("json/huge.json")))
	bad["json/huge.json"] = "the file has 68157440 bytes, more than the 64 MiB read whole: per: file makes one message of the whole file; use per: record"
	eventually(t, 10*time.Second, "the good files processed", func() bool { return erp.count() == 2+1+1+2 })
	for p, want := range bad {
		reason := in(filepath.Join(filepath.Dir(p), "error", filepath.Base(p)+".reason"))
		eventually(t, 5*time.Second, p+" in error/", func() bool { return exists(reason) })
		if got := readFile(t, reason); !strings.Contains(got, want) || !strings.HasPrefix(got, filepath.Base(p)+": ") {
			t.Errorf("%s: reason %q, want it to say %q", p, got, want)
		}
		if !exists(in(filepath.Join(filepath.Dir(p), "error", filepath.Base(p)))) {
			t.Errorf("%s is not in error/", p)
		}
	}
	got := erp.bodies("k")
	for _, k := range []string{"csv:A", "csv:B", "json:a", "jsonl:1", "x12:0001", "x12:0002"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s missing at the target: %v", k, got)
		}
	}
	drop(t, in("json"), "later.json", `{"id": "later"}`)
	eventually(t, 5*time.Second, "a file dropped after the broken ones", func() bool { return erp.count() == 7 })

	resp, err := http.Get("http://" + e.AdminAddr() + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`conveyor_messages_rejected_total{flow="csv",reason="malformed"} 2`,
		`conveyor_messages_rejected_total{flow="csv",reason="validation"} 1`,
		`conveyor_messages_rejected_total{flow="json",reason="too_large"} 1`,
		`conveyor_messages_rejected_total{flow="x12",reason="malformed"} 2`,
		`conveyor_messages_accepted_total{flow="x12"} 2`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// End to end at scale: a CSV taken per record by a flow that drops every
// message. CONVEYOR_FILE_ROWS sets the rows (default 20,000; 2,700,000
// make a 200 MB file).
func TestFileTriggerLargeCSV(t *testing.T) {
	testenv.SkipShort(t, "accepts many messages")
	rows := 20000
	if v, err := strconv.Atoi(os.Getenv("CONVEYOR_FILE_ROWS")); err == nil && v > 0 {
		rows = v
	}
	dir := workspace(t, map[string]*target{}, map[string]string{
		"bulk": "trigger: {file: {dir: inbox, format: csv, per: record, stable_for: 100ms}}\nconcurrency: 16\nsteps: [{filter: 'false'}]\n",
	})
	must(t, os.MkdirAll(filepath.Join(dir, "inbox"), 0o755))
	tmp := filepath.Join(dir, "inbox", "bulk.csv.part")
	f, err := os.Create(tmp)
	must(t, err)
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("order_id,sku,description,qty,price,warehouse,updated_at\n")
	size := 0
	for n := range rows {
		k, _ := fmt.Fprintf(w, "SO-%08d,SKU-%05d,\"Widget, blue %d\",%d,%d.%02d,WH-%02d,2026-01-%02dT10:00:00Z\n",
			n, n%50000, n%977, n%40+1, n%300, n%100, n%12, n%28+1)
		size += k
	}
	must(t, w.Flush())
	must(t, f.Close())
	goruntime.GC()
	var before goruntime.MemStats
	goruntime.ReadMemStats(&before)
	e := start(t, dir, runtime.Options{})
	began := time.Now()
	must(t, os.Rename(tmp, filepath.Join(dir, "inbox", "bulk.csv")))
	var peak uint64
	var anon int64
	eventually(t, time.Duration(rows/500+60)*time.Second, "the file in done/", func() bool {
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		peak, anon = max(peak, ms.HeapAlloc), max(anon, procStatus("RssAnon"))
		return exists(filepath.Join(dir, "inbox", "done", "bulk.csv"))
	})
	accepted := time.Since(began)
	eventually(t, time.Duration(rows/500+60)*time.Second, "every message filtered", func() bool {
		n, _, err := e.Store().Depth(context.Background(), "bulk")
		return err == nil && n == 0
	})
	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	t.Logf("%d rows (%.1f MB): accepted in %s (%.0f/s), all filtered after %s; while accepting: peak heap %.1f MiB (%.1f MiB before the engine), "+
		"peak anonymous RSS %.1f MiB; peak RSS %.1f MiB (with the store's memory-mapped file: %.1f MiB now)",
		rows, float64(size)/1e6, accepted.Round(time.Millisecond), float64(rows)/accepted.Seconds(), time.Since(began).Round(time.Millisecond),
		mb(int64(peak)), mb(int64(before.HeapAlloc)), mb(anon), mb(procStatus("VmHWM")), mb(procStatus("RssFile")))
}

// procStatus is a size field of /proc/self/status (Linux; 0 elsewhere),
// in bytes: VmHWM (peak RSS), RssAnon, RssFile.
func procStatus(field string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A missing inbox is waited for, not created, unless the engine is told
// to create inboxes (conveyor demo).
func TestFileTriggerMissingInbox(t *testing.T) {
	for _, create := range []bool{false, true} {
		t.Run(fmt.Sprint("create=", create), func(t *testing.T) {
			erp := newTarget(t)
			dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
				"inbox": fileFlow("in/orders", "json", "file", "", "  - call: {connection: erp, path: /orders}\n"),
			})
			start(t, dir, runtime.Options{CreateInboxes: create})
			inbox := filepath.Join(dir, "in", "orders")
			if !create {
				time.Sleep(300 * time.Millisecond) // six looks at stable_for 100ms
				if exists(inbox) {
					t.Fatal("the inbox was created")
				}
				return
			}
			eventually(t, 5*time.Second, "the inbox", func() bool { return exists(inbox) })
			drop(t, inbox, "o.json", `{"id": 1}`)
			eventually(t, 5*time.Second, "the order in the ERP", func() bool { return erp.count() == 1 })
		})
	}
}

// An operator reprocesses a file by moving it from done/ back into the
// inbox: as it was (mv keeps the modification time), it is the same
// delivery and nothing is taken again; touched, it is a new delivery.
func TestFileMovedBackFromDoneIsTakenAgainOnceTouched(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"rows": fileFlow("inbox", "csv", "record", "", "  - call: {connection: erp, path: /rows, body: '{row: body.n}'}\n"),
	})
	start(t, dir, runtime.Options{})
	inbox := filepath.Join(dir, "inbox")
	drop(t, inbox, "rows.csv", "n\n1\n2\n")
	done := filepath.Join(inbox, "done", "rows.csv")
	eventually(t, 5*time.Second, "the first delivery", func() bool { return erp.calls.Load() == 2 && exists(done) })
	must(t, os.Rename(done, filepath.Join(inbox, "rows.csv")))
	eventually(t, 5*time.Second, "the file back in done/", func() bool { return exists(done) })
	if n := erp.calls.Load(); n != 2 {
		t.Fatalf("%d calls after moving the file back as it was; want 2 (the same delivery)", n)
	}
	must(t, os.Rename(done, filepath.Join(inbox, "rows.csv")))
	later := time.Now().Add(time.Second)
	must(t, os.Chtimes(filepath.Join(inbox, "rows.csv"), later, later))
	eventually(t, 5*time.Second, "the second delivery", func() bool { return erp.calls.Load() == 4 })
}

// replaceOnAccept replaces the inbox's file once, on the first Accept:
// a sender's new file, renamed over the one being taken.
type replaceOnAccept struct {
	store.Store
	once    sync.Once
	replace func()
}

func (s *replaceOnAccept) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	s.once.Do(s.replace)
	return s.Store.Accept(ctx, m, ttl)
}

// A sender drops a new stock.csv while the previous one is being taken:
// both files' records are accepted, and done/ holds both files.
func TestFileReplacedWhileTakenIsTakenToo(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"stock": fileFlow("inbox", "csv", "record", "", "  - call: {connection: erp, path: /stock, body: '{sku: body.sku}'}\n"),
	})
	inbox := filepath.Join(dir, "inbox")
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	start(t, dir, runtime.Options{Store: &replaceOnAccept{Store: b, replace: func() { drop(t, inbox, "stock.csv", "sku\nNEW-1\nNEW-2\n") }}})
	drop(t, inbox, "stock.csv", "sku\nOLD-1\nOLD-2\n")
	eventually(t, 5*time.Second, "all four records", func() bool { return len(erp.bodies("sku")) == 4 })
	eventually(t, 2*time.Second, "the inbox empty", func() bool { return !exists(filepath.Join(inbox, "stock.csv")) })
	entries, err := os.ReadDir(filepath.Join(inbox, "done"))
	must(t, err)
	if len(entries) != 1 {
		t.Errorf("done/ holds %d files; want the new one (the old one was replaced by it)", len(entries))
	}
}

// An export that creates its file before it has data (it opens the
// output, then runs its query) leaves an empty file in the inbox for as
// long as the query takes. The file is not taken empty: it was moved to
// done/ with nothing in it, the export went on writing into the moved
// file, and its rows never reached the flow.
func TestFileTriggerWaitsForAnEmptyFile(t *testing.T) {
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"stock": fileFlow("inbox", "csv", "record", "", "  - call: {connection: erp, path: /stock, body: '{sku: body.sku}'}\n"),
	})
	inbox := filepath.Join(dir, "inbox")
	must(t, os.MkdirAll(inbox, 0o755))
	start(t, dir, runtime.Options{})
	out, err := os.Create(filepath.Join(inbox, "stock.csv")) // the export starts
	must(t, err)
	defer out.Close()
	time.Sleep(time.Second) // its query runs: ten times stable_for
	_, err = out.WriteString("sku\nA-1\nB-2\n")
	must(t, err)
	must(t, out.Close())
	eventually(t, 5*time.Second, "both rows at the target", func() bool { return len(erp.bodies("sku")) == 2 })
	eventually(t, 2*time.Second, "the file in done/", func() bool { return exists(filepath.Join(inbox, "done", "stock.csv")) })
}

// countAccepts counts the Accepts the store is asked for.
type countAccepts struct {
	store.Store
	n atomic.Int64
}

func (s *countAccepts) Accept(ctx context.Context, m *store.Message, ttl time.Duration) (*store.Message, error) {
	s.n.Add(1)
	return s.Store.Accept(ctx, m, ttl)
}

// A file whose records are all accepted but that cannot be moved to done/
// (no permission, the done volume full or not mounted) is tried again,
// and each try only moves it: its records were read and sent to the store
// again every few seconds, a million-row file a million accepts at every
// try, and each counted as received and as a duplicate again.
func TestFileNotMovedIsNotAcceptedAgain(t *testing.T) {
	testenv.SkipShort(t, "waits for a retry of the move")
	erp := newTarget(t)
	dir := workspace(t, map[string]*target{"erp": erp}, map[string]string{
		"stock": fileFlow("inbox", "csv", "record", ", done_dir: blocked/done", "  - call: {connection: erp, path: /stock, body: '{sku: body.sku}'}\n"),
	})
	blocked := filepath.Join(dir, "blocked")
	must(t, os.WriteFile(blocked, nil, 0o644)) // a file where done/'s parent should be
	b, err := store.OpenBolt(filepath.Join(dir, "data"))
	must(t, err)
	s := &countAccepts{Store: b}
	e := start(t, dir, runtime.Options{Store: s})
	inbox := filepath.Join(dir, "inbox")
	drop(t, inbox, "stock.csv", "sku\nA-1\nB-2\nC-3\n")
	eventually(t, 5*time.Second, "the three rows at the target", func() bool { return len(erp.bodies("sku")) == 3 })
	time.Sleep(6 * time.Second) // past the next try
	if !exists(filepath.Join(inbox, "stock.csv")) {
		t.Fatal("the file left the inbox though done/ cannot be made")
	}
	if n, st := s.n.Load(), e.Stats(context.Background(), "stock"); n != 3 || st.Received != 3 || st.Duplicates != 0 {
		t.Errorf("after a second try: %d accepts, %d received, %d duplicates; want 3, 3 and 0", n, st.Received, st.Duplicates)
	}
	must(t, os.Remove(blocked))
	eventually(t, 8*time.Second, "the file in done/", func() bool { return exists(filepath.Join(blocked, "done", "stock.csv")) })
	if n := s.n.Load(); n != 3 {
		t.Errorf("%d accepts once the move succeeded; want 3", n)
	}
}
