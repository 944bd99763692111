package examples_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/conveyor-run/conveyor/connectors/all"
	"github.com/conveyor-run/conveyor/examples/simulator"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// The example workspace served for real against the simulator: a signed
// webshop order reaches the ERP and the WMS once, even when the webhook is
// delivered twice, and the sync shipment webhook answers inline.
func TestExampleWorkspaceAgainstSimulator(t *testing.T) {
	sims := startSimulator(t)
	env := sims.Env()
	env["SHOP_EVENTS_REDIS_URL"] = "redis://127.0.0.1:1/0" // no stream consumer here: it backs off
	e := serve(t, "distribution", t.TempDir(), env)
	for _, fi := range e.Flows() {
		if fi.Status != runtime.StatusActive {
			t.Fatalf("flow %s: %s %v", fi.ID, fi.Status, fi.Diagnostics)
		}
	}
	base := "http://" + e.TriggerAddr()

	order, err := os.ReadFile(filepath.Join("distribution", "samples", "shopify-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(secret string, body []byte) []byte {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(body)
		return m.Sum(nil)
	}
	send := func(url string, body []byte, headers map[string]string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	h := map[string]string{"X-Shopify-Hmac-Sha256": base64.StdEncoding.EncodeToString(sign("dev-secret", order)), "X-Shopify-Shop-Domain": "demo.myshopify.com"}
	s1, first := send(base+"/hooks/shopify/orders", order, h)
	s2, second := send(base+"/hooks/shopify/orders", order, h)
	if s1 != 202 || s2 != 200 || second["duplicate"] != true || second["id"] != first["id"] {
		t.Fatalf("webhook: %d %v; again: %d %v", s1, first, s2, second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sims.WMS.Orders() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("order did not reach the WMS; erp %d orders, received %v", sims.ERP.Orders(), sims.ERP.Received())
		}
		time.Sleep(20 * time.Millisecond)
	}
	so, ok := sims.ERP.SalesOrder("SHP-820982911946154777")
	if !ok || sims.ERP.Orders() != 1 {
		t.Fatalf("ERP orders %d, sales order %v", sims.ERP.Orders(), so)
	}
	if name := so["customer"].(map[string]any)["name"]; name != "Zoë van den Berg" {
		t.Errorf("customer name %q", name)
	}
	// order.accepted fans out: each subscriber gets its own durable copy.
	for deadline := time.Now().Add(10 * time.Second); sims.Carrier.Orders() < 1 || sims.Notify.Orders() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("order.accepted fan-out: carrier bookings %d, e-mails %d", sims.Carrier.Orders(), sims.Notify.Orders())
		}
	}

	// Near-real-time: a channel asks for availability and is answered inline.
	sims.WMS.SetStock("200117", 12)
	req, _ := http.NewRequest(http.MethodGet, base+"/api/availability/MUG-BLUE", nil)
	req.Header.Set("X-API-Key", "dev")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var avail map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&avail)
	resp.Body.Close()
	if resp.StatusCode != 200 || avail["item_code"] != "200117" || avail["known"] != true {
		t.Errorf("availability: %d %v", resp.StatusCode, avail)
	}

	shipment, err := os.ReadFile(filepath.Join("distribution", "samples", "wms-shipment.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, out := send(base+"/hooks/wms/shipments", shipment, map[string]string{"X-Signature-256": "sha256=" + hex.EncodeToString(sign("dev-secret", shipment))})
	if st != 200 || out["received"] != true {
		t.Fatalf("shipment: %d %v", st, out)
	}
	if sims.Notify.Orders() != 2 { // the order confirmation and the shipment
		t.Errorf("customer e-mails sent: %d, want 2", sims.Notify.Orders())
	}
}

// An order the warehouse cannot cover is backordered: the ERP has it and
// the WMS holds the allocation, but order.accepted is not published, so no
// parcel is booked with the carrier and no confirmation e-mail goes out.
func TestBackorderedOrderIsNotShipped(t *testing.T) {
	sims := startSimulator(t)
	env := sims.Env()
	env["SHOP_EVENTS_REDIS_URL"] = "redis://127.0.0.1:1/0" // no stream consumer here: it backs off
	e := serve(t, "distribution", t.TempDir(), env)
	ctx := context.Background()

	order, err := os.ReadFile(filepath.Join("distribution", "samples", "shopify-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	sims.WMS.SetStock("100234", 0) // the sample's t-shirts are out of stock
	m := hmac.New(sha256.New, []byte("dev-secret"))
	m.Write(order)
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.TriggerAddr()+"/hooks/shopify/orders", strings.NewReader(string(order)))
	req.Header.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(m.Sum(nil)))
	req.Header.Set("X-Shopify-Shop-Domain", "demo.myshopify.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var accepted map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	id, _ := accepted["id"].(string)
	if resp.StatusCode != 202 || id == "" {
		t.Fatalf("webhook: %d %v", resp.StatusCode, accepted)
	}
	// Once the order's run is done, whatever it published is stored.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		msg, err := e.Message(ctx, id)
		if err == nil && msg.Status == store.Completed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order message not completed: %v %v", msg, err)
		}
	}
	if sims.ERP.Orders() != 1 || sims.WMS.Orders() != 1 {
		t.Fatalf("ERP orders %d, WMS allocations %d", sims.ERP.Orders(), sims.WMS.Orders())
	}
	for _, flow := range []string{"carrier-booking", "order-confirmation"} {
		if ms, err := e.Messages(ctx, store.Filter{Flow: flow}); err != nil || len(ms) != 0 {
			t.Errorf("%s got %d message(s) for a backordered order (err %v)", flow, len(ms), err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if sims.Carrier.Orders() != 0 || sims.Notify.Orders() != 0 {
		t.Errorf("backordered order: carrier bookings %d, e-mails %d", sims.Carrier.Orders(), sims.Notify.Orders())
	}
}

// startSimulator starts the simulated systems on free loopback ports until
// the test ends.
func startSimulator(t *testing.T) *simulator.Systems {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sims, err := simulator.Start(ctx, simulator.EphemeralAddrs())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sims.Close(); cancel() })
	return sims
}

// serve runs the workspace at dir, its store in dataDir, on free loopback
// ports with env as its environment, until the test ends.
func serve(t *testing.T, dir, dataDir string, env map[string]string) *runtime.Engine {
	t.Helper()
	e, err := runtime.New(runtime.Options{Workspace: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}
