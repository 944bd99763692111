package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/runtime"
)

// BenchmarkLoadWorkspace loads and compiles 1,000 generated flow files
// (variants of the example order-capture flow, each with its own path).
// Targets: under 2 s per load and under 200 MB of heap; it reports
// heap-MB, the live heap once the workspace is loaded.
func BenchmarkLoadWorkspace(b *testing.B) {
	dir := generateWorkspace(b, 1000)
	b.ResetTimer()
	var heap uint64
	for i := 0; i < b.N; i++ {
		ws := runtime.LoadWorkspace(dir, nil)
		if len(ws.Diagnostics) > 0 || len(ws.Flows) != 1000 {
			b.Fatalf("%d flows, diagnostics: %v", len(ws.Flows), ws.Diagnostics)
		}
		b.StopTimer()
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapAlloc)
		goruntime.KeepAlive(ws)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
}

// generateWorkspace copies the example workspace with n variants of its
// order-capture flow.
func generateWorkspace(tb testing.TB, n int) string {
	src := "../examples/distribution"
	dir := tb.TempDir()
	for _, sub := range []string{"mappings", "lookups"} {
		if err := os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(src, sub))); err != nil {
			tb.Fatal(err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(src, "conveyor.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	flow, err := os.ReadFile(filepath.Join(src, "flows", "order-capture.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conveyor.yaml"), cfg, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "flows"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < n; i++ {
		body := strings.Replace(string(flow), "/hooks/shopify/orders", fmt.Sprintf("/hooks/shop-%d/orders", i), 1)
		body = strings.Replace(body, `"shopify:"`, fmt.Sprintf(`"shop-%d:"`, i), 1)
		if err := os.WriteFile(filepath.Join(dir, "flows", fmt.Sprintf("order-%04d.yaml", i)), []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
