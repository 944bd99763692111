package examples_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conveyor-run/conveyor/connectors/postgres/pgtest"
	"github.com/conveyor-run/conveyor/examples/simulator"
	"github.com/conveyor-run/conveyor/flows"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/runtime"
)

// batchSetup is the example workspace served for real: a copy whose flow
// under test fires every second instead of on its cron, the simulator, and
// an ERP database in a schema of its own, created from sql/erp.sql.
type batchSetup struct {
	dir, data string
	sims      *simulator.Systems
	db        *pgx.Conn
	env       map[string]string
}

var cronLine = regexp.MustCompile(`cron: "[^"]*"`)

func newBatchSetup(t *testing.T, flow string) *batchSetup {
	t.Helper()
	_, dbURL, db := pgtest.Schema(t)
	schema, err := os.ReadFile(filepath.Join(workspace, "sql", "erp.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), string(schema)); err != nil {
		t.Fatalf("sql/erp.sql: %v", err)
	}
	dir := t.TempDir()
	err = filepath.WalkDir(workspace, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(workspace, p)
		if d.IsDir() {
			if rel == "data" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == filepath.Join("flows", flow+".yaml") {
			if n := len(cronLine.FindAll(data, -1)); n != 1 {
				return fmt.Errorf("%s: %d cron lines, want 1", p, n)
			}
			data = cronLine.ReplaceAll(data, []byte(`cron: "@every 1s"`))
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sims, err := simulator.Start(ctx, simulator.EphemeralAddrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sims.Close() })
	env := sims.Env()
	env["ERP_DB_URL"] = dbURL
	return &batchSetup{dir: dir, data: t.TempDir(), sims: sims, db: db, env: env}
}

// start serves the workspace copy; the data directory survives restarts.
func (b *batchSetup) start(t *testing.T, flow string) *runtime.Engine {
	t.Helper()
	e, err := runtime.New(runtime.Options{Workspace: b.dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		DataDir: b.data, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RescanInterval: -1,
		Getenv: func(k string) (string, bool) { v, ok := b.env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	for _, fi := range e.Flows() {
		if fi.ID == flow && fi.Status != runtime.StatusActive {
			t.Fatalf("flow %s: %s %v", fi.ID, fi.Status, fi.Diagnostics)
		}
	}
	return e
}

// rows runs a query on the test schema and returns its rows as objects.
func (b *batchSetup) rows(t *testing.T, sql string) []map[string]any {
	t.Helper()
	rs, err := b.db.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitUntil polls cond until it holds or 15 s have passed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Marketplace orders reach the ERP staging table once per version: across
// polls, with orders created and updated between them and while the engine
// is down, the watermark kept in the store makes every poll continue where
// the last completed one ended.
func TestMarketplacePullEndToEnd(t *testing.T) {
	const flow = "marketplace-pull"
	b := newBatchSetup(t, flow)
	// Every row the flow proposes to the staging table, conflicts included.
	_, err := b.db.Exec(context.Background(), `
		CREATE TABLE upsert_log (order_ref text, version timestamptz);
		CREATE FUNCTION log_upsert() RETURNS trigger LANGUAGE plpgsql AS
		  $$ BEGIN INSERT INTO upsert_log VALUES (NEW.order_ref, NEW.channel_updated_at); RETURN NEW; END $$;
		CREATE TRIGGER log_upsert BEFORE INSERT ON erp_order_staging FOR EACH ROW EXECUTE FUNCTION log_upsert();`)
	if err != nil {
		t.Fatal(err)
	}
	mkt := b.sims.Marketplace
	staged := func(n int) func() bool {
		return func() bool { return len(b.rows(t, "SELECT order_ref FROM erp_order_staging")) == n }
	}
	status := func(ref, want string) func() bool {
		return func() bool {
			r := b.rows(t, "SELECT status FROM erp_order_staging WHERE order_ref = '"+ref+"'")
			return len(r) == 1 && r[0]["status"] == want
		}
	}
	polls := func(n int) {
		t.Helper()
		seen := mkt.Count("GET", "/marketplace/orders")
		waitUntil(t, fmt.Sprintf("%d more polls", n), func() bool { return mkt.Count("GET", "/marketplace/orders") >= seen+n })
	}
	line := func(sku string, qty int, price string) map[string]any {
		return map[string]any{"lines": []any{map[string]any{"sku": sku, "quantity": qty, "price": price}}, "total": price,
			"buyer": map[string]any{"name": "Test Buyer", "email": "Buyer@Example.com"}}
	}

	e := b.start(t, flow)
	waitUntil(t, "the three seeded orders staged", staged(3))
	if _, ok := mkt.PutMarketplaceOrder("5004", line("SOCKS-3PK", 1, "9.95")); !ok {
		t.Fatal("new marketplace order refused")
	}
	mkt.PutMarketplaceOrder("5002", map[string]any{"status": "shipped"})
	waitUntil(t, "order 5004 staged", staged(4))
	waitUntil(t, "order 5002 shipped", status("MKP-5002", "shipped"))
	polls(2)
	wm, err := e.Store().GetMeta(context.Background(), "watermark/"+flow)
	if err != nil || wm == nil {
		t.Fatalf("no watermark stored: %s %v", wm, err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := len(mkt.Received())

	// While the engine is down.
	mkt.PutMarketplaceOrder("5005", line("MUG-BLUE", 2, "39.98"))
	mkt.PutMarketplaceOrder("5001", map[string]any{"status": "cancelled"})
	b.start(t, flow)
	waitUntil(t, "order 5005 staged after the restart", staged(5))
	waitUntil(t, "order 5001 cancelled", status("MKP-5001", "cancelled"))
	polls(2)

	after, _ := url.ParseQuery(mkt.Received()[before].Query)
	if got := `"` + after.Get("updated_since") + `"`; got != string(wm) {
		t.Errorf("first poll after the restart asked updated_since=%s, want the stored watermark %s", got, wm)
	}
	got := b.rows(t, "SELECT order_ref, status, total::text, currency, buyer_email, updates, lines FROM erp_order_staging ORDER BY order_ref")
	want := []map[string]any{
		{"order_ref": "MKP-5001", "status": "cancelled", "total": "24.00", "currency": "EUR", "buyer_email": "anna.jansen@example.com", "updates": int32(2)},
		{"order_ref": "MKP-5002", "status": "shipped", "total": "19.99", "currency": "EUR", "buyer_email": "piet.devries@example.com", "updates": int32(2)},
		{"order_ref": "MKP-5003", "status": "paid", "total": "74.70", "currency": "EUR", "buyer_email": "sofie.peeters@example.be", "updates": int32(1)},
		{"order_ref": "MKP-5004", "status": "paid", "total": "9.95", "currency": "EUR", "buyer_email": "buyer@example.com", "updates": int32(1)},
		{"order_ref": "MKP-5005", "status": "paid", "total": "39.98", "currency": "EUR", "buyer_email": "buyer@example.com", "updates": int32(1)},
	}
	if len(got) != len(want) {
		t.Fatalf("staging rows: %v", got)
	}
	for i := range want {
		lines := got[i]["lines"]
		delete(got[i], "lines")
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("row %d:\n got %v\nwant %v", i, got[i], want[i])
		}
		if l, _ := lines.([]any); len(l) != 1 {
			t.Errorf("%s lines %v", want[i]["order_ref"], lines)
		}
	}
	mug := b.rows(t, "SELECT lines->0->>'item_code' AS item, lines->0->>'price' AS price FROM erp_order_staging WHERE order_ref = 'MKP-5005'")
	if mug[0]["item"] != "200117" || mug[0]["price"] != "39.98" {
		t.Errorf("MKP-5005 line %v", mug[0])
	}
	// Five orders and two updates: seven versions, each proposed once.
	dups := b.rows(t, "SELECT order_ref, version, count(*) AS n FROM upsert_log GROUP BY 1, 2 HAVING count(*) > 1")
	total := b.rows(t, "SELECT count(*) AS n FROM upsert_log")
	if len(dups) > 0 || total[0]["n"] != int64(7) {
		t.Errorf("upserts: %v in all, repeated: %v", total[0]["n"], dups)
	}
}

// The nightly reconciliation, fired every second here, compares the ERP
// database's stock with the simulated WMS and writes the seeded
// differences, and the item the WMS does not know, to the exceptions report.
func TestStockReconciliationEndToEnd(t *testing.T) {
	const flow = "stock-reconciliation"
	b := newBatchSetup(t, flow)
	e := b.start(t, flow)
	var report []map[string]any
	waitUntil(t, "an exceptions report", func() bool {
		report = b.rows(t, `SELECT run_id, item_code, erp_qty, wms_qty, difference, reason, report_date::text AS day
			FROM erp_stock_exceptions WHERE run_id = (SELECT min(run_id) FROM erp_stock_exceptions) ORDER BY item_code`)
		return len(report) == 3
	})
	want := []map[string]any{
		{"item_code": "100235", "erp_qty": int32(75), "wms_qty": int32(80), "difference": int32(5), "reason": "quantity differs"},
		{"item_code": "300501", "erp_qty": int32(44), "wms_qty": int32(40), "difference": int32(-4), "reason": "quantity differs"},
		{"item_code": "999001", "erp_qty": int32(10), "wms_qty": nil, "difference": nil, "reason": "unknown in WMS"},
	}
	run := report[0]["run_id"]
	for i := range want {
		if report[i]["run_id"] != run || report[i]["day"] == "" {
			t.Errorf("row %d: %v", i, report[i])
		}
		delete(report[i], "run_id")
		delete(report[i], "day")
		if !reflect.DeepEqual(report[i], want[i]) {
			t.Errorf("exception %d:\n got %v\nwant %v", i, report[i], want[i])
		}
	}
	// The run that wrote it completed, having asked the WMS for every item.
	m, err := e.Store().Get(context.Background(), run.(string))
	if err != nil || m.Flow != flow {
		t.Fatalf("run %v: %v %v", run, m, err)
	}
	waitUntil(t, "the run completed", func() bool {
		m, err := e.Store().Get(context.Background(), run.(string))
		return err == nil && !m.Status.Pending()
	})
	if n := b.sims.WMS.Count("GET", "/stock/*"); n < 6 {
		t.Errorf("WMS asked %d times, want 6 per run", n)
	}

	// Once the ERP is corrected, the next runs find nothing.
	if _, err := b.db.Exec(context.Background(), `UPDATE erp_stock SET qty = CASE item_code WHEN '100235' THEN 80 WHEN '300501' THEN 40 ELSE qty END;
		DELETE FROM erp_stock WHERE item_code = '999001'`); err != nil {
		t.Fatal(err)
	}
	// A run that read the old stock may still write its report: one more at most.
	runs := len(b.rows(t, "SELECT DISTINCT run_id FROM erp_stock_exceptions"))
	seen := b.sims.WMS.Count("GET", "/stock/*")
	waitUntil(t, "two more runs", func() bool { return b.sims.WMS.Count("GET", "/stock/*") >= seen+10 })
	if now := len(b.rows(t, "SELECT DISTINCT run_id FROM erp_stock_exceptions")); now > runs+1 {
		t.Errorf("runs with exceptions went from %d to %d after the correction", runs, now)
	}
}

// The README's dry runs of the batch flows: conveyor run FLOW --input
// samples/schedule-run.json --mocks samples/mocks/FLOW.yaml.
func TestBatchSamples(t *testing.T) {
	ws := load(t)
	tick := readJSON(t, filepath.Join(workspace, "samples", "schedule-run.json"))
	for _, c := range []struct {
		flow      string
		calls     int
		watermark any
		published []string
	}{
		{"marketplace-pull", 4, "2026-01-05T09:30:00.000Z", []string{"marketplace.orders.staged"}},
		{"stock-reconciliation", 8, nil, []string{"stock.exceptions", "stock.reconciled"}},
	} {
		t.Run(c.flow, func(t *testing.T) {
			f := ws.Flows[c.flow]
			if f == nil {
				t.Fatalf("flow %s did not load", c.flow)
			}
			mocks := readMocks(t, filepath.Join(workspace, "samples", "mocks", c.flow+".yaml"))
			rep := flowtest.Run(context.Background(), f, flowtest.Input{Body: tick}, mocks)
			if rep.Outcome != flows.Completed {
				t.Fatalf("outcome %s: %s", rep.Outcome, rep.Error)
			}
			if len(rep.Calls) != c.calls || !reflect.DeepEqual(rep.Watermark, c.watermark) {
				t.Errorf("calls %d (want %d), watermark %v (want %v)", len(rep.Calls), c.calls, rep.Watermark, c.watermark)
			}
			var topics []string
			for _, p := range rep.Published {
				topics = append(topics, p.Topic)
			}
			if !reflect.DeepEqual(topics, c.published) {
				t.Errorf("published %v, want %v", topics, c.published)
			}
		})
	}
	// The mocked page is the sample page, which is what the simulator serves.
	page := readJSON(t, filepath.Join(workspace, "samples", "marketplace-orders.json"))
	mocks := readMocks(t, filepath.Join(workspace, "samples", "mocks", "marketplace-pull.yaml"))
	if d := flowtest.Subset(page, mocks["marketplace"][0].Body.V, "mocks.marketplace.body"); len(d) > 0 {
		t.Errorf("samples/mocks/marketplace-pull.yaml drifted from samples/marketplace-orders.json: %v", d)
	}
	sims := simulator.New()
	for _, o := range page.(map[string]any)["orders"].([]any) {
		id := o.(map[string]any)["order_id"].(string)
		served, _ := sims.Marketplace.MarketplaceOrder(id)
		if d := flowtest.Subset(o, served, "simulator order "+id); len(d) > 0 {
			t.Errorf("samples/marketplace-orders.json drifted from the simulator: %v", d)
		}
	}
}
