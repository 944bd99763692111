package runtime

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// The hand-written trace encoder writes what encoding/json writes for the
// same entries (the API and the CLI read traces as JSON).
func TestAppendTraceMatchesEncodingJSON(t *testing.T) {
	trace := []flows.TraceEntry{
		{Step: "steps[0]", Kind: "validate", Outcome: "ok", Duration: 0.012},
		{Step: "steps[1]", Name: "map \"order\"", Kind: "map", Outcome: "ok", Duration: 1.5,
			Output: map[string]any{"order_id": "SO-1", "lines": []any{map[string]any{"qty": 2, "sku": "Ä<1>"}}}},
		{Step: "steps[2]", Kind: "call", Outcome: "failed", Duration: 30, Error: "erp POST /orders: 503"},
	}
	for _, tr := range [][]flows.TraceEntry{trace, nil, {}} {
		want, _ := json.Marshal(tr)
		got := appendTrace(nil, tr)
		var a, b any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("appendTrace wrote invalid JSON %s: %v", got, err)
		}
		_ = json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("appendTrace:\n got %s\nwant %s", got, want)
		}
	}
}

// A checkpoint reads back as it was written: body, vars and response.
func TestStateRoundTrip(t *testing.T) {
	body, _ := jsonv.Decode([]byte(`{"id": 12345678901234567890, "total": 10.10, "name": "Zoë"}`))
	st := flows.State{Next: 3, Body: body, Vars: map[string]any{"erp": map[string]any{"status": 201}},
		Response: &flows.Response{Status: 202, Headers: map[string]string{"X-A": "1"}, Body: "ok"}}
	raw := encodeState(&st)
	got, messageBody, err := decodeState(raw)
	if err != nil || messageBody {
		t.Fatalf("decodeState(%s) = %v, %v", raw, messageBody, err)
	}
	if got.Next != 3 || !reflect.DeepEqual(got.Body, body) || !reflect.DeepEqual(got.Vars, st.Vars) ||
		got.Response == nil || got.Response.Status != 202 || got.Response.Body != "ok" || got.Response.Headers["X-A"] != "1" {
		t.Errorf("round trip of %s = %+v", raw, got)
	}
	// An unchanged body is not stored twice: the message's applies.
	st.BodyIsMessage = true
	raw = encodeState(&st)
	if got, messageBody, err := decodeState(raw); err != nil || !messageBody || got.Body != nil || got.Next != 3 {
		t.Errorf("state with the message's body: %s -> %+v, %v, %v", raw, got, messageBody, err)
	}
}
