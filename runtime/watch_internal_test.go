package runtime

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// scanFiles reads a file again only when it may have changed: size or
// modification time differ from when it was hashed, or it was hashed so
// soon after being written that a second write could hide in the same
// timestamp.
func TestScanFilesRehashesOnlyWhatMayHaveChanged(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lookups"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "lookups", "old.csv")
	fresh := filepath.Join(dir, "lookups", "fresh.csv")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("sku,ean\nA,1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	e := &Engine{opts: Options{Workspace: dir}}
	first := e.scanFiles()
	if first[old] == "" || first[old] != first[fresh] {
		t.Fatalf("first scan: %v", first)
	}

	// Same size and time, and hashed long after the write: trusted. A
	// marked stamp proves the file was not read again.
	st := e.stamps[old]
	st.hash = "kept"
	e.stamps[old] = st
	// fresh was hashed within the racy window of its write: rewritten
	// with the same size, keeping its time, it is still read again.
	info, _ := os.Stat(fresh)
	if err := os.WriteFile(fresh, []byte("sku,ean\nB,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fresh, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	second := e.scanFiles()
	if second[old] != "kept" {
		t.Errorf("the unchanged old file was hashed again")
	}
	if second[fresh] == first[fresh] {
		t.Errorf("a same-size rewrite within the racy window went unnoticed")
	}

	// Any change of time or size is read.
	if err := os.WriteFile(old, []byte("sku,ean\nC,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if third := e.scanFiles(); third[old] == "kept" || third[old] == first[old] {
		t.Errorf("a rewritten file kept its hash: %s", third[old])
	}
	if err := os.Remove(fresh); err != nil {
		t.Fatal(err)
	}
	if fourth := e.scanFiles(); fourth[fresh] != "" || len(e.stamps) != 1 {
		t.Errorf("a removed file is still listed: %v, %d stamps", fourth, len(e.stamps))
	}
}
