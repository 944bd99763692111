package mappings

import (
	"os"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
)

func TestX12Functions(t *testing.T) {
	po, err := os.ReadFile("x12/testdata/850_two_orders_crlf.edi")
	if err != nil {
		t.Fatal(err)
	}
	opts := exprOptions(nil)
	env := map[string]any{"body": string(po)}
	for _, c := range []struct{ src, want string }{
		// The friendly form of an 850 read in a mapping.
		{`x12_parse(body).groups[0].transactions[1].purchase_order.beg.po_number`, "4500012346"},
		{`x12_parse(body).isa.sender`, "NORTHWIND"},
		{`string(sum(x12_parse(body).groups[0].transactions[0].purchase_order.lines, .qty))`, "32.5"},
		// 850 in, 856 out: the ship notice of the first order, built from its lines.
		{`let po = x12_parse(body).groups[0].transactions[0].purchase_order;
		  let asn = x12_build({ship_notice: {bsn: {shipment_id: "SHP-1", date: "20240117", time: "1415"},
		      shipment: {orders: [{po_number: po.beg.po_number, items: map(po.lines, {{line: .line, vendor_part: .vendor_part, qty: .qty, uom: .uom}})}]}}},
		      {sender: "ACMESUPPLY", receiver: "NORTHWIND", isa_control: 7, time: "2024-01-17T14:20:00Z"});
		  join(filter(split(asn, "\n"), # startsWith "HL" || # startsWith "SE" || # startsWith "CTT" || # startsWith "IEA"), " ")`,
			"HL*1**S*1~ HL*2*1*O*1~ HL*3*2*I*0~ HL*4*2*I*0~ HL*5*2*I*0~ CTT*5~ SE*16*0001~ IEA*1*000000007~"},
		{`x12_build({set: "850", segments: [{id: "BEG", elements: ["00", "SA", "P1", "", "20240101"]}]},
		      {sender: "A", receiver: "B", element_separator: "|", component_separator: ">", segment_terminator: "\n", time: "2024-01-01T00:00:00Z"})`,
			"ISA|00|          |00|          |ZZ|A              |ZZ|B              |240101|0000|U|00401|000000001|0|P|>\nGS|PO|A|B|20240101|0000|1|X|004010\nST|850|0001\nBEG|00|SA|P1||20240101\nSE|3|0001\nGE|1|1\nIEA|1|000000001\n"},
		{`x12_ack(body, false, {isa_control: 12}) contains "AK9*R*2*2*0~"`, "true"},
	} {
		prog, err := expr.Compile(c.src, append(opts, expr.Env(env))...)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		out, err := expr.Run(prog, env)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got := stringOf(out); got != c.want {
			t.Errorf("%s\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

func TestX12Errors(t *testing.T) {
	good, err := os.ReadFile("x12/testdata/850_minimal.edi")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), "SE*7*", "SE*6*", 1)
	runCalls(t, []callCase{
		{fn: "x12_parse", args: []any{"hello"}, err: `x12_parse: segment 1 at byte 0: expected an ISA segment, got "hello"`},
		{fn: "x12_parse", args: []any{bad}, err: "x12_parse: segment 9 (SE) at byte 311: SE01 says 6 segments, the transaction has 7 (ST to SE)"},
		{fn: "x12_build", args: []any{"x"}, err: `x12_build: doc: "x" is not an object`},
		{fn: "x12_build", args: []any{map[string]any{"set": "850"}, map[string]any{"sendr": "A"}}, err: `x12_build: options: unknown option "sendr" (known: ack_requested, component_separator, element_separator, gs_control, gs_receiver, gs_sender, gs_version, isa_control, receiver, receiver_qualifier, repetition_separator, segment_terminator, sender, sender_qualifier, st_control, time, usage, version)`},
		{fn: "x12_build", args: []any{map[string]any{"purchase_order": map[string]any{}}, map[string]any{"sender": "A", "receiver": "B"}}, err: "x12_build: purchase_order.beg: po_number is required (BEG03)"},
		{fn: "x12_build", args: []any{map[string]any{"set": "850"}, map[string]any{"element_separator": "**"}}, err: `x12_build: options.element_separator must be one character, got "**"`},
		{fn: "x12_build", args: []any{map[string]any{"set": "850"}, map[string]any{"time": "yesterday"}}, err: `x12_build: options.time must be a time or RFC 3339 text such as "2024-01-17T14:20:00Z", got "yesterday"`},
		{fn: "x12_build", args: []any{map[string]any{"set": "850"}, map[string]any{"isa_control": -1}}, err: "x12_build: options.isa_control must not be negative, got -1"},
		{fn: "x12_ack", args: []any{"hello"}, err: `x12_ack: segment 1 at byte 0: expected an ISA segment, got "hello"`},
		{fn: "x12_ack", args: []any{bad, "yes"}, err: `x12_ack: accepted: "yes" is not true or false`},
	})
	// A malformed transaction is rejected with its AK5 code.
	f := map[string]Function{}
	for _, fn := range Catalogue(nil) {
		f[fn.Name] = fn
	}
	out, err := f["x12_ack"].Fn(bad)
	if err != nil || !strings.Contains(out.(string), "AK2*850*0001~\nAK5*R*4~\nAK9*R*1*1*0~") {
		t.Errorf("x12_ack = %v, %v", out, err)
	}
}

// segment_terminator "\r\n" ends every segment with CR LF, not a bare CR.
func TestX12BuildCRLFTerminator(t *testing.T) {
	doc := map[string]any{"purchase_order": map[string]any{"beg": map[string]any{"po_number": "PO-1"}}}
	out, err := x12Build(doc, map[string]any{"sender": "A", "receiver": "B", "segment_terminator": "\r\n", "time": "2024-01-17T14:20:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	s := out.(string)
	if n := strings.Count(s, "\r"); n == 0 || n != strings.Count(s, "\r\n") {
		t.Errorf("every CR should be followed by LF: %q", s)
	}
	// Asked for by no option, a line break stays as the partner (or the
	// document) writes it: the 997 to a partner ending segments with a bare
	// CR ends its own so, not with CR LF.
	bare, err := x12Build(doc, map[string]any{"sender": "A", "receiver": "B", "segment_terminator": "\r", "time": "2024-01-17T14:20:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := x12Ack(bare)
	if err != nil {
		t.Fatal(err)
	}
	if a := ack.(string); !strings.Contains(a, "\r") || strings.Contains(a, "\n") {
		t.Errorf("the 997 to a partner using bare CR: %q; want bare CRs", a)
	}
}
