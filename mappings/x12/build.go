package x12

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// BuildOptions are the envelope of an interchange Build writes. Every field
// is optional: an empty one is taken from the document ("isa", "gs",
// "separators", a transaction's "control"), then from the default.
type BuildOptions struct {
	Sender, SenderQualifier     string // ISA06, ISA05 (qualifier default "ZZ"); a sender is required
	Receiver, ReceiverQualifier string // ISA08, ISA07 (qualifier default "ZZ"); a receiver is required
	GroupSender, GroupReceiver  string // GS02, GS03; default the ISA sender and receiver
	Version                     string // ISA12, default "00401"
	GroupVersion                string // GS08, default ISA12 + "0" ("00401" gives "004010")
	Usage                       string // ISA15: "P" production (default) or "T" test
	AckRequested                bool   // ISA14 "1"

	// Control numbers: ISA13 (also IEA02), GS06 of the first group (the
	// next groups count up) and ST02 of the first transaction (the next
	// transactions count up). When zero, the document's are used, then
	// NextControl, then 1.
	InterchangeControl, GroupControl, TransactionControl int64
	// NextControl returns the next control number of a kind: "ISA", "GS"
	// or "ST", e.g. from a counter kept per trading partner in a store.
	NextControl func(kind string) (int64, error)

	Time       time.Time  // date and time written; zero: the document's, then now
	Separators Separators // zero: the document's, then DefaultSeparators; no Repetition before version 00402
}

// functionalIDs give GS01 for a transaction set.
var functionalIDs = map[string]string{
	"810": "IN", "812": "CD", "820": "RA", "824": "AG", "832": "SC", "846": "IB", "850": "PO", "852": "PD",
	"855": "PR", "856": "SH", "860": "PC", "864": "TX", "870": "PS", "875": "OG", "880": "GP", "940": "OW",
	"943": "AR", "944": "RE", "945": "SW", "947": "AW", "997": "FA", "999": "FA", "180": "AN", "204": "SM",
	"210": "IM", "214": "QM", "990": "GF", "753": "GM", "754": "RG",
}

// writer writes segments with the separators of an interchange and tallies
// what the defaults of the friendly forms need.
type writer struct {
	buf    bytes.Buffer
	sep    Separators
	now    time.Time
	n      int            // segments since ST
	tally  map[string]int // segments since ST by ID
	qty    *big.Rat       // sum of PO102, nil when one is not a whole number
	badQty bool
}

func (w *writer) defaultValue(d string) string {
	switch d {
	case "$date":
		return w.now.Format("20060102")
	case "$time":
		return w.now.Format("1504")
	}
	return d
}

// seg writes a segment of plain elements, refusing separators inside them;
// trailing empty elements are dropped.
func (w *writer) seg(path, id string, els []string) error {
	for len(els) > 0 && els[len(els)-1] == "" {
		els = els[:len(els)-1]
	}
	for i, e := range els {
		if err := w.check(e); err != nil {
			return fmt.Errorf("%s: %s%02d %q %v", orTop(path), id, i+1, e, err)
		}
	}
	if id == "PO1" {
		var q *big.Rat
		if len(els) > 1 {
			q, _ = decimalOf(els[1])
		}
		switch {
		case q == nil || !q.IsInt() || w.badQty:
			w.badQty, w.qty = true, nil
		case w.qty == nil:
			w.qty = q
		default:
			w.qty.Add(w.qty, q)
		}
	}
	w.raw(id, els)
	return nil
}

// check refuses text holding one of the separators.
func (w *writer) check(s string) error {
	for _, c := range []struct {
		b    byte
		name string
	}{{w.sep.Element, "element separator"}, {w.sep.Component, "component separator"}, {w.sep.Repetition, "repetition separator"}, {w.sep.Segment, "segment terminator"}} {
		if c.b != 0 && strings.IndexByte(s, c.b) >= 0 {
			return fmt.Errorf("contains the %s %s", c.name, quoteSep(c.b))
		}
	}
	return nil
}

// envelope writes an envelope segment, whose elements may hold anything but
// the element separator and the segment terminator.
func (w *writer) envelope(path, id string, els []string) error {
	for len(els) > 0 && els[len(els)-1] == "" {
		els = els[:len(els)-1]
	}
	for i, e := range els {
		if strings.IndexByte(e, w.sep.Element) >= 0 || strings.IndexByte(e, w.sep.Segment) >= 0 {
			return fmt.Errorf("%s: %s%02d %q contains a separator", orTop(path), id, i+1, e)
		}
	}
	w.raw(id, els)
	return nil
}

func (w *writer) raw(id string, els []string) {
	w.buf.WriteString(id)
	for _, e := range els {
		w.buf.WriteByte(w.sep.Element)
		w.buf.WriteString(e)
	}
	w.buf.WriteByte(w.sep.Segment)
	w.buf.WriteString(w.sep.Suffix)
	w.n++
	w.tally[id]++
}

// Build writes an X12 interchange from a document, which is one of:
//   - a whole interchange as (*Interchange).JSON gives it ("isa",
//     "separators", "groups" with "gs" and "transactions");
//   - {"transactions": [...]}: the transactions, grouped by functional id;
//   - one transaction.
//
// A transaction is {"set": "850", "segments": [...]} (segments as in the JSON
// view, without ST and SE), or a friendly form: {"purchase_order": {...}},
// {"ship_notice": {...}} or {"invoice": {...}}; "segments" wins when both
// are there. SE01, GE01 and IEA01 are counted; unknown keys are errors.
func Build(doc map[string]any, opts BuildOptions) ([]byte, error) {
	d, err := newObj("", doc)
	if err != nil {
		return nil, err
	}
	isa, err := d.sub("isa")
	if err != nil {
		return nil, err
	}
	w := &writer{tally: map[string]int{}, now: opts.Time}
	if w.now.IsZero() {
		w.now = time.Now().UTC()
	}
	version := "00401"
	if v := opts.GroupVersion; len(v) >= 5 && isDigits(v[:5]) {
		version = v[:5]
	}
	version = pick(opts.Version, isa, "version", version)
	if w.sep, err = separators(opts, d, version); err != nil {
		return nil, err
	}
	groups, err := groupsOf(d)
	if err != nil {
		return nil, err
	}
	if err := d.check(); err != nil {
		return nil, err
	}

	// ISA
	ctl, err := controlNumber(opts.InterchangeControl, isa, "control", opts.NextControl, "ISA", 1, 9)
	if err != nil {
		return nil, err
	}
	sender, receiver := pick(opts.Sender, isa, "sender", ""), pick(opts.Receiver, isa, "receiver", "")
	if sender == "" || receiver == "" {
		return nil, errors.New("the interchange needs a sender and a receiver (ISA06, ISA08)")
	}
	rep := pick("", isa, "standards_id", "U") // ISA11 without repetition separator
	if w.sep.Repetition != 0 {
		rep = sepStr(w.sep.Repetition)
	}
	ack := pick("", isa, "ack_requested", "0")
	if opts.AckRequested {
		ack = "1"
	}
	vals := []string{pick("", isa, "auth_qualifier", "00"), pick("", isa, "auth", ""),
		pick("", isa, "security_qualifier", "00"), pick("", isa, "security", ""),
		pick(opts.SenderQualifier, isa, "sender_qualifier", "ZZ"), sender,
		pick(opts.ReceiverQualifier, isa, "receiver_qualifier", "ZZ"), receiver,
		pickTime(opts.Time, isa, "date", w.now.Format("060102")), pickTime(opts.Time, isa, "time", w.now.Format("1504")),
		rep, version, ctl, ack, pick(opts.Usage, isa, "usage", "P"), sepStr(w.sep.Component)}
	for i, v := range vals {
		name := isaNames[i]
		if len(v) > isaWidths[i] {
			return nil, fmt.Errorf("isa.%s: ISA%02d %q is longer than %d characters", name, i+1, v, isaWidths[i])
		}
		if i < 15 && (strings.IndexByte(v, w.sep.Element) >= 0 || strings.IndexByte(v, w.sep.Segment) >= 0) {
			return nil, fmt.Errorf("isa.%s: ISA%02d %q contains a separator", name, i+1, v)
		}
		vals[i] = v + strings.Repeat(" ", isaWidths[i]-len(v))
	}
	if err := isa.check(); err != nil {
		return nil, err
	}
	w.raw("ISA", vals)

	st := 0 // transactions so far
	for gi, g := range groups {
		if err := w.group(g, gi, &st, opts, sender, receiver, version); err != nil {
			return nil, err
		}
	}
	w.raw("IEA", []string{strconv.Itoa(len(groups)), ctl})
	return w.buf.Bytes(), nil
}

// group is a functional group to write: its "gs" and its transactions.
type group struct {
	gs  *obj
	fid string
	txs []*obj
}

// groupsOf reads the groups of a document in one of the three shapes.
func groupsOf(d *obj) ([]*group, error) {
	if d.has("groups") {
		gl, err := d.list("groups")
		if err != nil {
			return nil, err
		}
		var out []*group
		for _, g := range gl {
			gs, err := g.sub("gs")
			if err != nil {
				return nil, err
			}
			txs, err := g.list("transactions")
			if err != nil {
				return nil, err
			}
			if err := g.check(); err != nil {
				return nil, err
			}
			out = append(out, &group{gs: gs, fid: pick("", gs, "functional_id", ""), txs: txs})
		}
		return out, nil
	}
	d.val("groups")
	var txs []*obj
	if d.has("transactions") {
		var err error
		if txs, err = d.list("transactions"); err != nil {
			return nil, err
		}
	} else {
		// The document is one transaction, beside "isa" and "separators".
		t := &obj{m: map[string]any{}, used: map[string]bool{}}
		for k, v := range d.m {
			if k != "isa" && k != "separators" {
				d.used[k] = true
				t.m[k] = v
			}
		}
		txs = []*obj{t}
	}
	var out []*group
	byFID := map[string]*group{}
	for _, t := range txs {
		set, _ := setOf(t)
		fid := functionalIDs[set]
		if byFID[fid] == nil {
			byFID[fid] = &group{gs: &obj{used: map[string]bool{}}, fid: fid}
			out = append(out, byFID[fid])
		}
		byFID[fid].txs = append(byFID[fid].txs, t)
	}
	return out, nil
}

// setOf returns the set of a transaction and its friendly form, if any.
func setOf(t *obj) (string, *form) {
	set, _ := toText(t.m["set"])
	for _, f := range forms {
		if t.m[f.key] != nil && (set == "" || set == f.set) {
			return f.set, f
		}
	}
	return set, nil
}

func (w *writer) group(g *group, gi int, st *int, opts BuildOptions, sender, receiver, version string) error {
	path := fmt.Sprintf("groups[%d]", gi)
	if g.gs.path == "" {
		g.gs.path = path + ".gs"
	}
	var firstSet string
	if len(g.txs) > 0 {
		firstSet, _ = setOf(g.txs[0])
	}
	fid := g.fid
	if fid == "" {
		fid = functionalIDs[firstSet]
	}
	if fid == "" && firstSet != "" {
		return fmt.Errorf("%s: no functional id (GS01) known for set %q: give gs.functional_id", path, firstSet)
	}
	g.gs.val("functional_id")
	ctl, err := controlNumber(nonZero(opts.GroupControl, int64(gi)), g.gs, "control", opts.NextControl, "GS", int64(gi+1), 1)
	if err != nil {
		return err
	}
	gsVersion := pick(opts.GroupVersion, g.gs, "version", version+"0")
	els := []string{fid, pick(opts.GroupSender, g.gs, "sender", sender), pick(opts.GroupReceiver, g.gs, "receiver", receiver),
		pickTime(opts.Time, g.gs, "date", w.now.Format("20060102")), pickTime(opts.Time, g.gs, "time", w.now.Format("1504")),
		ctl, pick("", g.gs, "agency", "X"), gsVersion}
	if err := g.gs.check(); err != nil {
		return err
	}
	if err := w.envelope(path+".gs", "GS", els); err != nil {
		return err
	}
	for _, t := range g.txs {
		if err := w.transaction(t, *st, opts); err != nil {
			return err
		}
		*st++
	}
	w.raw("GE", []string{strconv.Itoa(len(g.txs)), ctl})
	return nil
}

func (w *writer) transaction(t *obj, k int, opts BuildOptions) error {
	set, f := setOf(t)
	t.val("set")
	for _, o := range forms {
		if o != f && t.m[o.key] != nil {
			return fmt.Errorf("%s: %s is the friendly form of set %s, not %s", orTop(t.path), o.key, o.set, set)
		}
	}
	if set == "" {
		return fmt.Errorf("%s: a transaction needs a set (ST01) or one of purchase_order, ship_notice, invoice", orTop(t.path))
	}
	ctl, err := controlNumber(nonZero(opts.TransactionControl, int64(k)), t, "control", opts.NextControl, "ST", int64(k+1), 4)
	if err != nil {
		return err
	}
	conv, err := t.text("convention", kText)
	if err != nil {
		return err
	}
	w.n, w.tally, w.qty, w.badQty = 0, map[string]int{}, nil, false
	if err := w.envelope(t.path, "ST", []string{set, ctl, conv}); err != nil {
		return err
	}
	switch {
	case t.has("segments"):
		if f != nil {
			t.val(f.key)
		}
		items, err := t.list("segments")
		if err != nil {
			return err
		}
		if err := w.rawSegments(items); err != nil {
			return err
		}
	case f != nil:
		t.val("segments")
		fo, err := t.sub(f.key)
		if err != nil {
			return err
		}
		if err := writeParts(w, fo, f.parts); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: set %s needs segments (there is no friendly form for it)", orTop(t.path), set)
	}
	if err := t.check(); err != nil {
		return err
	}
	w.raw("SE", []string{strconv.Itoa(w.n + 1), ctl})
	return nil
}

// rawSegments writes segments and loops as the JSON view shows them.
func (w *writer) rawSegments(items []*obj) error {
	for _, it := range items {
		if it.has("loop") {
			it.val("loop")
			sub, err := it.list("segments")
			if err != nil {
				return err
			}
			if err := w.rawSegments(sub); err != nil {
				return err
			}
			if err := it.check(); err != nil {
				return err
			}
			continue
		}
		id, _ := it.text("id", kText)
		if !validID(id) {
			return fmt.Errorf("%s: %q is not a segment ID", it.path, id)
		}
		switch id {
		case "ISA", "IEA", "GS", "GE", "ST", "SE":
			return fmt.Errorf("%s: %s is written by Build, leave it out", it.path, id)
		}
		l, ok := jsonv.AsList(it.val("elements"))
		if !ok && it.m["elements"] != nil {
			return fmt.Errorf("%s: elements must be a list", it.path)
		}
		els := make([]string, len(l))
		for i, e := range l {
			var err error
			if els[i], err = w.element(e); err != nil {
				return fmt.Errorf("%s: %s%02d: %v", it.path, id, i+1, err)
			}
		}
		if err := it.check(); err != nil {
			return err
		}
		w.raw(id, els)
	}
	return nil
}

// element joins a composite (a list) or repetitions ({"repeats": [...]}).
func (w *writer) element(v any) (string, error) {
	if m, ok := asMap(v); ok {
		reps, ok := jsonv.AsList(m["repeats"])
		if !ok || len(m) != 1 {
			return "", errors.New(`an object element must be {"repeats": [...]}`)
		}
		if w.sep.Repetition == 0 {
			return "", errors.New("repeats need a repetition separator (ISA11, version 00402 or later)")
		}
		parts := make([]string, len(reps))
		for i, r := range reps {
			var err error
			if parts[i], err = w.component(r); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, sepStr(w.sep.Repetition)), nil
	}
	return w.component(v)
}

func (w *writer) component(v any) (string, error) {
	l, ok := jsonv.AsList(v)
	if !ok {
		l = []any{v}
	} else if len(l) < 2 {
		return "", errors.New("a composite needs at least 2 components")
	}
	parts := make([]string, len(l))
	for i, x := range l {
		s, ok := toText(x)
		if !ok {
			return "", fmt.Errorf("%s is not text", describe(x))
		}
		if err := w.check(s); err != nil {
			return "", fmt.Errorf("%q %v", s, err)
		}
		parts[i] = s
	}
	return strings.Join(parts, sepStr(w.sep.Component)), nil
}

// separators resolves the separators: options, then document, then
// defaults (no repetition separator before version 00402).
func separators(opts BuildOptions, d *obj, version string) (Separators, error) {
	s := opts.Separators
	d.val("separators")
	if s.Element != 0 && version < "00402" {
		s.Repetition = 0
	}
	if s.Element == 0 {
		s = DefaultSeparators
		if version < "00402" {
			s.Repetition = 0
		}
		if d.has("separators") {
			ds, err := d.sub("separators")
			if err != nil {
				return s, err
			}
			for _, f := range []struct {
				k string
				p *byte
			}{{"element", &s.Element}, {"component", &s.Component}, {"segment", &s.Segment}, {"repetition", &s.Repetition}} {
				v, _ := ds.text(f.k, kText)
				switch {
				case len(v) == 1:
					*f.p = v[0]
				case v == "" && f.k == "repetition":
					*f.p = 0
				case v != "":
					return s, fmt.Errorf("separators.%s must be one character, got %q", f.k, v)
				}
			}
			if err := ds.check(); err != nil {
				return s, err
			}
		}
		if s.Segment == '\r' || s.Segment == '\n' {
			s.Suffix = "" // a line-break terminator is the line break: no default one after it
		}
	}
	// A line feed after a line-feed terminator would be a blank line; a
	// line feed after a CR makes the CR LF a Windows partner expects, and
	// a suffix the caller chose is theirs.
	if s.Segment == '\n' && s.Suffix == "\n" {
		s.Suffix = ""
	}
	if err := checkSeparators(s); err != nil {
		return s, fmt.Errorf("separators: %s", err.msg)
	}
	if isAlnum(s.Element) || s.Element == ' ' || s.Element == '\n' || s.Element == '\r' {
		return s, fmt.Errorf("separators: element separator %s must not be a letter, digit or blank", quoteSep(s.Element))
	}
	if s.Repetition != 0 && (isAlnum(s.Repetition) || s.Repetition == ' ') {
		return s, fmt.Errorf("separators: repetition separator %s must not be a letter, digit or blank", quoteSep(s.Repetition))
	}
	return s, nil
}

// pick returns the option when given, else the document's text when it has
// the key (even empty: a parsed document is written back as it was read),
// else def.
func pick(opt string, o *obj, key, def string) string {
	if opt != "" {
		return opt
	}
	if o != nil && o.val(key) != nil {
		if v, ok := toText(o.m[key]); ok {
			return v
		}
	}
	return def
}

// pickTime is pick for a date or time: the document's unless Time is set.
func pickTime(t time.Time, o *obj, key, now string) string {
	if !t.IsZero() {
		o.val(key)
		return now
	}
	return pick("", o, key, now)
}

func nonZero(base, offset int64) int64 {
	if base == 0 {
		return 0
	}
	return base + offset
}

// controlNumber picks a control number: the option, the document's, the
// counter, then def; numbers are padded with zeros to width. ISA13 and GS06
// are digits; a transaction's own control number (ST02) is kept as it is.
func controlNumber(opt int64, o *obj, key string, next func(string) (int64, error), kind string, def int64, width int) (string, error) {
	if v, _ := toText(o.val(key)); v != "" && opt == 0 {
		switch {
		case kind == "ST":
			return v, nil
		case !isDigits(v) || len(v) > 9:
			return "", fmt.Errorf("%s: control number %q must be 1 to 9 digits", join(o.path, key), v)
		case kind == "ISA":
			return strings.Repeat("0", 9-len(v)) + v, nil
		}
		return v, nil
	}
	n := opt
	if n == 0 && next != nil {
		var err error
		if n, err = next(kind); err != nil {
			return "", fmt.Errorf("%s control number: %w", kind, err)
		}
	}
	if n == 0 {
		n = def
	}
	if n < 1 || n > 999999999 {
		return "", fmt.Errorf("%s control number %d is not between 1 and 999999999", kind, n)
	}
	return fmt.Sprintf("%0*d", width, n), nil
}
