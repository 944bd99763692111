package examples_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/conveyor-run/conveyor/connectors/all"
	"github.com/conveyor-run/conveyor/mappings/x12"
	"github.com/conveyor-run/conveyor/runtime"
	"github.com/conveyor-run/conveyor/runtime/store"
)

// copyWorkspace copies the example workspace (without its data) into a
// temporary directory, so that inboxes and outboxes live outside the repo.
func copyWorkspace(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(workspace, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(workspace, p)
		if d.IsDir() {
			if rel == "data" || rel == "edi" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// dropFile copies a sample into an inbox the way a partner's transfer
// does: under a temporary name, renamed when complete.
func dropFile(t *testing.T, sample, inbox, name string) {
	t.Helper()
	data, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(inbox, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(inbox, name+".part")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(inbox, name)); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The hybrid EDI example served for real against the simulated ERP: an
// 850 file with two purchase orders dropped into the inbox becomes two ERP
// sales orders and, per order, a 997, an 856 and an 810 in the outbox; the
// same orders sent again are not ordered twice; a malformed 850 ends in
// error/ with the segment and byte that failed.
func TestEDI850HybridAgainstSimulator(t *testing.T) {
	sims := startSimulator(t)
	env := sims.Env()
	dir := copyWorkspace(t)
	e := serve(t, dir, filepath.Join(dir, "data"), env)
	ctx := context.Background()
	if fi, ok := e.Flow("edi-850-in"); !ok || fi.Status != runtime.StatusActive {
		t.Fatalf("edi-850-in: %+v", fi)
	}
	inbox, outbox := filepath.Join(dir, "edi", "inbox"), filepath.Join(dir, "edi", "outbox")
	samples := filepath.Join(workspace, "samples", "edi")

	dropFile(t, filepath.Join(samples, "850-northwind.edi"), inbox, "850-northwind.edi")
	dropFile(t, filepath.Join(samples, "850-bad-count.edi"), inbox, "850-bad-count.edi")
	pos := []string{"4500012345", "4500012346"}
	var names []string
	for _, po := range pos {
		for _, set := range []string{"997", "856", "810"} {
			names = append(names, set+"-NORTHWIND-"+po+".edi")
		}
	}
	waitFor(t, 20*time.Second, "the 997, 856 and 810 of both orders in the outbox", func() bool {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(outbox, n)); err != nil {
				return false
			}
		}
		return true
	})
	if n := sims.ERP.Orders(); n != 2 {
		t.Errorf("ERP sales orders: %d, want 2", n)
	}
	so, ok := sims.ERP.SalesOrder("EDI-NORTHWIND-4500012345")
	if !ok {
		t.Fatalf("no ERP order for PO 4500012345: %v", sims.ERP.Received())
	}
	if c := so["customer"].(map[string]any); c["email"] != "jane.buyer@northwind.example" || so["totals"].(map[string]any)["net"] != "526.80" {
		t.Errorf("ERP order: %v", so)
	}
	// order.accepted fans out as for a webshop order: the buyer is told and a
	// parcel is booked for each purchase order, and no subscriber dead-letters.
	for deadline := time.Now().Add(10 * time.Second); sims.Carrier.Orders() < 2 || sims.Notify.Orders() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			dead, _ := e.Messages(ctx, store.Filter{Status: store.Dead})
			for _, m := range dead {
				t.Errorf("dead letter of %s: %s", m.Flow, m.Error)
			}
			t.Fatalf("order.accepted fan-out: carrier bookings %d, e-mails %d, want 2 each", sims.Carrier.Orders(), sims.Notify.Orders())
		}
	}
	for _, r := range sims.Carrier.Received() {
		if to, _ := r.Body.(map[string]any)["recipient"].(map[string]any); to["name"] == nil || to["city"] == nil {
			t.Errorf("parcel without a recipient: %v", r.Body)
		}
	}

	controls := map[string]string{}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(outbox, n))
		if err != nil {
			t.Fatal(err)
		}
		ic, err := x12.ParseBytes(data)
		if err != nil {
			t.Fatalf("%s does not parse: %v\n%s", n, err, data)
		}
		if prev, dup := controls[ic.Header.Element(13)]; dup {
			t.Errorf("%s and %s share the interchange control number %s", prev, n, ic.Header.Element(13))
		}
		controls[ic.Header.Element(13)] = n
		v := ic.JSON()
		if isa := v["isa"].(map[string]any); isa["sender"] != "ACMESUPPLY" || isa["receiver"] != "NORTHWIND" {
			t.Errorf("%s: addressed from %v to %v", n, isa["sender"], isa["receiver"])
		}
		tx := v["groups"].([]any)[0].(map[string]any)["transactions"].([]any)[0].(map[string]any)
		if tx["set"] != n[:3] {
			t.Errorf("%s holds a %v", n, tx["set"])
		}
		switch n[:3] {
		case "997":
			if !strings.Contains(string(data), "AK5*A") || !strings.Contains(string(data), "AK2*850*") {
				t.Errorf("%s does not accept the 850:\n%s", n, data)
			}
		case "856":
			order := tx["ship_notice"].(map[string]any)["shipment"].(map[string]any)["orders"].([]any)[0].(map[string]any)
			if !strings.Contains(n, order["po_number"].(string)) || len(order["items"].([]any)) == 0 {
				t.Errorf("%s: order %v", n, order)
			}
		case "810":
			inv := tx["invoice"].(map[string]any)
			if strings.Contains(n, "4500012345") && inv["total"] != "526.80" {
				t.Errorf("%s: total %v, want 526.80", n, inv["total"])
			}
		}
	}

	// The malformed 850: in error/ with its reason, and none of its orders taken.
	reason := filepath.Join(inbox, "error", "850-bad-count.edi.reason")
	waitFor(t, 10*time.Second, "the malformed 850 in error/", func() bool { _, err := os.Stat(reason); return err == nil })
	if b, _ := os.ReadFile(reason); !strings.Contains(string(b), "segment 21 (SE) at byte 697: SE01 says 17 segments, the transaction has 19") {
		t.Errorf("reason: %s", b)
	}
	if _, ok := sims.ERP.SalesOrder("EDI-NORTHWIND-4500012399"); ok {
		t.Error("an order of the malformed file reached the ERP")
	}
	waitFor(t, 5*time.Second, "the 850 in done/", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "done", "850-northwind.edi"))
		return err == nil
	})

	// The partner sends the same purchase orders again: dedup keeps them single.
	dropFile(t, filepath.Join(samples, "850-northwind.edi"), inbox, "850-northwind-resent.edi")
	waitFor(t, 10*time.Second, "the resent 850 in done/", func() bool {
		_, err := os.Stat(filepath.Join(inbox, "done", "850-northwind-resent.edi"))
		return err == nil
	})
	time.Sleep(300 * time.Millisecond)
	if n := sims.ERP.Orders(); n != 2 {
		t.Errorf("ERP sales orders after the resend: %d, want 2", n)
	}
}
