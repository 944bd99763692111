package fileconn_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	fileconn "github.com/conveyor-run/conveyor/connectors/file"
	"github.com/conveyor-run/conveyor/mappings/x12"
)

func outbox(t *testing.T, format string, csv map[string]any) (connectors.Caller, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outbox")
	values := map[string]any{"dir": dir, "format": format}
	if csv != nil {
		values["csv"] = csv
	}
	c, err := connectors.Default.Build("file", connectors.Config{Name: "outbox", Values: values})
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func call(t *testing.T, c connectors.Caller, path, key string, body any) *connectors.Response {
	t.Helper()
	resp, err := c.Call(context.Background(), connectors.Request{Connection: "outbox", Method: "POST", Path: path, Body: body, IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOutboxFormats(t *testing.T) {
	rows := []any{map[string]any{"sku": "A-1", "qty": 2, "note": "a, b"}, map[string]any{"sku": "B-2", "qty": 1.5, "extra": nil}}
	for _, tc := range []struct {
		format string
		csv    map[string]any
		body   any
		want   string
	}{
		{"json", nil, map[string]any{"b": 1, "a": "x"}, "{\"a\":\"x\",\"b\":1}\n"},
		{"jsonl", nil, []any{map[string]any{"a": 1}, "two", 3}, "{\"a\":1}\n\"two\"\n3\n"},
		{"jsonl", nil, map[string]any{"a": 1}, "{\"a\":1}\n"},
		{"csv", nil, rows, "extra,note,qty,sku\n,\"a, b\",2,A-1\n,,1.5,B-2\n"},
		{"csv", map[string]any{"delimiter": ";", "header": false}, []any{[]any{"x", 1, true}}, "x;1;true\n"},
		{"csv", nil, map[string]any{"columns": []any{"sku", "qty"}, "rows": rows}, "sku,qty\nA-1,2\nB-2,1.5\n"},
		// formulas run when a spreadsheet opens the file, unless escaped
		{"csv", nil, []any{[]any{"=HYPERLINK(\"x\")", "-5", "@SUM(A1)"}}, "\"=HYPERLINK(\"\"x\"\")\",-5,@SUM(A1)\n"},
		{"csv", map[string]any{"escape_formulas": true}, []any{map[string]any{"sku": "A-1", "=HYPERLINK(\"x\")": "@1"}},
			"\"'=HYPERLINK(\"\"x\"\")\",sku\n'@1,A-1\n"},
		{"csv", map[string]any{"escape_formulas": true, "header": false},
			[]any{[]any{"=HYPERLINK(\"x\")", "+1", "-5", "@SUM(A1)", "\tx", "a=b", -5, "", nil}},
			"\"'=HYPERLINK(\"\"x\"\")\",'+1,'-5,'@SUM(A1),'\tx,a=b,-5,,\n"},
		{"x12", nil, "ISA*00*          *00*          *ZZ*A              *ZZ*B              *240116*0930*U*00401*000000001*0*P*>~GS*FA*A*B*20240116*0930*1*X*004010~ST*997*0001~AK1*PO*1~AK9*A*1*1*1~SE*4*0001~GE*1*1~IEA*1*000000001~",
			"ISA*00*"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			c, dir := outbox(t, tc.format, tc.csv)
			resp := call(t, c, "/out/file.txt", "k1", tc.body)
			if resp.Status != 201 {
				t.Fatalf("status %d %v", resp.Status, resp.Body)
			}
			got := read(t, filepath.Join(dir, "out", "file.txt"))
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("wrote %q, want %q", got, tc.want)
			}
			if b := resp.Body.(map[string]any); b["file"] != "out/file.txt" || b["bytes"] != int64(len(got)) {
				t.Errorf("answer %v", b)
			}
		})
	}
}

// An X12 document object is built with control numbers from the outbox's
// counter: two files never share an ISA13.
func TestOutboxX12Build(t *testing.T) {
	c, dir := outbox(t, "x12", nil)
	doc := map[string]any{"isa": map[string]any{"sender": "ACME", "receiver": "NORTHWIND"},
		"invoice": map[string]any{"big": map[string]any{"invoice_number": "INV-1"},
			"lines": []any{map[string]any{"line": "1", "qty": 2, "uom": "EA", "price": "4.50", "vendor_part": "W-1"}}}}
	call(t, c, "/a.edi", "k1", doc)
	call(t, c, "/b.edi", "k2", doc)
	// A parsed interchange, numbered by the partner, is renumbered too.
	parsed, err := x12.ParseBytes([]byte(read(t, filepath.Join(dir, "a.edi"))))
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, c, "/c.edi", "k3", parsed.JSON()); r.Status != 201 {
		t.Fatalf("parsed interchange: %d %v", r.Status, r.Body)
	}
	var controls []string
	for _, name := range []string{"a.edi", "b.edi", "c.edi"} {
		ic, err := x12.ParseBytes([]byte(read(t, filepath.Join(dir, name))))
		if err != nil {
			t.Fatal(err)
		}
		controls = append(controls, ic.Header.Element(13))
		inv := ic.JSON()["groups"].([]any)[0].(map[string]any)["transactions"].([]any)[0].(map[string]any)["invoice"].(map[string]any)
		if inv["total"] != "9.00" {
			t.Errorf("%s: total %v", name, inv["total"])
		}
	}
	if controls[0] == controls[1] || controls[0] == controls[2] || controls[1] == controls[2] {
		t.Errorf("interchanges share a control number: %v", controls)
	}
}

// A retry with the same idempotency key writes nothing, even when the
// outbox's reader has taken the file; another key replaces it.
func TestOutboxIdempotent(t *testing.T) {
	c, dir := outbox(t, "json", nil)
	path := filepath.Join(dir, "order.json")
	if r := call(t, c, "/order.json", "flow:m1:3", map[string]any{"v": 1}); r.Status != 201 {
		t.Fatalf("first: %d", r.Status)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	if r := call(t, c, "/order.json", "flow:m1:3", map[string]any{"v": 2}); r.Status != 200 || r.Body.(map[string]any)["existing"] != true {
		t.Fatalf("retry: %d %v", r.Status, r.Body)
	}
	if got := read(t, path); got != "{\"v\":1}\n" {
		t.Errorf("retry rewrote the file: %q", got)
	}
	os.Remove(path) // taken by the partner's pick-up
	if r := call(t, c, "/order.json", "flow:m1:3", map[string]any{"v": 2}); r.Status != 200 {
		t.Fatalf("retry after pick-up: %d", r.Status)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a retry wrote a file the partner had already taken")
	}
	if r := call(t, c, "/order.json", "flow:m2:3", map[string]any{"v": 3}); r.Status != 201 || read(t, path) != "{\"v\":3}\n" {
		t.Errorf("another key: %d %q", r.Status, read(t, path))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// Two connections on one outbox directory (two flows, or two replicas)
// share its X12 counter: no two interchanges get the same ISA13.
func TestOutboxX12ControlNumbersAcrossConnections(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	doc := map[string]any{"isa": map[string]any{"sender": "ACME", "receiver": "NORTHWIND"},
		"invoice": map[string]any{"big": map[string]any{"invoice_number": "INV-1"},
			"lines": []any{map[string]any{"line": "1", "qty": 2, "uom": "EA", "price": "4.50", "vendor_part": "W-1"}}}}
	var wg sync.WaitGroup
	for c := 0; c < 2; c++ {
		conn, err := connectors.Default.Build("file", connectors.Config{Name: "outbox", Values: map[string]any{"dir": dir, "format": "x12"}})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("/%d-%d.edi", c, i)
				resp, err := conn.Call(context.Background(), connectors.Request{Method: "POST", Path: name, Body: doc, IdempotencyKey: name})
				if err != nil || resp.Status != 201 {
					t.Errorf("%s: %v %v", name, resp, err)
				}
			}()
		}
	}
	wg.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "*.edi"))
	seen := map[string]string{}
	for _, f := range files {
		ic, err := x12.ParseBytes([]byte(read(t, f)))
		if err != nil {
			t.Fatal(err)
		}
		n := ic.Header.Element(13)
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share ISA13 %s", filepath.Base(other), filepath.Base(f), n)
		}
		seen[n] = f
	}
	if len(files) != 100 {
		t.Errorf("%d files, want 100", len(files))
	}
}

// The idempotency key is on disk before the file appears: when recording
// it fails, no file is there for the partner to take and a retry to write
// a second time.
func TestOutboxRecordsTheKeyBeforeTheFileAppears(t *testing.T) {
	c, dir := outbox(t, "json", nil)
	path := filepath.Join(dir, "order.json")
	sidecar := filepath.Join(dir, ".order.json.key")
	if err := os.MkdirAll(sidecar, 0o755); err != nil { // in the way of the sidecar
		t.Fatal(err)
	}
	_, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/order.json", Body: map[string]any{"v": 1}, IdempotencyKey: "flow:m1:3"})
	if err == nil {
		t.Error("a key that could not be recorded: no error")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("the file appeared before its key was recorded")
	}
	os.Remove(sidecar)
	if r := call(t, c, "/order.json", "flow:m1:3", map[string]any{"v": 1}); r.Status != 201 || read(t, path) != "{\"v\":1}\n" {
		t.Errorf("the retry: %d", r.Status)
	}
	if r := call(t, c, "/order.json", "flow:m1:3", map[string]any{"v": 1}); r.Status != 200 {
		t.Errorf("a second retry: %d", r.Status)
	}
}

// A name that no retry can write answers 400 or 409 rather than an error
// retried until it is dead-lettered; a long name that is legal is written.
func TestOutboxNamesThatCannotBeWritten(t *testing.T) {
	c, dir := outbox(t, "json", nil)
	long := strings.Repeat("x", 250) + ".json" // 255 bytes, the most a name may have
	if r := call(t, c, "/"+long, "k1", map[string]any{"v": 1}); r.Status != 201 {
		t.Errorf("a 255-byte name: %d %v", r.Status, r.Body)
	} else if read(t, filepath.Join(dir, long)) != "{\"v\":1}\n" {
		t.Error("a 255-byte name: not written")
	}
	if r := call(t, c, "/"+long, "k1", map[string]any{"v": 2}); r.Status != 200 {
		t.Errorf("a 255-byte name, retried: %d %v", r.Status, r.Body)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	call(t, c, "/file.json", "k2", 1)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/" + strings.Repeat("y", 256), 400},
		{"/" + strings.Repeat("y", 256) + "/a.json", 400},
		{"/sub", 409},
		{"/file.json/a.json", 409},
	} {
		for _, key := range []string{"k3", ""} {
			resp, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: tc.path, Body: 1, IdempotencyKey: key})
			if err != nil || resp.Status != tc.status {
				t.Errorf("%.20s (key %q): %v %v, want status %d", tc.path, key, resp, err, tc.status)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestOutboxRefuses(t *testing.T) {
	c, dir := outbox(t, "csv", nil)
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"POST", "/../escape.csv", []any{}, 400},
		{"POST", "/a/%2E%2E/%2E%2E/escape.csv", []any{}, 400},
		{"POST", "/.hidden", []any{}, 400},
		{"POST", "/dir/", []any{}, 400},
		{"GET", "/x.csv", nil, 405},
		{"POST", "/x.csv", "not a list", 422},
		{"POST", "/x.csv", []any{1, 2}, 422},
	} {
		resp, err := c.Call(context.Background(), connectors.Request{Method: tc.method, Path: tc.path, Body: tc.body, IdempotencyKey: "k"})
		if err != nil || resp.Status != tc.status {
			t.Errorf("%s %s: %v %v, want status %d", tc.method, tc.path, resp, err, tc.status)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.csv")); err == nil {
		t.Error("a path left the outbox")
	}
	// Without a path the file is named after the idempotency key.
	resp := call(t, c, "", "edi-out:0192:4", []any{map[string]any{"a": 1}})
	if name := resp.Body.(map[string]any)["file"].(string); !strings.HasPrefix(name, "edi-out-0192-4-") || !strings.HasSuffix(name, ".csv") {
		t.Errorf("name %q", name)
	}
	if _, err := connectors.Default.Build("file", connectors.Config{Name: "x", Values: map[string]any{"dir": "rel", "format": "xml", "csv": map[string]any{"delimiter": ",,"}}}); err == nil ||
		!strings.Contains(err.Error(), "absolute") || !strings.Contains(err.Error(), "format") || !strings.Contains(err.Error(), "delimiter") {
		t.Errorf("bad config: %v", err)
	}
}

func TestInboxHelpers(t *testing.T) {
	for name, want := range map[string]bool{"orders.csv": true, ".orders.csv": false, "orders.csv.part": false, "orders.csv~": false,
		"orders.csv.done": false, "orders.txt": false, "orders.csv.reason": false} {
		if got, _ := fileconn.Candidate(name, "*.csv", ".done"); got != want {
			t.Errorf("Candidate(%q) = %v", name, got)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.csv"), []byte("x"), 0o644)
	info, _ := os.Stat(filepath.Join(dir, "a.csv"))
	s := &fileconn.Stability{For: time.Second}
	now := time.Now()
	if s.Complete("a.csv", info, now) || s.Complete("a.csv", info, now.Add(500*time.Millisecond)) || !s.Complete("a.csv", info, now.Add(time.Second)) {
		t.Error("stability: complete only after two looks a second apart")
	}
	dest, err := fileconn.MoveTo(dir, "a.csv", filepath.Join(dir, "done"), now)
	if err != nil || dest != filepath.Join(dir, "done", "a.csv") {
		t.Fatal(dest, err)
	}
	os.WriteFile(filepath.Join(dir, "a.csv"), []byte("y"), 0o644)
	dest, err = fileconn.MoveTo(dir, "a.csv", filepath.Join(dir, "done"), now)
	if err != nil || !strings.HasSuffix(dest, "Z.csv") || read(t, dest) != "y" || read(t, filepath.Join(dir, "done", "a.csv")) != "x" {
		t.Errorf("name clash: %s %v", dest, err)
	}
}
