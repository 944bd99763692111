//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || illumos

package fileconn

import (
	"errors"
	"os"
	"syscall"
)

// lockFile holds an exclusive flock on path (created when missing) until
// the returned func is called. flock locks belong to an open file, so
// they keep out other processes and other opens of the same file in this
// process alike. The lock goes with the process, also when it crashes.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return func() { f.Close() }, nil // closing releases the lock
}
