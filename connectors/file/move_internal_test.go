package fileconn

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// failMove makes MoveTo's rename fail with errno, and its removal of the
// original too when removeFails, as the file system does: EXDEV for a
// done/ on another file system, EACCES for an inbox the process may read
// but not change (a partner's upload directory), where removing fails as
// renaming does.
func failMove(t *testing.T, errno syscall.Errno, removeFails bool) {
	t.Helper()
	rn, rm := moveRename, moveRemove
	t.Cleanup(func() { moveRename, moveRemove = rn, rm })
	moveRename, moveRemove = func(old, new string) error { return &os.LinkError{Op: "rename", Old: old, New: new, Err: errno} }, os.Remove
	if removeFails {
		moveRemove = func(name string) error { return &os.PathError{Op: "remove", Path: name, Err: errno} }
	}
}

// A rename refused for any reason but another file system is an error,
// and leaves nothing in done/: the file stays in the inbox for the next
// try. MoveTo copied the file whenever rename failed, so an inbox it may
// not change got a new copy in done/ at every try, every few seconds,
// until the disk was full.
func TestMoveToRefusedLeavesNoCopy(t *testing.T) {
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	if err := os.WriteFile(filepath.Join(dir, "stock.csv"), []byte("sku\nA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failMove(t, syscall.EACCES, true)
	for try := 1; try <= 3; try++ {
		if _, err := MoveTo(dir, "stock.csv", done, time.Now()); !errors.Is(err, syscall.EACCES) {
			t.Fatalf("try %d: %v; want permission denied", try, err)
		}
	}
	if entries, _ := os.ReadDir(done); len(entries) != 0 {
		t.Errorf("done/ holds %d files after 3 refused moves; want none", len(entries))
	}
	if _, err := os.Stat(filepath.Join(dir, "stock.csv")); err != nil {
		t.Errorf("the file left the inbox: %v", err)
	}
}

// done/ on another file system: the file is copied, with its
// modification time (a file moved back from done/ as it was is the same
// delivery, see the runtime's file trigger), and the original removed.
// When the original cannot be removed the copy goes again, so retries do
// not pile copies up.
func TestMoveToAnotherFileSystem(t *testing.T) {
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	src := filepath.Join(dir, "stock.csv")
	if err := os.WriteFile(src, []byte("sku\nA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := time.Date(2025, 11, 2, 1, 30, 0, 0, time.UTC)
	if err := os.Chtimes(src, mod, mod); err != nil {
		t.Fatal(err)
	}

	failMove(t, syscall.EXDEV, true)
	for try := 1; try <= 2; try++ {
		if _, err := MoveTo(dir, "stock.csv", done, time.Now()); err == nil {
			t.Fatalf("try %d: moved though the original could not be removed", try)
		}
	}
	if entries, _ := os.ReadDir(done); len(entries) != 0 {
		t.Errorf("done/ holds %d files after 2 moves whose original stayed; want none", len(entries))
	}

	failMove(t, syscall.EXDEV, false)
	dest, err := MoveTo(dir, "stock.csv", done, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dest)
	if err != nil || !info.ModTime().Equal(mod) {
		t.Errorf("the copy in done/: %v, %v; want modified at %v", info, err, mod)
	}
	if b, _ := os.ReadFile(dest); string(b) != "sku\nA\n" {
		t.Errorf("the copy holds %q", b)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the original is still in the inbox: %v", err)
	}
}
