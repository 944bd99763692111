package fileconn

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// tempSuffixes mark files still being written by common tools (partial
// downloads, editors, rsync/scp, our own temporary files).
var tempSuffixes = []string{".tmp", ".temp", ".part", ".partial", ".filepart", ".crdownload", ".download", ".swp", "~"}

// Candidate reports whether the inbox entry name may be taken: it matches
// pattern and is not a dotfile, a temporary file, a marker file (names
// ending in marker, when marker is set) or a .reason file. A malformed
// pattern is an error.
func Candidate(name, pattern, marker string) (bool, error) {
	if name == "" || name[0] == '.' || strings.HasSuffix(name, ".reason") {
		return false, nil
	}
	lower := strings.ToLower(name)
	for _, s := range tempSuffixes {
		if strings.HasSuffix(lower, s) {
			return false, nil
		}
	}
	if marker != "" && strings.HasSuffix(name, marker) {
		return false, nil
	}
	if pattern == "" {
		pattern = "*"
	}
	return filepath.Match(pattern, name)
}

// Stability decides when files are complete by their size and
// modification time: a file is complete once two looks at least For
// apart saw the same size and time. It is not safe for concurrent use.
type Stability struct {
	For   time.Duration
	looks map[string]look
}

type look struct {
	size  int64
	mod   time.Time
	since time.Time // when this size and time were first seen
}

// Complete records a look at name and reports whether it has been stable
// for s.For.
func (s *Stability) Complete(name string, info fs.FileInfo, now time.Time) bool {
	if s.looks == nil {
		s.looks = map[string]look{}
	}
	l, ok := s.looks[name]
	if !ok || l.size != info.Size() || !l.mod.Equal(info.ModTime()) {
		s.looks[name] = look{size: info.Size(), mod: info.ModTime(), since: now}
		return false
	}
	return now.Sub(l.since) >= s.For
}

// Forget drops what s knows of names for which keep is false (files that
// are gone), and of every name when keep is nil.
func (s *Stability) Forget(keep func(name string) bool) {
	for name := range s.looks {
		if keep == nil || !keep(name) {
			delete(s.looks, name)
		}
	}
}

// MarkerComplete reports whether the marker file <name><suffix> exists
// beside name in dir.
func MarkerComplete(dir, name, suffix string) bool {
	_, err := os.Stat(filepath.Join(dir, name+suffix))
	return err == nil
}

// MoveTo moves dir/name into destDir (created when missing) and returns
// the new path. A file of that name already there is kept: the moved file
// gets a timestamp before its extension (orders.20240116T093000.123Z.csv).
// A destDir on another file system gets a copy, with the file's
// modification time, and the original is removed; a file that cannot be
// moved stays where it is, and destDir does not keep a copy of it.
func MoveTo(dir, name, destDir string, now time.Time) (string, error) {
	if err := os.MkdirAll(destDir, 0o750); err != nil {
		return "", err
	}
	dest := filepath.Join(destDir, name)
	if _, err := os.Lstat(dest); err == nil {
		ext := filepath.Ext(name)
		dest = filepath.Join(destDir, strings.TrimSuffix(name, ext)+"."+now.UTC().Format("20060102T150405.000000000Z")+ext)
	}
	src := filepath.Join(dir, name)
	if err := moveRename(src, dest); err != nil {
		// Only another file system is copied across. Any other refusal
		// (an inbox this process may read but not change, a read-only
		// mount) refuses the removal too: a copy would stay in destDir
		// beside the original, and every retry would add one more.
		if !crossDevice(err) {
			return "", err
		}
		if err := copyFile(src, dest); err != nil {
			return "", err
		}
		if err := moveRemove(src); err != nil {
			// The original stays for the next try, which copies it
			// again: the copy must not stay beside it.
			os.Remove(dest)
			return "", err
		}
	}
	return dest, syncDir(destDir)
}

// crossDevice reports whether a rename failed because the target is on
// another file system (EXDEV; on Windows ERROR_NOT_SAME_DEVICE, 17).
func crossDevice(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno) && (errno == syscall.EXDEV || runtime.GOOS == "windows" && errno == 17)
}

// moveRename and moveRemove are os.Rename and os.Remove, replaced in
// tests to fail as a file system does.
var moveRename, moveRemove = os.Rename, os.Remove

// copyFile copies src to dest atomically, with src's modification time as
// a rename keeps it: the file trigger tells a file moved back from done/
// as it was (the same delivery) by it.
func copyFile(src, dest string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if err := WriteAtomic(dest, func(w io.Writer) error { _, err := io.Copy(w, in); return err }); err != nil {
		return err
	}
	if err := os.Chtimes(dest, time.Time{}, info.ModTime()); err != nil {
		os.Remove(dest)
		return err
	}
	return nil
}

// WriteAtomic writes path through write: into a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so that
// readers see the old file or the whole new one, also after a crash.
func WriteAtomic(path string, write func(io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, sideName(base, ".tmp-*", 10))
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeTemp(tmp, write); err != nil {
		return err
	}
	if err := rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return nil
}

// writeTemp writes a temporary file through write, syncs and closes it,
// and makes it readable as the file it will be renamed to.
func writeTemp(f *os.File, write func(io.Writer) error) error {
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(f.Name(), 0o644)
}

// rename renames a synced temporary file to path and syncs the directory,
// so that the rename survives a crash.
func rename(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// WriteReason writes <path>.reason beside a file moved to an error
// directory: the file's original name and every problem found, one a line.
func WriteReason(path, name string, problems []string) error {
	return WriteAtomic(path+".reason", func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%s: %s\n", name, strings.Join(problems, "\n"+name+": "))
		return err
	})
}
