package store

import (
	"os"
	"syscall"
)

// datasync makes what was written to f durable, without the times of the
// inode (fsync would journal its mtime at every commit), as bbolt syncs.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
