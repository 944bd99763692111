package flows_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime"
)

const exampleDir = "../examples/distribution"

// BenchmarkOrderFlow takes the ~16 KB sample webshop order through decode ->
// validate -> map -> encode of the example order-capture flow.
// Compare with BenchmarkOrderFlowBaseline, a plain encoding/json Unmarshal
// of the same bytes into any; the target is at most 1.2x its time.
func BenchmarkOrderFlow(b *testing.B) {
	ws := runtime.LoadWorkspace(exampleDir, nil)
	if len(ws.Diagnostics) > 0 {
		b.Fatal(ws.Diagnostics)
	}
	f := ws.Flows["order-capture"]
	data := sample(b)
	// The validate and map steps: the part of the flow that runs without
	// calls. Steps after them call the ERP and WMS.
	until := 2
	headers := map[string]string{"X-Shopify-Shop-Domain": "demo.myshopify.com"}
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body, err := jsonv.Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		res := f.Run(ctx, &flows.Message{ID: "m", ReceivedAt: time.Time{}, Body: body, Headers: headers}, nil, until, flows.Deps{})
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		if _, err := jsonv.Marshal(res.State.Body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOrderFlowBaseline is encoding/json.Unmarshal of the same order
// into any, the yardstick of BenchmarkOrderFlow.
func BenchmarkOrderFlowBaseline(b *testing.B) {
	data := sample(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func sample(b *testing.B) []byte {
	data, err := os.ReadFile(filepath.Join(exampleDir, "samples", "shopify-order.json"))
	if err != nil {
		b.Fatal(err)
	}
	return data
}
