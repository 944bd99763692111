package examples_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
)

// The aggregate step of erp-stock-batch hands its item to the aggregator
// with the batch settings; a dry run records it in Report.Aggregated.
func TestERPStockBatchAggregates(t *testing.T) {
	ws := load(t)
	f := ws.Flows["erp-stock-batch"]
	if f == nil {
		t.Fatal("flow erp-stock-batch did not load")
	}
	in := flowtest.Input{Body: map[string]any{"sku": "MUG-BLUE", "warehouse": "WH-NL-02", "available": 7, "as_of": "2026-11-27T15:10:00Z"}}
	rep := flowtest.Run(context.Background(), f, in, nil)
	if rep.Outcome != flows.Completed || len(rep.Aggregated) != 1 {
		t.Fatalf("outcome %s (%s), aggregated %+v", rep.Outcome, rep.Error, rep.Aggregated)
	}
	b := rep.Aggregated[0]
	item, _ := b.Item.(map[string]any)
	if b.Flow != "erp-stock-batch" || b.Key != "WH-NL-02" || b.Topic != "erp.stock.batch" || b.Size != 50 || b.Within != 2*time.Minute ||
		b.IdempotencyKey == "" || item["item_code"] != "200117" || item["available"] != 7 {
		t.Errorf("batch %+v", b)
	}
}

// bulkERP is an ERP answering POST /bulk-imports (the simulator has no
// such endpoint yet).
type bulkERP struct {
	mu      sync.Mutex
	imports []map[string]any
	keys    []string
}

func (b *bulkERP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/bulk-imports" {
		http.NotFound(w, r)
		return
	}
	var doc map[string]any
	if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.imports = append(b.imports, doc)
	b.keys = append(b.keys, r.Header.Get("Idempotency-Key"))
	n := len(b.imports)
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"import_id": "BI-%d", "status": "accepted", "accepted": %v, "rejected": 0}`, 3000+n, doc["line_count"])
}

func (b *bulkERP) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.imports)
}

// The two flows served for real: 53 stock levels of one warehouse and 3
// of another make one bulk import of 50 lines at once; the other lines
// wait in their batches for more or for the 2 minutes.
func TestERPBulkImportServed(t *testing.T) {
	erp := &bulkERP{}
	srv := httptest.NewServer(erp)
	defer srv.Close()
	env := map[string]string{"ERP_URL": srv.URL}
	dir, err := filepath.Abs(workspace)
	if err != nil {
		t.Fatal(err)
	}
	e := serve(t, dir, t.TempDir(), env)
	ctx := context.Background()
	skus := []string{"TSHIRT-RED-M", "TSHIRT-RED-L", "MUG-BLUE", "COFFEE-1KG", "SOCKS-3PK"}
	for i := range 56 {
		wh := "WH-NL-01"
		if i%19 == 18 {
			wh = "WH-NL-02" // 3 of them
		}
		ev := map[string]any{"sku": skus[i%len(skus)], "warehouse": wh, "available": i, "as_of": "2026-11-27T15:05:00Z"}
		if err := e.Publish(ctx, "stock.updated", ev, fmt.Sprintf("test:stock:%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for erp.count() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no bulk import reached the ERP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a second import would show now
	erp.mu.Lock()
	defer erp.mu.Unlock()
	if len(erp.imports) != 1 {
		t.Fatalf("%d bulk imports, want 1", len(erp.imports))
	}
	doc := erp.imports[0]
	lines, _ := doc["lines"].([]any)
	if doc["type"] != "stock_levels" || doc["warehouse"] != "WH-NL-01" || doc["line_count"] != float64(50) || len(lines) != 50 || erp.keys[0] == "" {
		t.Errorf("bulk import: type %v warehouse %v line_count %v, %d lines, key %q", doc["type"], doc["warehouse"], doc["line_count"], len(lines), erp.keys[0])
	}
	if l, _ := lines[49].(map[string]any); l["line"] != float64(50) || l["item_code"] == nil {
		t.Errorf("last line %v", lines[49])
	}
}
