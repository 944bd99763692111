package x12

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// part reads one piece of a friendly object from a loop node and writes it
// back as segments.
type part interface {
	read(n *node, m map[string]any)
	write(w *writer, o *obj) error
}

// inline puts the fields of the first s.id segment directly in the object.
type inline struct {
	s      *spec
	always bool // write the segment even when the object has none of its keys
}

func (p inline) read(n *node, m map[string]any) {
	if seg := n.first(p.s.id); seg != nil {
		p.s.read(seg, m)
	}
}

func (p inline) write(w *writer, o *obj) error { return p.s.write(w, o, p.always) }

// one is an object under key, from the first s.id segment.
type one struct {
	key    string
	s      *spec
	always bool
}

func (p one) read(n *node, m map[string]any) {
	if v := p.s.obj(n.first(p.s.id)); len(v) > 0 {
		m[p.key] = v
	}
}

func (p one) write(w *writer, o *obj) error {
	if !o.has(p.key) && !p.always {
		o.val(p.key)
		return nil
	}
	sub, err := o.sub(p.key)
	if err != nil {
		return err
	}
	if err := p.s.write(w, sub, p.always); err != nil {
		return err
	}
	return sub.check()
}

// many is a list under key, one object per s.id segment.
type many struct {
	key string
	s   *spec
}

func (p many) read(n *node, m map[string]any) {
	var l []any
	for _, seg := range n.segs(p.s.id) {
		l = append(l, p.s.obj(seg))
	}
	if l != nil {
		m[p.key] = l
	}
}

func (p many) write(w *writer, o *obj) error {
	items, err := o.list(p.key)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := p.s.write(w, it, true); err != nil {
			return err
		}
		if err := it.check(); err != nil {
			return err
		}
	}
	return nil
}

// loops is a list under key, one object per loop started by id, read and
// written by parts (the first of which writes the starting segment).
type loops struct {
	key, id string
	parts   []part
}

func (p loops) read(n *node, m map[string]any) {
	var l []any
	for _, ln := range n.loops(p.id) {
		lm := map[string]any{}
		for _, q := range p.parts {
			q.read(ln, lm)
		}
		l = append(l, lm)
	}
	if l != nil {
		m[p.key] = l
	}
}

func (p loops) write(w *writer, o *obj) error {
	items, err := o.list(p.key)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := writeParts(w, it, p.parts); err != nil {
			return err
		}
	}
	return nil
}

func writeParts(w *writer, o *obj, parts []part) error {
	for _, q := range parts {
		if err := q.write(w, o); err != nil {
			return err
		}
	}
	return o.check()
}

// custom is a part written as two functions.
type custom struct {
	r func(n *node, m map[string]any)
	w func(w *writer, o *obj) error
}

func (p custom) read(n *node, m map[string]any) { p.r(n, m) }
func (p custom) write(w *writer, o *obj) error  { return p.w(w, o) }

// ids are the product id qualifiers with a friendly name (PO1, IT1, LIN);
// other qualifiers appear as "id_" + qualifier.
func ids(from, max int) *pairs {
	return &pairs{from: from, max: max, prefix: "id_", names: [][2]string{
		{"BP", "buyer_part"}, {"VP", "vendor_part"}, {"UP", "upc"}, {"UK", "gtin"}, {"EN", "ean"}, {"SK", "sku"},
		{"IN", "buyer_item"}, {"VN", "vendor_item"}, {"MG", "manufacturer_part"}, {"VA", "vendor_style"},
		{"CB", "buyer_catalog"}, {"VC", "vendor_catalog"},
	}}
}

var (
	refSpec = sp("REF", "qualifier! value description")
	dtmSpec = sp("DTM", "qualifier! date time time_code")
	perSpec = sp("PER", "function=IC name", &pairs{from: 3, max: 3, prefix: "comm_",
		names: [][2]string{{"TE", "phone"}, {"EM", "email"}, {"FX", "fax"}}})
	fobSpec = sp("FOB", "payment! location_qualifier location")
	itdSpec = sp("ITD", "type basis discount_percent discount_due_date discount_days net_due_date net_days discount_amount:2 deferred_due_date deferred_amount:2 - description day_of_month")
	sacSpec = sp("SAC", "indicator! code agency agency_code amount:2 percent_qualifier percent rate uom qty:n qty2:n method reference option description")
	txiSpec = sp("TXI", "type! amount percent jurisdiction_qualifier jurisdiction exempt")
	td1Spec = sp("TD1", "packaging lading_qty:n commodity_qualifier commodity lading_description weight_qualifier weight weight_uom volume volume_uom")
	td5Spec = sp("TD5", "routing_sequence id_qualifier id method routing status location_qualifier location - - - service_level")
	td3Spec = sp("TD3", "code initial number")
	po4Spec = sp("PO4", "units:n size:n uom packaging weight_qualifier gross_weight gross_weight_uom")
	manSpec = sp("MAN", "qualifier! number!")
	cttSpec = sp("CTT", "lines:n! hash_total weight weight_uom volume volume_uom description")

	parties = loops{"parties", "N1", []part{
		inline{sp("N1", "code! name id_qualifier id"), true},
		inline{sp("N2", "name2 name3"), false},
		address,
		inline{sp("N4", "city state postal_code country"), false},
		many{"refs", refSpec},
		many{"contacts", perSpec},
	}}
)

// description is the text of the first PID with PID05 (free-form "F").
var description = custom{
	r: func(n *node, m map[string]any) {
		for _, s := range n.segs("PID") {
			if v := s.Element(5); v != "" {
				m["description"] = v
				return
			}
		}
	},
	w: func(w *writer, o *obj) error {
		v, err := o.text("description", kText)
		if err != nil || v == "" {
			return err
		}
		return w.seg(o.path, "PID", []string{"F", "", "", "", v})
	},
}

// address is the list of N3 lines.
var address = custom{
	r: func(n *node, m map[string]any) {
		var l []any
		for _, s := range n.segs("N3") {
			for _, v := range s.Elements[:min(2, len(s.Elements))] {
				if v != "" {
					l = append(l, v)
				}
			}
		}
		if l != nil {
			m["address"] = l
		}
	},
	w: func(w *writer, o *obj) error {
		v := o.val("address")
		l, ok := jsonv.AsList(v)
		if !ok {
			l = []any{v}
		}
		var lines []string
		for i, x := range l {
			s, ok := toText(x)
			if !ok {
				return fmt.Errorf("%s: address[%d] must be text, got %s", o.path, i, describe(x))
			}
			if s != "" {
				lines = append(lines, s)
			}
		}
		for i := 0; i < len(lines); i += 2 {
			if err := w.seg(o.path, "N3", lines[i:min(i+2, len(lines))]); err != nil {
				return err
			}
		}
		return nil
	},
}

// marks are the MAN segments: "sscc" for the GM (SSCC-18) label, "marks"
// for any other.
var marks = custom{
	r: func(n *node, m map[string]any) {
		var l []any
		for _, s := range n.segs("MAN") {
			if s.Element(1) == "GM" && m["sscc"] == nil {
				m["sscc"] = s.Element(2)
				continue
			}
			l = append(l, manSpec.obj(s))
		}
		if l != nil {
			m["marks"] = l
		}
	},
	w: func(w *writer, o *obj) error {
		v, err := o.text("sscc", kText)
		if err != nil {
			return err
		}
		if v != "" {
			if err := w.seg(o.path, "MAN", []string{"GM", v}); err != nil {
				return err
			}
		}
		return many{"marks", manSpec}.write(w, o)
	},
}

// currency is CUR02; CUR01 is the buyer (850) or seller (810).
func currency(entity string) custom {
	return custom{
		r: func(n *node, m map[string]any) {
			if s := n.first("CUR"); s != nil && s.Element(2) != "" {
				m["currency"] = s.Element(2)
			}
		},
		w: func(w *writer, o *obj) error {
			v, err := o.text("currency", kText)
			if err != nil || v == "" {
				return err
			}
			return w.seg(o.path, "CUR", []string{entity, v})
		},
	}
}

// ctt is the transaction totals; written from the tally when not given:
// the number of PO1, IT1 or HL segments (and for 850 the hash total of the
// quantities).
func ctt(counted string) custom {
	return custom{
		r: one{"ctt", cttSpec, false}.read,
		w: func(w *writer, o *obj) error {
			if o.has("ctt") {
				return one{"ctt", cttSpec, false}.write(w, o)
			}
			o.val("ctt")
			els := []string{fmt.Sprint(w.tally[counted])}
			if counted == "PO1" && w.qty != nil && w.tally[counted] > 0 {
				els = append(els, w.qty.FloatString(0))
			}
			return w.seg(o.path, "CTT", els)
		},
	}
}

// total is the 810 TDS01; when not given it is computed: the sum of
// quantity × price of the lines plus charges less allowances (SAC), rounded
// half up to cents.
var total = custom{
	r: func(n *node, m map[string]any) {
		if s := n.first("TDS"); s != nil && s.Element(1) != "" {
			m["total"] = fromN2(s.Element(1))
		}
	},
	w: func(w *writer, o *obj) error {
		v, err := o.text("total", kN2)
		if err != nil {
			return err
		}
		if v == "" {
			sum, err := invoiceTotal(o)
			if err != nil {
				return fmt.Errorf("%s: total is missing and cannot be computed: %w", o.path, err)
			}
			if v, err = toN2(sum.FloatString(2)); err != nil {
				return err
			}
		}
		return w.seg(o.path, "TDS", []string{v})
	},
}

func invoiceTotal(o *obj) (*big.Rat, error) {
	sum := new(big.Rat)
	charges := func(v any, path string) error {
		l, _ := jsonv.AsList(v)
		for i, c := range l {
			m, _ := asMap(c)
			a, ok := decimalOf(m["amount"])
			if !ok {
				continue
			}
			switch m["indicator"] {
			case "A":
				a.Neg(a)
			case "C":
			default:
				return fmt.Errorf("%s.charges[%d].indicator must be \"A\" (allowance) or \"C\" (charge)", path, i)
			}
			sum.Add(sum, a)
		}
		return nil
	}
	lines, _ := jsonv.AsList(o.m["lines"])
	for i, x := range lines {
		m, _ := asMap(x)
		q, ok1 := decimalOf(m["qty"])
		p, ok2 := decimalOf(m["price"])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("lines[%d] needs a numeric qty and price", i)
		}
		sum.Add(sum, q.Mul(q, p))
		if err := charges(m["charges"], fmt.Sprintf("lines[%d]", i)); err != nil {
			return nil, err
		}
	}
	return sum, charges(o.m["charges"], "invoice")
}

// decimalOf reads a number or decimal text exactly.
func decimalOf(v any) (*big.Rat, bool) {
	s, ok := toText(v)
	if !ok || !isDecimal(s) {
		return nil, false
	}
	return new(big.Rat).SetString(s)
}

// levels name the HL levels (HL03) in the friendly 856; other codes appear
// as "hl_" + code.
var levels = [][2]string{{"S", "shipments"}, {"O", "orders"}, {"T", "tares"}, {"P", "packs"}, {"I", "items"}}

func levelKey(code string) string {
	for _, l := range levels {
		if l[0] == code {
			return l[1]
		}
	}
	return "hl_" + code
}

var hlParts = []part{
	inline{sp("LIN", "line", ids(2, 15)), false},
	inline{sp("SN1", "assigned_id qty:n uom shipped_to_date:n ordered_qty:n ordered_uom - status"), false},
	inline{sp("PRF", "po_number! po_release po_change po_date - po_contract"), false},
	one{"pack", po4Spec, false},
	description,
	one{"packaging", td1Spec, false},
	one{"carrier", td5Spec, false},
	one{"equipment", td3Spec, false},
	many{"refs", refSpec},
	many{"contacts", perSpec},
	marks,
	many{"dates", dtmSpec},
	one{"fob", fobSpec, false},
	parties,
}

// hlTree is the 856 hierarchy: "shipment" holds the single shipment level,
// each level holds its children by level ("orders", "packs", "items").
var hlTree = custom{
	r: func(n *node, m map[string]any) {
		roots := n.loops("HL")
		if len(roots) == 1 && roots[0].items[0].seg.Element(3) == "S" {
			m["shipment"] = hlRead(roots[0])
			return
		}
		hlChildren(roots, m)
	},
	w: func(w *writer, o *obj) error {
		if o.has("shipment") {
			sub, err := o.sub("shipment")
			if err != nil {
				return err
			}
			if err := hlWrite(w, sub, "S", ""); err != nil {
				return err
			}
		} else {
			o.val("shipment")
		}
		return hlWriteChildren(w, o, "")
	},
}

func hlRead(n *node) map[string]any {
	m := map[string]any{}
	for _, p := range hlParts {
		p.read(n, m)
	}
	hlChildren(n.loops("HL"), m)
	return m
}

func hlChildren(nodes []*node, m map[string]any) {
	for _, c := range nodes {
		k := levelKey(c.items[0].seg.Element(3))
		l, _ := m[k].([]any)
		m[k] = append(l, hlRead(c))
	}
}

// hlKeys are the level keys of o in writing order.
func hlKeys(o *obj) [][2]string {
	ks := append([][2]string(nil), levels...)
	for _, k := range o.keysWithPrefix("hl_") {
		ks = append(ks, [2]string{strings.TrimPrefix(k, "hl_"), k})
	}
	return ks
}

func hlWrite(w *writer, o *obj, level, parent string) error {
	id := fmt.Sprint(w.tally["HL"] + 1)
	child := "0"
	for _, k := range hlKeys(o) {
		if l, _ := jsonv.AsList(o.m[k[1]]); len(l) > 0 {
			child = "1"
		}
	}
	if err := w.seg(o.path, "HL", []string{id, parent, level, child}); err != nil {
		return err
	}
	for _, p := range hlParts {
		if err := p.write(w, o); err != nil {
			return err
		}
	}
	if err := hlWriteChildren(w, o, id); err != nil {
		return err
	}
	return o.check()
}

func hlWriteChildren(w *writer, o *obj, parent string) error {
	for _, k := range hlKeys(o) {
		items, err := o.list(k[1])
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := hlWrite(w, it, k[0], parent); err != nil {
				return err
			}
		}
	}
	return nil
}

// form is the friendly form of a transaction set.
type form struct {
	set, key string
	parts    []part
}

var forms = map[string]*form{}

func init() {
	line := func(id string) part {
		return inline{sp(id, "line qty:n uom price price_basis", ids(6, 10)), true}
	}
	for _, f := range []*form{
		{set: "850", key: "purchase_order", parts: []part{
			one{"beg", sp("BEG", "purpose=00 type=SA po_number! release date=$date contract"), true},
			currency("BY"),
			many{"refs", refSpec},
			many{"contacts", perSpec},
			one{"fob", fobSpec, false},
			many{"charges", sacSpec},
			one{"terms", itdSpec, false},
			many{"dates", dtmSpec},
			one{"carrier", td5Spec, false},
			parties,
			loops{"lines", "PO1", []part{line("PO1"), description, one{"pack", po4Spec, false},
				many{"refs", refSpec}, many{"contacts", perSpec}, many{"charges", sacSpec}, many{"dates", dtmSpec},
				many{"taxes", txiSpec}, parties}},
			ctt("PO1"),
		}},
		{set: "856", key: "ship_notice", parts: []part{
			one{"bsn", sp("BSN", "purpose=00 shipment_id! date=$date time=$time structure=0001"), true},
			many{"dates", dtmSpec},
			hlTree,
			ctt("HL"),
		}},
		{set: "810", key: "invoice", parts: []part{
			one{"big", sp("BIG", "date=$date invoice_number! po_date po_number release change type"), true},
			many{"notes", sp("NTE", "code text!")},
			currency("SE"),
			many{"refs", refSpec},
			many{"contacts", perSpec},
			parties,
			one{"terms", itdSpec, false},
			many{"dates", dtmSpec},
			one{"fob", fobSpec, false},
			loops{"lines", "IT1", []part{line("IT1"), many{"taxes", txiSpec}, description, one{"pack", po4Spec, false},
				many{"refs", refSpec}, many{"dates", dtmSpec}, loops{"charges", "SAC", []part{inline{sacSpec, true}}}, parties}},
			total,
			many{"taxes", txiSpec},
			one{"carrier", sp("CAD", "method equipment_initial equipment_number scac routing status ref_qualifier ref"), false},
			loops{"charges", "SAC", []part{inline{sacSpec, true}}},
			one{"shipment_summary", sp("ISS", "units:n uom weight weight_uom volume volume_uom"), false},
			ctt("IT1"),
		}},
	} {
		forms[f.set] = f
	}
}
