package x12

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var buildTime = time.Date(2024, 1, 17, 14, 20, 0, 0, time.UTC)

// TestRoundTripRaw builds every sample back from its JSON view and parses
// it again: the view must not change.
func TestRoundTripRaw(t *testing.T) {
	for name, b := range samples(t) {
		view := mustParse(t, b).JSON()
		out, err := Build(view, BuildOptions{})
		if err != nil {
			t.Fatalf("%s: build: %v", name, err)
		}
		again, err := ParseBytes(out)
		if err != nil {
			t.Fatalf("%s: parse of the build: %v\n%s", name, err, out)
		}
		if got := again.JSON(); !reflect.DeepEqual(got, view) {
			t.Errorf("%s: round trip changes the view:\n%s", name, firstDiff(pretty(got, ""), pretty(view, "")))
		}
	}
}

// TestFriendlyRoundTrip builds every sample transaction from its friendly
// form alone and checks that parsing gives the same friendly form.
func TestFriendlyRoundTrip(t *testing.T) {
	n := 0
	for name, b := range samples(t) {
		for _, g := range mustParse(t, b).Groups {
			for _, tx := range g.Transactions {
				f := forms[tx.Set]
				fm := tx.JSON()[f.key]
				out, err := Build(map[string]any{f.key: fm}, BuildOptions{Sender: "A", Receiver: "B", Time: buildTime})
				if err != nil {
					t.Fatalf("%s %s: %v", name, tx.Control, err)
				}
				got := mustParse(t, out).Groups[0].Transactions[0].JSON()[f.key]
				if !reflect.DeepEqual(got, fm) {
					t.Errorf("%s %s: friendly round trip:\n%s\n%s", name, tx.Control, firstDiff(pretty(got, ""), pretty(fm, "")), out)
				}
				n++
			}
		}
	}
	if n < 7 {
		t.Errorf("only %d transactions", n)
	}
}

// shipNotice is an 856 as a mapping would build it from a WMS shipment.
func shipNotice() map[string]any {
	item := func(line, sku, upc string, qty int) map[string]any {
		return map[string]any{"line": line, "vendor_part": sku, "upc": upc, "qty": qty, "uom": "EA", "ordered_qty": qty, "ordered_uom": "EA"}
	}
	return map[string]any{"ship_notice": map[string]any{
		"bsn": map[string]any{"shipment_id": "SHP-90001", "date": "20240117", "time": "1415"},
		"shipment": map[string]any{
			"packaging": map[string]any{"packaging": "CTN25", "lading_qty": 2, "weight_qualifier": "G", "weight": 18.5, "weight_uom": "LB"},
			"carrier":   map[string]any{"id_qualifier": "2", "id": "UPSN", "method": "M"},
			"refs":      []any{map[string]any{"qualifier": "BM", "value": "BOL-1"}},
			"dates":     []any{map[string]any{"qualifier": "011", "date": "20240117"}},
			"parties": []any{
				map[string]any{"code": "SF", "name": "ACME SUPPLY CO", "address": "900 INDUSTRIAL PKWY", "city": "GARY", "state": "IN", "postal_code": "46402"},
				map[string]any{"code": "ST", "name": "NORTHWIND STORE 0042", "id_qualifier": "92", "id": "0042"},
			},
			"orders": []any{map[string]any{
				"po_number": "4500012345", "po_date": "20240115",
				"packs": []any{
					map[string]any{"sscc": "00012345670000000031", "items": []any{item("1", "WID-100-BL", "012345678905", 12), item("2", "GRS-2KG", "012345678929", 1)}},
					map[string]any{"sscc": "00012345670000000048", "items": []any{item("1", "WID-100-BL", "012345678905", 12)}},
				},
			}},
		},
	}}
}

// invoice is an 810 as a mapping would build it from an ERP invoice.
func invoice() map[string]any {
	return map[string]any{"set": "810", "invoice": map[string]any{
		"big":      map[string]any{"date": "20240118", "invoice_number": "INV-2001", "po_number": "4500012345", "po_date": "20240115"},
		"currency": "USD",
		"parties":  []any{map[string]any{"code": "RE", "name": "ACME SUPPLY CO", "id_qualifier": "92", "id": "V1007"}},
		"terms":    map[string]any{"type": "01", "basis": "3", "discount_percent": 2, "discount_days": 10, "net_days": 30},
		"lines": []any{
			map[string]any{"line": "1", "qty": 24, "uom": "EA", "price": "9.95", "vendor_part": "WID-100-BL", "description": "WIDGET, BLUE, 100MM"},
			map[string]any{"line": "2", "qty": 2.5, "uom": "LB", "price": 14.2, "vendor_part": "GRS-2KG",
				"charges": []any{map[string]any{"indicator": "A", "code": "C310", "amount": "1.05", "method": "02"}}},
		},
		"charges": []any{map[string]any{"indicator": "C", "code": "D240", "amount": 12.5, "method": "06", "description": "FREIGHT"}},
		"carrier": map[string]any{"method": "M", "scac": "UPSN"},
	}}
}

// TestBuildGolden writes an 856 and an 810 from friendly documents and
// compares them with testdata/golden/*.edi byte for byte.
func TestBuildGolden(t *testing.T) {
	opts := BuildOptions{Sender: "ACMESUPPLY", Receiver: "NORTHWIND", Time: buildTime, InterchangeControl: 42, GroupControl: 42, TransactionControl: 1}
	for name, doc := range map[string]map[string]any{"build_856": shipNotice(), "build_810": invoice()} {
		out, err := Build(doc, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden := filepath.Join("testdata", "golden", name+".edi")
		if *update {
			os.WriteFile(golden, out, 0o644)
			continue
		}
		if want := mustRead(t, golden); !bytes.Equal(out, want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, firstDiff(string(out), string(want)))
		}
		mustParse(t, out)
	}
}

func TestBuildShipNotice(t *testing.T) {
	out, err := Build(shipNotice(), BuildOptions{Sender: "ACMESUPPLY", Receiver: "NORTHWIND", Time: buildTime})
	if err != nil {
		t.Fatal(err)
	}
	tx := mustParse(t, out).Groups[0].Transactions[0]
	var hls []string
	for _, s := range tx.Segments {
		if s.ID == "HL" {
			hls = append(hls, strings.Join(s.Elements, "*"))
		}
	}
	want := []string{"1**S*1", "2*1*O*1", "3*2*P*1", "4*3*I*0", "5*3*I*0", "6*2*P*1", "7*6*I*0"}
	if !reflect.DeepEqual(hls, want) {
		t.Errorf("HL segments %v, want %v", hls, want)
	}
	if last := tx.Segments[len(tx.Segments)-2]; last.ID != "CTT" || last.Element(1) != "7" {
		t.Errorf("CTT %v", last)
	}
	sn := tx.JSON()["ship_notice"].(map[string]any)
	if bsn := sn["bsn"].(map[string]any); bsn["purpose"] != "00" || bsn["structure"] != "0001" {
		t.Errorf("BSN defaults %v", bsn)
	}
	pack := sn["shipment"].(map[string]any)["orders"].([]any)[0].(map[string]any)["packs"].([]any)[1].(map[string]any)
	if pack["sscc"] != "00012345670000000048" || pack["items"].([]any)[0].(map[string]any)["qty"] != 12 {
		t.Errorf("second pack %v", pack)
	}
}

func TestBuildInvoice(t *testing.T) {
	out, err := Build(invoice(), BuildOptions{Sender: "ACMESUPPLY", Receiver: "NORTHWIND", Time: buildTime})
	if err != nil {
		t.Fatal(err)
	}
	inv := mustParse(t, out).Groups[0].Transactions[0].JSON()["invoice"].(map[string]any)
	// 24 × 9.95 + 2.5 × 14.2 − 1.05 + 12.50 = 285.75
	if inv["total"] != "285.75" || !bytes.Contains(out, []byte("TDS*28575~")) {
		t.Errorf("total %v\n%s", inv["total"], out)
	}
	if !bytes.Contains(out, []byte("CTT*2~")) || !bytes.Contains(out, []byte("CUR*SE*USD~")) || !bytes.Contains(out, []byte("SAC*A*C310***105*******02~")) {
		t.Errorf("segments:\n%s", out)
	}
}

func TestBuildOptions(t *testing.T) {
	doc := map[string]any{"transactions": []any{
		map[string]any{"purchase_order": map[string]any{"beg": map[string]any{"po_number": "PO-1"}, "lines": []any{map[string]any{"line": 1, "qty": 3, "uom": "EA", "price": "2.50", "vendor_part": "A"}}}},
		shipNotice(),
		map[string]any{"set": "850", "purchase_order": map[string]any{"beg": map[string]any{"po_number": "PO-2"}}},
	}}
	counters := map[string]int64{"ISA": 700, "GS": 70, "ST": 7}
	opts := BuildOptions{Sender: "ME", Receiver: "YOU", Version: "00501", Usage: "T", Time: buildTime,
		Separators:  Separators{Element: '|', Repetition: '!', Component: '\\', Segment: '\n'},
		NextControl: func(kind string) (int64, error) { counters[kind]++; return counters[kind], nil }}
	out, err := Build(doc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ic := mustParse(t, out)
	if ic.Separators != (Separators{Element: '|', Repetition: '!', Component: '\\', Segment: '\n'}) {
		t.Errorf("separators %+v", ic.Separators)
	}
	h := ic.Header
	if h.Element(11) != "!" || h.Element(12) != "00501" || h.Element(13) != "000000701" || h.Element(15) != "T" || h.Element(9) != "240117" {
		t.Errorf("ISA %q", h.Elements)
	}
	// Two POs share one PO group, the 856 has its own.
	if len(ic.Groups) != 2 || ic.Groups[0].Header.Element(1) != "PO" || len(ic.Groups[0].Transactions) != 2 || ic.Groups[1].Header.Element(1) != "SH" {
		t.Fatalf("groups %v", ic.Groups)
	}
	if g := ic.Groups[0].Header; g.Element(6) != "71" || g.Element(8) != "005010" || ic.Groups[1].Header.Element(6) != "72" {
		t.Errorf("GS %q", g.Elements)
	}
	var ctl []string
	for _, g := range ic.Groups {
		for _, tx := range g.Transactions {
			ctl = append(ctl, tx.Control)
		}
	}
	if !reflect.DeepEqual(ctl, []string{"0008", "0009", "0010"}) {
		t.Errorf("ST02 %v", ctl)
	}
	if !bytes.Contains(out, []byte("BEG|00|SA|PO-1||20240117\n")) || !bytes.Contains(out, []byte("CTT|1|3\n")) {
		t.Errorf("defaults:\n%s", out)
	}
	failing := opts
	failing.NextControl = func(string) (int64, error) { return 0, errors.New("store down") }
	if _, err := Build(doc, failing); err == nil || err.Error() != "ISA control number: store down" {
		t.Errorf("counter error: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	po := func(m map[string]any) map[string]any { return map[string]any{"purchase_order": m} }
	opts := BuildOptions{Sender: "ME", Receiver: "YOU", Time: buildTime}
	for _, c := range []struct {
		doc  map[string]any
		opts *BuildOptions
		err  string
	}{
		{po(map[string]any{}), nil, "purchase_order.beg: po_number is required (BEG03)"},
		{po(map[string]any{"beg": map[string]any{"po_number": "P*1"}}), nil, `purchase_order.beg: BEG03 "P*1" contains the element separator "*"`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1", "po_numbr": "x"}}), nil, `purchase_order.beg: unknown field "po_numbr"`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}, "line": []any{}}), nil, `purchase_order: unknown field "line"`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}, "lines": []any{map[string]any{"qty": 1, "vendor_part": "A~B"}}}), nil, `purchase_order.lines[0]: PO107 "A~B" contains the segment terminator "~"`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}, "lines": "x"}), nil, `purchase_order.lines: must be a list, got "x"`},
		{po(map[string]any{"beg": map[string]any{"po_number": []any{1}}}), nil, `purchase_order.beg: po_number must be text or a number, got a list`},
		{map[string]any{"invoice": map[string]any{"big": map[string]any{"invoice_number": "I1"}, "total": "1.234"}}, nil, `invoice: total: "1.234" has more than 2 decimals`},
		{map[string]any{"invoice": map[string]any{"big": map[string]any{"invoice_number": "I1"}, "lines": []any{map[string]any{"qty": 1}}}}, nil, `invoice: total is missing and cannot be computed: lines[0] needs a numeric qty and price`},
		{map[string]any{"set": "850", "invoice": map[string]any{}}, nil, "document: invoice is the friendly form of set 810, not 850"},
		{map[string]any{"segments": []any{}}, nil, "document: a transaction needs a set (ST01) or one of purchase_order, ship_notice, invoice"},
		{map[string]any{"set": "855"}, nil, "set 855 needs segments (there is no friendly form for it)"},
		{map[string]any{"set": "123", "segments": []any{}}, nil, `groups[0]: no functional id (GS01) known for set "123": give gs.functional_id`},
		{map[string]any{"set": "850", "segments": []any{map[string]any{"id": "SE", "elements": []any{"1"}}}}, nil, "segments[0]: SE is written by Build, leave it out"},
		{map[string]any{"set": "850", "segments": []any{map[string]any{"id": "BEG", "elements": []any{map[string]any{"repeats": []any{"a"}}}}}}, nil, "BEG01: repeats need a repetition separator"},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}}), &BuildOptions{Sender: "ME"}, "the interchange needs a sender and a receiver (ISA06, ISA08)"},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}}), &BuildOptions{Sender: "A VERY LONG SENDER ID", Receiver: "YOU"}, `isa.sender: ISA06 "A VERY LONG SENDER ID" is longer than 15 characters`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}}), &BuildOptions{Sender: "ME", Receiver: "YOU", Separators: Separators{Element: '*', Component: '*', Segment: '~'}}, `separators: component separator "*" (ISA16) is also the element separator`},
		{po(map[string]any{"beg": map[string]any{"po_number": "P1"}}), &BuildOptions{Sender: "ME", Receiver: "YOU", InterchangeControl: 1e9}, "ISA control number 1000000000 is not between 1 and 999999999"},
	} {
		o := opts
		if c.opts != nil {
			o = *c.opts
		}
		_, err := Build(c.doc, o)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("Build(%v): error %v, want %q", c.doc, err, c.err)
		}
	}
}

func ackSegments(t *testing.T, b []byte) []string {
	t.Helper()
	ic := mustParse(t, b)
	var out []string
	for _, g := range ic.Groups {
		if g.Header.Element(1) != "FA" {
			t.Errorf("GS01 %s", g.Header.Element(1))
		}
		for _, tx := range g.Transactions {
			for _, s := range tx.Segments[1 : len(tx.Segments)-1] {
				out = append(out, s.ID+"*"+strings.Join(s.Elements, "*"))
			}
		}
	}
	return out
}

func TestAck997(t *testing.T) {
	b := mustRead(t, "testdata/810_two_groups_lf.edi")
	ic := mustParse(t, b)
	out, err := Ack997(ic, true, nil, BuildOptions{Time: buildTime, InterchangeControl: 5})
	if err != nil {
		t.Fatal(err)
	}
	got := ackSegments(t, out)
	want := []string{"AK1*IN*77", "AK2*810*0001", "AK5*A", "AK2*810*0002", "AK5*A", "AK9*A*2*2*2", "AK1*IN*78", "AK2*810*0003", "AK5*A", "AK9*A*1*1*1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("997 %v\nwant %v", got, want)
	}
	ack := mustParse(t, out)
	if h := ack.Header; strings.TrimSpace(h.Element(6)) != "NORTHWIND" || strings.TrimSpace(h.Element(8)) != "ACMESUPPLY" || ack.Groups[0].Header.Element(2) != "NORTHWIND" {
		t.Errorf("997 not addressed back: %q", h.Elements)
	}

	// Rejected by the business.
	out, _ = Ack997(ic, false, nil, BuildOptions{})
	if got := ackSegments(t, out); got[2] != "AK5*R" || got[5] != "AK9*R*2*2*0" {
		t.Errorf("rejection %v", got)
	}

	// A wrong SE01 in the first invoice and a rule that failed on the second.
	bad := bytes.Replace(b, []byte("SE*23*0001"), []byte("SE*22*0001"), 1)
	ic, err = ParseBytes(bad)
	if err == nil {
		t.Fatal("no error")
	}
	rule := &Error{Segment: 36, SegmentID: "IT1", Element: 4, Msg: "price below cost"}
	out, err = Ack997(ic, true, []error{err, rule}, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"AK1*IN*77", "AK2*810*0001", "AK5*R*4", "AK2*810*0002", "AK3*IT1*11**8", "AK4*4**7*0.89", "AK5*R*5", "AK9*R*2*2*0", "AK1*IN*78", "AK2*810*0003", "AK5*A", "AK9*A*1*1*1"}
	if got := ackSegments(t, out); !reflect.DeepEqual(got, want) {
		t.Errorf("997 %v\nwant %v", got, want)
	}

	// A group cut short: what was read is acknowledged, the group rejected.
	ic, err = ParseBytes(b[:bytes.Index(b, []byte("ST*810*0002"))+30])
	out, _ = Ack997(ic, true, []error{err}, BuildOptions{})
	if got := ackSegments(t, out); !reflect.DeepEqual(got, []string{"AK1*IN*77", "AK2*810*0001", "AK5*R", "AK9*R*1*1*0*3"}) {
		t.Errorf("997 %v", got)
	}
	if _, err := Ack997(nil, true, nil, BuildOptions{}); err == nil {
		t.Error("no error for nil")
	}
}

// TestAck997Streaming acknowledges a file read with a Reader, keeping only
// the ST and SE of each transaction: the 997 is the one Parse would give.
func TestAck997Streaming(t *testing.T) {
	b := bytes.Replace(mustRead(t, "testdata/810_two_groups_lf.edi"), []byte("SE*14*0002"), []byte("SE*14*0009"), 1)
	full, perr := ParseBytes(b)
	want, err := Ack997(full, true, []error{perr}, BuildOptions{Time: buildTime})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(b))
	var errs []error
	for {
		tx, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, err)
		}
		if tx == nil {
			continue
		}
		g, ic := tx.Group, tx.Group.Interchange
		if len(ic.Groups) == 0 || ic.Groups[len(ic.Groups)-1] != g {
			ic.Groups = append(ic.Groups, g)
		}
		tx.Segments = []Segment{tx.Segments[0], tx.Segments[len(tx.Segments)-1]}
		g.Transactions = append(g.Transactions, tx)
	}
	got, err := Ack997(r.Interchange(), true, errs, BuildOptions{Time: buildTime})
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("streaming 997 %v:\n%s\nwant\n%s", err, got, want)
	}
	if !bytes.Contains(got, []byte("AK2*810*0002~\nAK5*R*3~")) {
		t.Errorf("997:\n%s", got)
	}
}
