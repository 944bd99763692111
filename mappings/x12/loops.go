package x12

import "strings"

// loopDef says which segments belong to a loop (besides the one starting
// it) and which loops nest inside it.
type loopDef struct {
	members map[string]bool
	loops   map[string]*loopDef
}

// def builds a loopDef from a space-separated member list and nested loops
// given as start segment, loopDef pairs.
func def(members string, loops ...any) *loopDef {
	d := &loopDef{members: map[string]bool{}, loops: map[string]*loopDef{}}
	for _, m := range strings.Fields(members) {
		d.members[m] = true
	}
	for i := 0; i < len(loops); i += 2 {
		d.loops[loops[i].(string)] = loops[i+1].(*loopDef)
	}
	return d
}

// The loop tables of the transaction sets with a friendly form (version
// 004010, generous where versions differ). A segment belongs to the
// innermost open loop that lists it or starts a loop with it; a segment no
// open loop knows stays where it is.
var (
	flatLoop  = def("")
	partyLoop = def("N2 N3 N4 NX2 REF PER SI FOB DMG DTM TD1 TD5 TD3 TD4 PKG")
	hlLoop    = def("LIN SN1 SLN PRF PO4 PID MEA PWK PKG TD1 TD5 TD3 TD4 TSD REF PER MAN DTM FOB PAL SDQ ETD CUR SAC GF YNQ TXI",
		"N1", def("N2 N3 N4 REF PER FOB"),
		"CLD", def("REF DTM"))
	loopTable = map[string]*loopDef{
		"850": def("BEG CUR REF PER TAX FOB CTP PAM CSH TC2 SAC ITD DIS INC DTM LDT LIN SI PID MEA PWK PKG TD1 TD5 TD3 TD4 MAN PCT CTB TXI AMT",
			"N9", def("DTM MSG"),
			"N1", partyLoop,
			"PO1", def("LIN SI CUR CN1 PO3 CTP PAM MEA PID PWK PO4 REF PER IT8 CSH ITD DIS INC TAX FOB SDQ IT3 DTM TC2 TD1 TD5 TD3 TD4 PCT MAN MSG SPI TXI CTB QTY SAC AMT",
				"N9", def("DTM MSG"),
				"N1", partyLoop,
				"SCH", def("TD1 TD5 TD3 TD4 REF"),
				"SLN", def("MSG SI PID PO3 TC2 ADV DTM CTP PAM PO4 TAX")),
			"CTT", def("AMT")),
		"856": def("BSN DTM CTT", "HL", hlLoop),
		"810": def("BIG NTE CUR REF YNQ PER ITD DTM FOB PID MEA PWK PKG L7 BAL INC PAM CRS TDS TXI CAD AMT ISS CTT",
			"N1", partyLoop,
			"IT1", def("CRC QTY CUR IT3 TXI CTP PAM MEA PID PWK PKG PO4 ITD REF YNQ PER IT8 DTM CAD L7 SR",
				"SAC", def("TXI"),
				"SLN", def("DTM REF PID SAC TC2 TXI"),
				"N1", partyLoop),
			"SAC", def("TXI")),
	}
)

// node is one entry of a transaction's tree: a segment, or a loop whose
// first entry is the segment that starts it.
type node struct {
	seg   *Segment
	loop  string // start segment ID when the node is a loop
	items []*node
}

// tree nests the body of t (without ST and SE) by its set's loop table;
// unknown sets stay flat. HL loops nest under the HL their HL02 names, as
// long as that keeps the segments in document order.
func tree(t *Transaction) *node {
	root := &node{loop: t.Set}
	d := loopTable[t.Set]
	if d == nil {
		d = flatLoop
	}
	type frame struct {
		def *loopDef
		n   *node
	}
	stack := []frame{{d, root}}
	body := t.Segments
	if len(body) >= 2 {
		body = body[1 : len(body)-1]
	}
	for i := range body {
		s := &body[i]
		top := len(stack) - 1
		at := -1
		for j := top; j >= 0 && at < 0; j-- {
			if stack[j].def.loops[s.ID] != nil || stack[j].def.members[s.ID] {
				at = j
			}
		}
		sub := (*loopDef)(nil)
		if at >= 0 {
			sub = stack[at].def.loops[s.ID]
		}
		if sub == hlLoop {
			// Nest under the open HL that HL02 names, else beside the others.
			for j := top; j > at; j-- {
				if p := stack[j].n; p.loop == "HL" && s.Element(2) != "" && p.items[0].seg.Element(1) == s.Element(2) {
					at = j
					break
				}
			}
		}
		if at < 0 {
			stack[top].n.items = append(stack[top].n.items, &node{seg: s})
			continue
		}
		stack = stack[:at+1]
		f := stack[at]
		if sub == nil {
			f.n.items = append(f.n.items, &node{seg: s})
			continue
		}
		n := &node{loop: s.ID, items: []*node{{seg: s}}}
		f.n.items = append(f.n.items, n)
		stack = append(stack, frame{sub, n})
	}
	return root
}

// first returns the first segment id directly in n, or starting a loop
// directly in n.
func (n *node) first(id string) *Segment {
	for _, it := range n.items {
		if it.seg != nil && it.seg.ID == id {
			return it.seg
		}
		if it.loop == id {
			return it.items[0].seg
		}
	}
	return nil
}

// segs returns the segments id directly in n.
func (n *node) segs(id string) []*Segment {
	var out []*Segment
	for _, it := range n.items {
		if it.seg != nil && it.seg.ID == id {
			out = append(out, it.seg)
		}
	}
	return out
}

// loops returns the loops started by id directly in n.
func (n *node) loops(id string) []*node {
	var out []*node
	for _, it := range n.items {
		if it.loop == id {
			out = append(out, it)
		}
	}
	return out
}
