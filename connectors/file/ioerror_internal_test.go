package fileconn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/conveyor-run/conveyor/connectors"
)

type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// A write the disk refuses is told apart from a body the format cannot
// hold: the first is retried, the second answers 422. A full disk used to
// answer 422 and dead-letter every file written meanwhile.
func TestDiskErrorsAreNotTheBodys(t *testing.T) {
	body := []any{map[string]any{"sku": "A", "qty": 1}}
	for _, format := range []string{JSON, JSONL, CSV} {
		err := Encode(&countWriter{w: fullDisk{}}, format, body, DefaultCSV, nil)
		if !errors.As(err, new(ioError)) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s on a full disk: %v; want an ioError", format, err)
		}
	}
	if err := Encode(&countWriter{w: io.Discard}, CSV, "not rows", DefaultCSV, nil); err == nil || errors.As(err, new(ioError)) {
		t.Errorf("a body CSV cannot hold: %v; want an encoding error", err)
	}
}

// A write cut short after its key was recorded and before the rename
// leaves the key and the temporary file: the retry delivers that file, and
// the next retry writes nothing.
func TestOutboxFinishesAWriteCutShortBeforeTheRename(t *testing.T) {
	dir := t.TempDir()
	c, err := New(connectors.Config{Name: "outbox", Values: map[string]any{"dir": dir}})
	if err != nil {
		t.Fatal(err)
	}
	key := "flow:m1:3"
	sum := sha256.Sum256([]byte(key))
	tmp := filepath.Join(dir, ".order.json.tmp-"+hex.EncodeToString(sum[:8]))
	if err := os.WriteFile(tmp, []byte("{\"v\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".order.json.key"), []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{201, 200} {
		resp, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: "/order.json", Body: map[string]any{"v": 2}, IdempotencyKey: key})
		if err != nil || resp.Status != want {
			t.Fatalf("retry %d: %v %v, want %d", i+1, resp, err, want)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "order.json")); err != nil || string(b) != "{\"v\":1}\n" {
			t.Errorf("retry %d: the file holds %q (%v), want the body of the first write", i+1, b, err)
		}
		if _, err := os.Stat(tmp); err == nil {
			t.Errorf("retry %d: the temporary file is still there", i+1)
		}
	}
}
