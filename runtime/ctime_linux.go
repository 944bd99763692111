package runtime

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime is info's status change time (ctime): a rename sets it, so
// a file moved back into an inbox differs from the one taken before.
func changeTime(info fs.FileInfo) time.Time {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return time.Time{}
}
