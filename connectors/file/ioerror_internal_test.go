package fileconn

import (
	"errors"
	"io"
	"syscall"
	"testing"
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
