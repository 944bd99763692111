package simulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/conveyor-run/conveyor/connectors"
	httpconn "github.com/conveyor-run/conveyor/connectors/http"
)

// start serves every system on free loopback ports for one test.
func start(t *testing.T) *Systems {
	t.Helper()
	ss, err := Start(t.Context(), EphemeralAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	return ss
}

// conn is an http connector to one system.
func conn(t *testing.T, s *System) *httpconn.Client {
	t.Helper()
	c, err := httpconn.NewClient(connectors.Config{Name: s.Name(), Values: map[string]any{"base_url": s.URL()}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t *testing.T, c *httpconn.Client, method, path string, body any, key string) *connectors.Response {
	t.Helper()
	resp, err := c.Call(context.Background(), connectors.Request{Method: method, Path: path, Body: body, IdempotencyKey: key})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func field(resp *connectors.Response, key string) any {
	m, _ := resp.Body.(map[string]any)
	return m[key]
}

func salesOrder(ref string, netTotal any) map[string]any {
	return map[string]any{
		"order_ref": ref,
		"customer":  map[string]any{"email": "zoe.vdberg@example.com", "name": "Zoë van den Berg"},
		"currency":  "EUR",
		"lines":     []any{map[string]any{"item": "100234", "qty": 2, "price": "12.00", "discount": "1.00"}},
		"net_total": netTotal,
	}
}

func TestIdempotencyReplay(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)

	first := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-820982911946154777", "23.00"), "order-capture:m1:5")
	if first.Status != 201 || field(first, "sales_order") != "SO-1001" || field(first, "status") != "open" {
		t.Fatalf("first: %+v", first)
	}
	again := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-820982911946154777", "23.00"), "order-capture:m1:5")
	if again.Status != 201 || field(again, "sales_order") != "SO-1001" || again.Headers["Idempotent-Replayed"] != "true" {
		t.Errorf("replay: %+v", again)
	}
	if again.Headers["Location"] != "/sales-orders/SO-1001" {
		t.Errorf("replay lost the stored headers: %v", again.Headers)
	}
	if ss.ERP.Orders() != 1 || ss.Orders() != 1 || ss.ERP.Replays() != 1 || ss.Replays() != 1 {
		t.Errorf("orders %d, replays %d", ss.ERP.Orders(), ss.ERP.Replays())
	}
	if n := ss.ERP.Count("POST", "/sales-orders"); n != 1 {
		t.Errorf("handled %d", n)
	}
	recs := ss.ERP.Received()
	if len(recs) != 2 || recs[0].Replay || !recs[1].Replay || recs[1].Status != 201 {
		t.Errorf("records %+v", recs)
	}
	if recs[0].Header("idempotency-key") != "order-capture:m1:5" || recs[0].Header("User-Agent") != "conveyor" {
		t.Errorf("headers %v", recs[0].Headers)
	}
	if b, _ := recs[0].Body.(map[string]any); b["order_ref"] != "SHP-820982911946154777" {
		t.Errorf("recorded body %v", recs[0].Body)
	}

	// Another key is another order; no key at all is never deduplicated.
	if r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-2", "5"), "order-capture:m2:5"); field(r, "sales_order") != "SO-1002" {
		t.Errorf("second key: %+v", r)
	}
	call(t, erp, "POST", "/sales-orders", salesOrder("SHP-3", "5"), "")
	call(t, erp, "POST", "/sales-orders", salesOrder("SHP-3", "5"), "")
	if ss.ERP.Orders() != 4 {
		t.Errorf("orders %d, want 4", ss.ERP.Orders())
	}

	// A key reused for another request is refused, and not stored.
	r := call(t, erp, "PUT", "/sales-orders/SO-1001/shipments", map[string]any{"shipment_id": "S1"}, "order-capture:m1:5")
	if r.Status != 422 || !strings.Contains(fmt.Sprint(field(r, "error")), "was used for POST /sales-orders") {
		t.Errorf("reused key: %+v", r)
	}

	// Rejections are replayed too: the same request gets the same answer.
	bad := salesOrder("SHP-4", "5")
	delete(bad, "customer")
	if r := call(t, erp, "POST", "/sales-orders", bad, "k-bad"); r.Status != 422 {
		t.Fatalf("bad: %+v", r)
	}
	if r := call(t, erp, "POST", "/sales-orders", bad, "k-bad"); r.Status != 422 || r.Headers["Idempotent-Replayed"] != "true" {
		t.Errorf("bad replay: %+v", r)
	}

	// GETs ignore the key: reads are always fresh.
	call(t, erp, "GET", "/sales-orders/SO-1001", nil, "k-get")
	ss.ERP.SetOrderStatus("SO-1001", "released")
	if r := call(t, erp, "GET", "/sales-orders/SO-1001", nil, "k-get"); field(r, "status") != "released" {
		t.Errorf("GET replayed: %+v", r)
	}
}

// A key reused with another body is refused with 422, as real APIs do
// (IETF draft-ietf-httpapi-idempotency-key-header): the stored answer
// belongs to another request, and replaying it would hide a caller that
// sends two different orders under one key.
func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)
	if r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-1", "23.00"), "k"); r.Status != 201 {
		t.Fatalf("first: %+v", r)
	}
	r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-2", "99.00"), "k")
	if r.Status != 422 || r.Headers["Idempotent-Replayed"] != "" || !strings.Contains(fmt.Sprint(field(r, "error")), "different body") {
		t.Errorf("another body under the same key: %+v", r)
	}
	// The same body again is still a replay: key order and spacing do not matter.
	again := map[string]any{"net_total": "23.00", "currency": "EUR", "order_ref": "SHP-1",
		"customer": map[string]any{"name": "Zoë van den Berg", "email": "zoe.vdberg@example.com"},
		"lines":    []any{map[string]any{"qty": 2, "item": "100234", "discount": "1.00", "price": "12.00"}}}
	if r := call(t, erp, "POST", "/sales-orders", again, "k"); r.Status != 201 || r.Headers["Idempotent-Replayed"] != "true" {
		t.Errorf("same body: %+v", r)
	}
	if ss.ERP.Orders() != 1 || ss.ERP.Replays() != 1 {
		t.Errorf("orders %d, replays %d", ss.ERP.Orders(), ss.ERP.Replays())
	}
}

func TestConcurrentDuplicates(t *testing.T) {
	ss := start(t)
	wms := conn(t, ss.WMS)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			body := map[string]any{"reference": fmt.Sprintf("SO-%d", i%10), "lines": []any{map[string]any{"item": "100234", "qty": 1}}}
			r, err := wms.Call(context.Background(), connectors.Request{Method: "POST", Path: "/allocations", Body: body, IdempotencyKey: fmt.Sprintf("k%d", i%10)})
			if err != nil || r.Status != 201 {
				t.Errorf("%v %+v", err, r)
			}
		})
	}
	wg.Wait()
	if ss.WMS.Orders() != 10 || ss.WMS.Replays() != 50 || len(ss.WMS.Received()) != 60 {
		t.Errorf("orders %d replays %d received %d", ss.WMS.Orders(), ss.WMS.Replays(), len(ss.WMS.Received()))
	}
	if r := call(t, wms, "GET", "/stock/100234", nil, ""); field(r, "allocated") != 10 || field(r, "available") != 130 {
		t.Errorf("stock %+v", r.Body)
	}
}

func TestHoldLimit(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)
	r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-BIG", "10000.01"), "")
	if field(r, "status") != "held" || !strings.Contains(fmt.Sprint(field(r, "hold_reason")), "10000.01") {
		t.Errorf("above the limit: %+v", r.Body)
	}
	if r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-EDGE", 10000), ""); field(r, "status") != "open" {
		t.Errorf("at the limit: %+v", r.Body)
	}
	ss.ERP.SetHoldLimit(20)
	// Without net_total the ERP sums the lines: 2 x 12.00 - 1.00 = 23.00.
	o := salesOrder("SHP-LINES", nil)
	delete(o, "net_total")
	if r := call(t, erp, "POST", "/sales-orders", o, ""); field(r, "status") != "held" {
		t.Errorf("computed net: %+v", r.Body)
	}
	so, ok := ss.ERP.SalesOrder("SHP-LINES")
	if !ok || so["status"] != "held" || so["totals"].(map[string]any)["gross"] != "27.83" {
		t.Errorf("stored order %v", so)
	}
}

func TestDownWindow(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)
	ss.ERP.Down(1500 * time.Millisecond)
	r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-1", "1"), "k1")
	if r.Status != 503 || r.Headers["Retry-After"] != "2" {
		t.Fatalf("down: %+v", r)
	}
	// Poll with a deadline until it is back.
	deadline := time.Now().Add(5 * time.Second)
	for r.Status == 503 {
		if time.Now().After(deadline) {
			t.Fatal("still down")
		}
		time.Sleep(100 * time.Millisecond)
		r = call(t, erp, "POST", "/sales-orders", salesOrder("SHP-1", "1"), "k1")
	}
	if r.Status != 201 || r.Headers["Idempotent-Replayed"] != "" {
		t.Errorf("after the window: %+v", r)
	}
	if ss.ERP.Orders() != 1 || ss.ERP.Replays() != 0 || ss.ERP.Count("", "") != 1 {
		t.Errorf("orders %d replays %d handled %d", ss.ERP.Orders(), ss.ERP.Replays(), ss.ERP.Count("", ""))
	}
	recs := ss.ERP.Received()
	if len(recs) < 2 || !recs[0].Injected || recs[0].Status != 503 {
		t.Errorf("records %+v", recs)
	}

	ss.ERP.FailNext(2, 502)
	for i, want := range []int{502, 502, 201} {
		if r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-2", "1"), "k2"); r.Status != want {
			t.Errorf("attempt %d: %d, want %d", i, r.Status, want)
		}
	}
	ss.ERP.FailNext(1, 429)
	if r := call(t, erp, "GET", "/sales-orders/SO-1001", nil, ""); r.Status != 429 || r.Headers["Retry-After"] != "1" {
		t.Errorf("429: %+v", r)
	}
	ss.ERP.Down(time.Hour)
	ss.ERP.Up()
	if r := call(t, erp, "GET", "/sales-orders/SO-1001", nil, ""); r.Status != 200 {
		t.Errorf("up: %+v", r)
	}
}

func TestLatencyTimeoutThenReplay(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)
	ss.ERP.SetLatency(400 * time.Millisecond)

	start := time.Now()
	r := call(t, erp, "GET", "/sales-orders/SO-1", nil, "")
	if d := time.Since(start); d < 400*time.Millisecond || r.Status != 404 {
		t.Errorf("latency: %s, %+v", d, r)
	}

	// The caller gives up, but the ERP did the work: the retry with the
	// same key gets the first answer and no second order exists.
	ss.ERP.SetLatency(time.Minute)
	_, err := erp.Call(context.Background(), connectors.Request{Method: "POST", Path: "/sales-orders", Body: salesOrder("SHP-1", "1"), IdempotencyKey: "k", Timeout: 300 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ss.ERP.Orders() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ERP never saw the order")
		}
	}
	ss.ERP.SetLatency(0)
	r = call(t, erp, "POST", "/sales-orders", salesOrder("SHP-1", "1"), "k")
	if r.Status != 201 || field(r, "sales_order") != "SO-1001" || r.Headers["Idempotent-Replayed"] != "true" {
		t.Errorf("retry: %+v", r)
	}
	if ss.ERP.Orders() != 1 || ss.ERP.Replays() != 1 {
		t.Errorf("orders %d replays %d", ss.ERP.Orders(), ss.ERP.Replays())
	}
}

func TestUnprocessable(t *testing.T) {
	ss := start(t)
	erp := conn(t, ss.ERP)
	o := salesOrder("SHP-1", "1")
	o["customer"] = map[string]any{"name": "no mail"}
	r := call(t, erp, "POST", "/sales-orders", o, "")
	if r.Status != 422 || field(r, "error") != "customer.email is required" {
		t.Errorf("no e-mail: %+v", r)
	}
	o = salesOrder("SHP-1", "1")
	o["lines"] = []any{}
	if r := call(t, erp, "POST", "/sales-orders", o, ""); r.Status != 422 {
		t.Errorf("no lines: %+v", r)
	}
	if ss.ERP.Orders() != 0 {
		t.Errorf("orders %d", ss.ERP.Orders())
	}

	ss.ERP.SetCheck(func(r Record) string {
		if b, _ := r.Body.(map[string]any); b["currency"] != "EUR" {
			return "only EUR"
		}
		return ""
	})
	o = salesOrder("SHP-2", "1")
	o["currency"] = "USD"
	if r := call(t, erp, "POST", "/sales-orders", o, ""); r.Status != 422 || field(r, "error") != "only EUR" {
		t.Errorf("custom check: %+v", r)
	}
	ss.ERP.SetCheck(nil)
	o["customer"] = nil
	if r := call(t, erp, "POST", "/sales-orders", o, ""); r.Status != 201 {
		t.Errorf("checks off: %+v", r)
	}

	notify := conn(t, ss.Notify)
	if r := call(t, notify, "POST", "/emails", map[string]any{"to": "not-an-address"}, ""); r.Status != 422 {
		t.Errorf("notify: %+v", r)
	}
	if r := call(t, notify, "POST", "/emails", map[string]any{"to": "a@b.nl"}, ""); r.Status != 202 || field(r, "message_id") != "MSG-9001" {
		t.Errorf("notify: %+v", r)
	}
	ch := conn(t, ss.Channels)
	if r := call(t, ch, "PUT", "/channels/bol/stock", map[string]any{"product_id": "871", "quantity": 1.5}, ""); r.Status != 422 {
		t.Errorf("channels: %+v", r)
	}
	wms := conn(t, ss.WMS)
	if r := call(t, wms, "POST", "/allocations", map[string]any{"reference": "SO-1", "lines": []any{map[string]any{"item": "1", "qty": 0}}}, ""); r.Status != 422 {
		t.Errorf("wms: %+v", r)
	}
}

func TestBadInputNeverPanics(t *testing.T) {
	ss := New()
	for _, s := range ss.All() {
		for _, tc := range []struct {
			method, path, body string
			want               int
		}{
			{"POST", "/sales-orders", `{"a":`, 400},
			{"POST", "/sales-orders", `[1,2]`, 0},
			{"POST", "/emails", `"x"`, 0},
			{"PUT", "/channels/x/stock", `null`, 0},
			{"POST", "/allocations", `{"lines": "nope", "reference": 1}`, 0},
			{"POST", "/shipments", `{"reference": {"a": 1}}`, 0},
			{"PUT", "/sales-orders/SO-1001/shipments", `{"shipment_id": 7}`, 0},
			{"GET", "/", ``, 404},
			{"GET", "//x//", ``, 404},
			{"DELETE", "/sales-orders", ``, 0},
			{"POST", "/x", strings.Repeat(" ", MaxBodyBytes+1), 413},
		} {
			w := httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			s.ServeHTTP(w, req)
			if w.Code >= 500 || w.Code < 400 && tc.want != 0 {
				t.Errorf("%s %s %s %.20q: %d %s", s.Name(), tc.method, tc.path, tc.body, w.Code, w.Body)
			}
			if tc.want != 0 && w.Code != tc.want {
				t.Errorf("%s %s %s: %d, want %d", s.Name(), tc.method, tc.path, w.Code, tc.want)
			}
			if w.Code >= 400 && !strings.Contains(w.Body.String(), `"error"`) {
				t.Errorf("%s %s %s: %d without a JSON error: %s", s.Name(), tc.method, tc.path, w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		}
	}
	if r := ss.ERP.Received(); len(r) != 11 || r[0].Status != 400 || r[10].Status != 413 {
		t.Errorf("bad requests are recorded too: %+v", r)
	}
}

func TestEndpoints(t *testing.T) {
	ss := start(t)
	erp, wms, ch, notify, carrier := conn(t, ss.ERP), conn(t, ss.WMS), conn(t, ss.Channels), conn(t, ss.Notify), conn(t, ss.Carrier)

	call(t, erp, "POST", "/sales-orders", salesOrder("SHP-820982911946154777", "23.00"), "")
	r := call(t, erp, "GET", "/sales-orders/SO-1001?fields=status%2Clines%2Cshipments%2Ctotals", nil, "")
	if r.Status != 200 || field(r, "order_ref") != "SHP-820982911946154777" || field(r, "created_at") == nil {
		t.Errorf("get: %+v", r)
	}
	if tot, _ := field(r, "totals").(map[string]any); tot["gross"] != "27.83" || tot["currency"] != "EUR" {
		t.Errorf("totals %v", field(r, "totals"))
	}
	if r := call(t, erp, "GET", "/sales-orders/SO-9999", nil, ""); r.Status != 404 || field(r, "error") != "sales order not found" {
		t.Errorf("unknown: %+v", r)
	}
	ship := map[string]any{"shipment_id": "WMS-SHP-44120", "carrier": "PNL", "carrier_name": "PostNL", "tracking_url": "https://postnl.nl/tracktrace/?b=3SCNVY0012345"}
	r = call(t, erp, "PUT", "/sales-orders/SHP-820982911946154777/shipments", ship, "")
	if r.Status != 200 || field(r, "sales_order") != "SO-1001" || field(r, "status") != "shipped" {
		t.Errorf("ship: %+v", r)
	}
	call(t, erp, "PUT", "/sales-orders/SO-1001/shipments", ship, "") // same shipment again: updated, not added
	r = call(t, erp, "GET", "/sales-orders/SHP-820982911946154777", nil, "")
	if sh, _ := field(r, "shipments").([]any); field(r, "status") != "shipped" || len(sh) != 1 || sh[0].(map[string]any)["carrier"] != "PostNL" {
		t.Errorf("after shipping: %+v", r.Body)
	}
	if r := call(t, erp, "PUT", "/sales-orders/SHP-1002/shipments", ship, ""); r.Status != 404 {
		t.Errorf("unknown order shipped: %+v", r)
	}

	r = call(t, wms, "POST", "/allocations", map[string]any{"reference": "SO-1001", "lines": []any{map[string]any{"item": "100234", "qty": 200}}}, "")
	if r.Status != 201 || field(r, "allocation_id") != "AL-5501" || field(r, "status") != "backordered" {
		t.Errorf("allocation: %+v", r)
	}
	if r := call(t, wms, "GET", "/allocations/AL-5501", nil, ""); r.Status != 200 {
		t.Errorf("get allocation: %+v", r)
	}
	ss.WMS.SetStock("999", 3)
	if r := call(t, wms, "GET", "/stock/999", nil, ""); field(r, "on_hand") != 3 {
		t.Errorf("stock: %+v", r)
	}
	if r := call(t, wms, "GET", "/stock/nope", nil, ""); r.Status != 404 {
		t.Errorf("unknown stock: %+v", r)
	}

	for _, m := range []string{"PUT", "POST"} {
		r = call(t, ch, m, "/channels/bol/stock", map[string]any{"product_id": "8719327000012", "quantity": 126}, "")
		if r.Status != 200 || field(r, "accepted") != true {
			t.Errorf("%s stock: %+v", m, r)
		}
	}
	if r := call(t, ch, "GET", "/channels/bol/stock", nil, ""); field(r, "stock").(map[string]any)["8719327000012"] != 126 {
		t.Errorf("channel stock %+v", r.Body)
	}
	if ss.Channels.Orders() != 2 || ss.Channels.Count("", "/channels/*/stock") != 3 || ss.Channels.Count("PUT", "/channels/*/stock") != 1 {
		t.Errorf("channels: %d orders", ss.Channels.Orders())
	}

	r = call(t, notify, "POST", "/emails", map[string]any{"to": "zoe@example.com", "template": "shipment-confirmation"}, "")
	if r.Status != 202 {
		t.Errorf("email: %+v", r)
	}
	if r := call(t, notify, "GET", "/emails/"+field(r, "message_id").(string), nil, ""); field(r, "status") != "sent" {
		t.Errorf("email status: %+v", r)
	}

	r = call(t, carrier, "POST", "/shipments", map[string]any{"reference": "SO-1001"}, "")
	tn, _ := field(r, "tracking_number").(string)
	if r.Status != 201 || tn == "" || !strings.HasPrefix(fmt.Sprint(field(r, "label_url")), ss.Carrier.URL()) {
		t.Errorf("carrier: %+v", r)
	}
	if r := call(t, carrier, "GET", "/tracking/"+tn, nil, ""); field(r, "status") != "in_transit" {
		t.Errorf("tracking: %+v", r)
	}
	if r := call(t, erp, "DELETE", "/sales-orders/SO-1001", nil, ""); r.Status != 405 || r.Headers["Allow"] != "GET" {
		t.Errorf("405: %+v", r)
	}

	ss.Reset()
	if ss.Orders() != 0 || len(ss.ERP.Received()) != 0 {
		t.Error("reset")
	}
	if r := call(t, erp, "POST", "/sales-orders", salesOrder("SHP-9", "1"), ""); field(r, "sales_order") != "SO-1001" {
		t.Errorf("after reset: %+v", r)
	}
}

// TestFlowPaths calls every path the example flows call, on the system
// their connection points at, and fails when the simulator has no route.
func TestFlowPaths(t *testing.T) {
	files, err := filepath.Glob("../distribution/flows/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example flows: %v", err)
	}
	ss := start(t)
	systems := map[string]*System{}
	for _, s := range ss.All() {
		systems[s.Name()] = s
	}
	clients := map[string]*httpconn.Client{}
	for name, s := range systems {
		clients[name] = conn(t, s)
	}
	// Something to find: the sample order, which the shipment sample refers to.
	call(t, clients["erp"], "POST", "/sales-orders", salesOrder("SHP-820982911946154777", "1"), "")

	template := regexp.MustCompile(`\{\{[^}]*\}\}`)
	httpConnections := map[string]bool{}
	{
		data, err := os.ReadFile(filepath.Join("..", "distribution", "conveyor.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Connections map[string]map[string]any `yaml:"connections"`
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		for name, c := range cfg.Connections {
			_, httpConn := c["http"]
			httpConnections[name] = httpConn
		}
	}
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Logf("%s: %v (skipped)", f, err)
			continue
		}
		for _, c := range calls(doc) {
			seen++
			conn, _ := c["connection"].(string)
			method, _ := c["method"].(string)
			p, _ := c["path"].(string)
			if method == "" {
				method = "POST"
			}
			if !httpConnections[conn] {
				continue // files, databases and streams are not simulated systems
			}
			cl, ok := clients[conn]
			if !ok {
				t.Errorf("%s: connection %q has no simulated system", f, conn)
				continue
			}
			// Fill templates with ids the simulator knows.
			path := template.ReplaceAllStringFunc(p, func(m string) string {
				switch {
				case strings.Contains(m, "order_ref"):
					return "SHP-820982911946154777"
				case strings.Contains(m, "order"):
					return "SO-1001"
				default:
					return "shopify"
				}
			})
			var body any
			if method != "GET" {
				body = map[string]any{}
			}
			r := call(t, cl, method, path, body, "")
			msg, _ := field(r, "error").(string)
			if r.Status == 405 || strings.HasPrefix(msg, "no route") {
				t.Errorf("%s: %s %s on %s: %d %v", filepath.Base(f), method, p, conn, r.Status, r.Body)
			} else {
				t.Logf("%s: %s %s on %s: %d", filepath.Base(f), method, path, conn, r.Status)
			}
		}
	}
	if seen == 0 {
		t.Error("no call steps found in the example flows")
	}
}

// calls finds every call step in a decoded flow document.
func calls(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		for k, y := range x {
			if c, ok := y.(map[string]any); ok && k == "call" {
				out = append(out, c)
			}
			out = append(out, calls(y)...)
		}
	case []any:
		for _, y := range x {
			out = append(out, calls(y)...)
		}
	}
	return out
}

func TestStartAndClose(t *testing.T) {
	ss := start(t)
	for name, u := range ss.URLs() {
		if !strings.HasPrefix(u, "http://127.0.0.1:") || strings.HasSuffix(u, ":0") {
			t.Errorf("%s: %q", name, u)
		}
	}
	if env := ss.Env(); env["ERP_URL"] != ss.ERP.URL() || env["NOTIFY_URL"] != ss.Notify.URL() || len(env) != 6 {
		t.Errorf("env %v", env)
	}

	// An address in use fails Start and leaves nothing listening.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addrs := EphemeralAddrs()
	addrs.Channels = busy.Addr().String()
	if _, err := Start(context.Background(), addrs); err == nil || !strings.Contains(err.Error(), "channels") {
		t.Errorf("busy port: %v", err)
	}

	u := ss.ERP.URL()
	if err := ss.Close(); err != nil {
		t.Error(err)
	}
	ss.Close()
	if resp, err := http.Get(u + "/sales-orders/SO-1"); err == nil {
		resp.Body.Close()
		t.Error("still serving after Close")
	}

	// Cancelling the context stops serving too.
	ctx, cancel := context.WithCancel(context.Background())
	ss2, err := Start(ctx, EphemeralAddrs())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(ss2.WMS.URL() + "/stock/100234")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("still serving after cancel")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
