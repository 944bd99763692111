package fileconn_test

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fileconn "github.com/conveyor-run/conveyor/connectors/file"
	"github.com/conveyor-run/conveyor/internal/testenv"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// WriteCSV streams a CSV file of about mb megabytes (~100 bytes a row)
// to path and returns its row count.
func writeCSV(tb testing.TB, path string, mb int) int {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("order_id,sku,description,qty,price,warehouse,updated_at\n")
	n := 0
	for size := 0; size < mb<<20; n++ {
		k, _ := fmt.Fprintf(w, "SO-%08d,SKU-%05d,\"Widget, blue %d\",%d,%d.%02d,WH-%02d,2026-01-%02dT10:00:00Z\n",
			n, n%50000, n%977, n%40+1, n%300, n%100, n%12, n%28+1)
		size += k
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// vmHWM is the process's peak resident set (Linux), in bytes; resetPeak
// starts a new peak. Both return 0 / do nothing elsewhere.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// A 200 MB CSV (about 2.1 million rows) is read the way the file trigger
// reads it — a checking pass hashing every byte, then a pass encoding
// every record as a message body — in memory that does not grow with the
// file. CONVEYOR_CSV_MB sets the size; -short skips it.
func TestLargeCSVConstantMemory(t *testing.T) {
	testenv.SkipShort(t, "writes and reads a 200 MB file")
	mb := 200
	if v, err := strconv.Atoi(os.Getenv("CONVEYOR_CSV_MB")); err == nil && v > 0 {
		mb = v
	}
	path := filepath.Join(t.TempDir(), "stock.csv")
	start := time.Now()
	rows := writeCSV(t, path, mb)
	written := time.Since(start)

	goruntime.GC()
	var base goruntime.MemStats
	goruntime.ReadMemStats(&base)
	resetPeak()
	rssBase := vmHWM()
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // sample the live heap while reading
		defer close(sampled)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			if ms.HeapAlloc > peakHeap.Load() {
				peakHeap.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()

	start = time.Now()
	pass := func(h io.Writer, each func(any)) int {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var r io.Reader = f
		if h != nil {
			r = io.TeeReader(f, h)
		}
		rs, err := fileconn.NewRecords(r, "csv", fileconn.DefaultCSV)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			v, err := rs.Next()
			if err == io.EOF {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
			each(v)
			n++
		}
	}
	h := sha256.New()
	n1 := pass(h, func(any) {})
	var bytes int64
	n2 := pass(nil, func(v any) {
		b, err := jsonv.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		bytes += int64(len(b))
	})
	read := time.Since(start)
	close(stop)
	<-sampled
	rssPeak := vmHWM()
	if n1 != rows || n2 != rows {
		t.Fatalf("read %d and %d rows, wrote %d", n1, n2, rows)
	}
	heapGrowth := int64(peakHeap.Load()) - int64(base.HeapAlloc)
	t.Logf("%d MB, %d rows: written in %s, two passes in %s (%.0f rows/s); peak heap %.1f MiB (+%.1f MiB over the %.1f MiB before), "+
		"peak RSS %.1f MiB (%.1f MiB at the start)", mb, rows, written.Round(time.Millisecond), read.Round(time.Millisecond),
		float64(2*rows)/read.Seconds(), mib(peakHeap.Load()), float64(heapGrowth)/(1<<20), mib(base.HeapAlloc), mib(uint64(rssPeak)), mib(uint64(rssBase)))
	if heapGrowth > 32<<20 {
		t.Errorf("the heap grew by %.1f MiB reading a %d MB file", float64(heapGrowth)/(1<<20), mb)
	}
	if rssPeak > 0 && rssPeak-rssBase > 96<<20 {
		t.Errorf("peak RSS grew by %.1f MiB reading a %d MB file", float64(rssPeak-rssBase)/(1<<20), mb)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
