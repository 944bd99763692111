package x12

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// samples are the well-formed interchanges in testdata.
func samples(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.edi")
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func mustParse(t testing.TB, b []byte) *Interchange {
	t.Helper()
	ic, err := ParseBytes(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return ic
}

// TestGolden compares the JSON view of every sample with its golden file;
// go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	for name, b := range samples(t) {
		t.Run(name, func(t *testing.T) {
			got := pretty(mustParse(t, b).JSON(), "") + "\n"
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".edi")+".json")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("JSON view differs from %s (run with -update after checking):\n%s", golden, firstDiff(got, string(want)))
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, a, b)
		}
	}
	return ""
}

// pretty writes v as indented JSON with sorted keys, keeping flat values
// (a segment, a list of scalars) on one line so that golden files read
// one segment per line.
func pretty(v any, indent string) string {
	if flat(v, 0) {
		return compact(v)
	}
	var sb strings.Builder
	in := indent + "  "
	switch v := v.(type) {
	case map[string]any:
		keys := sortedKeys(v)
		sb.WriteString("{\n")
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			fmt.Fprintf(&sb, "%s%s: %s", in, kb, pretty(v[k], in))
			if i < len(keys)-1 {
				sb.WriteByte(',')
			}
			sb.WriteByte('\n')
		}
		sb.WriteString(indent + "}")
	case []any:
		sb.WriteString("[\n")
		for i, x := range v {
			sb.WriteString(in + pretty(x, in))
			if i < len(v)-1 {
				sb.WriteByte(',')
			}
			sb.WriteByte('\n')
		}
		sb.WriteString(indent + "]")
	}
	return sb.String()
}

// compact writes v on one line.
func compact(v any) string {
	switch v := v.(type) {
	case map[string]any:
		var parts []string
		for _, k := range sortedKeys(v) {
			kb, _ := json.Marshal(k)
			parts = append(parts, string(kb)+": "+compact(v[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		var parts []string
		for _, x := range v {
			parts = append(parts, compact(x))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// sortedKeys sorts keys, "id" and "loop" first.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) string {
		if k == "id" || k == "loop" {
			return "0" + k
		}
		return "1" + k
	}
	sort.Slice(keys, func(i, j int) bool { return rank(keys[i]) < rank(keys[j]) })
	return keys
}

func flat(v any, depth int) bool {
	switch v := v.(type) {
	case map[string]any:
		if depth > 0 {
			return false
		}
		for _, x := range v {
			if !flat(x, depth+1) {
				return false
			}
		}
		return len(v) <= 8
	case []any:
		if depth > 1 {
			return false
		}
		for _, x := range v {
			if !flat(x, 2) {
				return false
			}
		}
		return true
	}
	return true
}

// TestSamples checks what the samples exercise: separators, envelopes,
// loops, numbers and the friendly forms.
func TestSamples(t *testing.T) {
	s := samples(t)
	ic := mustParse(t, s["856_pick_pack_oneline.edi"])
	if ic.Separators != (Separators{Element: '|', Repetition: '^', Component: '>', Segment: '~'}) {
		t.Errorf("856 separators %+v", ic.Separators)
	}
	ic = mustParse(t, s["850_newline_terminator.edi"])
	if ic.Separators.Segment != '\n' || ic.Separators.Component != '\\' || ic.Separators.Repetition != 0 {
		t.Errorf("850 separators %+v", ic.Separators)
	}
	ic = mustParse(t, s["810_two_groups_lf.edi"])
	if len(ic.Groups) != 2 || len(ic.Groups[0].Transactions) != 2 || len(ic.Groups[1].Transactions) != 1 {
		t.Fatalf("810 groups: %d", len(ic.Groups))
	}
	if tx := ic.Groups[1].Transactions[0]; tx.Control != "0003" || tx.Segments[0].Index != 42 || tx.Segments[0].Offset == 0 {
		t.Errorf("third invoice %s at segment %d, byte %d", tx.Control, tx.Segments[0].Index, tx.Segments[0].Offset)
	}

	view := mustParse(t, s["850_two_orders_crlf.edi"]).JSON()
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch p := p.(type) {
			case string:
				v = v.(map[string]any)[p]
			case int:
				v = v.([]any)[p]
			}
		}
		return v
	}
	po := get(view, "groups", 0, "transactions", 0, "purchase_order")
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"beg", "po_number"}, "4500012345"},
		{[]any{"parties", 0, "address", 1}, "SUITE 400"},
		{[]any{"parties", 0, "contacts", 0, "phone"}, "3125550199"},
		{[]any{"lines", 0, "qty"}, 24},
		{[]any{"lines", 1, "qty"}, 2.5},
		{[]any{"lines", 0, "price"}, "9.95"},
		{[]any{"lines", 0, "vendor_part"}, "WID-100-BL"},
		{[]any{"lines", 2, "id_ZZ"}, "SPECIAL"},
		{[]any{"lines", 2, "charges", 0, "amount"}, "15.00"},
		{[]any{"lines", 1, "refs", 0, "value"}, "PROMO 7"},
		{[]any{"ctt", "lines"}, 3},
	} {
		if got := get(po, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("purchase_order%v = %#v, want %#v", c.path, got, c.want)
		}
	}
	// The unknown ZZX segment stays where it was, inside the PO1 loop.
	seg := get(view, "groups", 0, "transactions", 1, "segments", 4, "segments", 2)
	if !reflect.DeepEqual(seg, map[string]any{"id": "ZZX", "elements": []any{"UNKNOWN", "SEGMENT KEPT IN PLACE"}}) {
		t.Errorf("unknown segment: %v", seg)
	}
	asn := get(mustParse(t, s["856_pick_pack_oneline.edi"]).JSON(), "groups", 0, "transactions", 0, "ship_notice", "shipment")
	if got := get(asn, "orders", 0, "packs", 1, "items", 0, "gtin"); got != "10012345678902" {
		t.Errorf("856 item gtin %v", got)
	}
	if got := get(asn, "orders", 0, "packs", 0, "sscc"); got != "00012345670000000017" {
		t.Errorf("856 sscc %v", got)
	}
}

func TestElements(t *testing.T) {
	sep := Separators{Element: '*', Repetition: '^', Component: ':', Segment: '~'}
	for in, want := range map[string]any{
		"":        "",
		"A":       "A",
		"BX:12":   []any{"BX", "12"},
		":":       []any{"", ""},
		"A^B:C^D": map[string]any{"repeats": []any{"A", []any{"B", "C"}, "D"}},
	} {
		if got := elementJSON(in, sep); !reflect.DeepEqual(got, want) {
			t.Errorf("elementJSON(%q) = %#v, want %#v", in, got, want)
		}
	}
	for in, want := range map[string]any{"10": 10, "2.5": 2.5, "-3": -3, ".5": 0.5, "1.": 1.0, "0.1": 0.1,
		"12345678901234567890.1": "12345678901234567890.1", "abc": "abc", "1e5": "1e5", "-": "-"} {
		if got := number(in); !reflect.DeepEqual(got, want) {
			t.Errorf("number(%q) = %#v, want %#v", in, got, want)
		}
	}
	for in, want := range map[string]string{"46680": "466.80", "5": "0.05", "-150": "-1.50", "0": "0.00", "-0": "0.00", "12a": "12a"} {
		if got := fromN2(in); got != want {
			t.Errorf("fromN2(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"466.80": "46680", "466.8": "46680", "466": "46600", "0.05": "5", "-1.5": "-150", "0": "0", "1.230": "123", ".5": "50"} {
		if got, err := toN2(in); got != want || err != nil {
			t.Errorf("toN2(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"1.234", "abc", "", "1e3"} {
		if _, err := toN2(in); err == nil {
			t.Errorf("toN2(%q) gives no error", in)
		}
	}
}

// malformed lists the corpus in testdata/malformed: every file fails at an
// exact segment and byte, and at shows the input text found there.
var malformed = []struct {
	file           string
	segment        int
	id             string
	element        int
	at             string // input at the offset
	msg            string // part of the message
	fatal          bool
	moreErrorsLeft bool
}{
	{"empty.edi", 1, "", 0, "", "input is empty, expected an ISA segment", true, false},
	{"garbage.edi", 1, "", 0, "Dear", `expected an ISA segment, got "Dear supplier, pleas"`, true, false},
	{"truncated_isa.edi", 1, "ISA", 8, "", "truncated ISA: the input ends after 60 of its 106 characters", true, false},
	{"isa_short_sender.edi", 1, "ISA", 6, "NORTHWIND   *", "ISA06 must be 15 characters (the ISA is fixed-width), got 12", true, false},
	{"isa_same_separators.edi", 1, "ISA", 16, "*~", `component separator "*" (ISA16) is also the element separator`, true, false},
	{"isa_letter_terminator.edi", 1, "ISA", 0, "X\nGS", `segment terminator "X" (after ISA16) must not be a letter, digit or blank`, true, false},
	{"isa_control_not_digits.edi", 1, "ISA", 13, "00000090A", `ISA13 interchange control number must be 9 digits, got "00000090A"`, true, false},
	{"newline_terminator_undeclared.edi", 2, "GS", 0, "ST*850*0001\n", `runs over a line break into "ST*850*0001\nBEG*00*S", which looks like the next segment: the ISA declares the segment terminator "~", is it a line break?`, true, false},
	{"missing_gs.edi", 2, "ST", 0, "ST*850*0001~", "expected GS (functional group) or IEA (end of interchange), got ST", true, false},
	{"bad_segment_id.edi", 6, "", 0, "po1*1*24", `"po1" is not a segment ID (2 or 3 upper-case letters and digits): garbage or wrong separators (element "*", segment "~")`, true, false},
	{"empty_segment.edi", 7, "", 0, "~\nCTT", `empty segment: two segment terminators "~" in a row`, true, false},
	{"missing_se.edi", 9, "ST", 0, "ST*850*0002~", `transaction 850 "0001" (ST at segment 3) has no SE before this ST`, true, false},
	{"truncated_transaction.edi", 7, "", 0, "", `input ends without SE: transaction 850 "0001" (ST at segment 3) is not closed`, true, false},
	{"missing_iea.edi", 11, "", 0, "", "input ends without IEA: interchange 000000905 is not closed", true, false},
	{"data_after_iea.edi", 12, "", 0, "-- end", "data after IEA", true, false},
	{"wrong_se01.edi", 9, "SE", 1, "6*0001~", "SE01 says 6 segments, the transaction has 7 (ST to SE)", false, false},
	{"se01_not_a_number.edi", 9, "SE", 1, "seven*", `SE01 must be a count, got "seven"`, false, false},
	{"wrong_se02.edi", 9, "SE", 2, "0002~", `SE02 control number "0002" does not match ST02 "0001"`, false, false},
	{"wrong_ge01.edi", 10, "GE", 1, "2*905~", "GE01 says 2 transaction sets, the group has 1", false, false},
	{"wrong_ge02.edi", 10, "GE", 2, "906~", `GE02 control number "906" does not match GS06 "905"`, false, false},
	{"wrong_iea01.edi", 11, "IEA", 1, "2*000000905", "IEA01 says 2 functional groups, the interchange has 1", false, false},
	{"wrong_iea02.edi", 11, "IEA", 2, "000000906~", `IEA02 control number "000000906" does not match ISA13 "000000905"`, false, false},
}

func TestMalformed(t *testing.T) {
	files, _ := filepath.Glob("testdata/malformed/*.edi")
	if len(files) != len(malformed) {
		t.Errorf("%d files in testdata/malformed, %d in the table", len(files), len(malformed))
	}
	for _, c := range malformed {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "malformed", c.file))
			if err != nil {
				t.Fatal(err)
			}
			ic, err := ParseBytes(b)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want an *Error", err)
			}
			if e.Segment != c.segment || e.SegmentID != c.id || e.Element != c.element || !strings.Contains(e.Msg, c.msg) || e.Fatal() != c.fatal {
				t.Errorf("got %#v\nwant segment %d (%s) element %d fatal %v: %s", *e, c.segment, c.id, c.element, c.fatal, c.msg)
			}
			if e.Offset > int64(len(b)) || !strings.HasPrefix(string(b[e.Offset:]), c.at) {
				t.Errorf("offset %d points at %q, want %q", e.Offset, string(b[min(e.Offset, int64(len(b))):min(e.Offset+12, int64(len(b)))]), c.at)
			}
			if !strings.HasPrefix(e.Error(), fmt.Sprintf("segment %d", c.segment)) || !strings.Contains(e.Error(), fmt.Sprintf("at byte %d: ", e.Offset)) {
				t.Errorf("message %q", e.Error())
			}
			// What was read is returned for a 997, unless the ISA failed.
			if (ic == nil) != (c.segment == 1) {
				t.Errorf("interchange %v", ic)
			}
			if Validate(bytes.NewReader(b)) == nil {
				t.Error("Validate finds nothing")
			}
		})
	}
}

// TestErrorsJoined checks that Parse reports every wrong count at once and
// the Reader goes on after them.
func TestErrorsJoined(t *testing.T) {
	b := mustRead(t, "testdata/850_minimal.edi")
	b = bytes.Replace(b, []byte("SE*7*0001"), []byte("SE*8*0002"), 1)
	b = bytes.Replace(b, []byte("IEA*1*"), []byte("IEA*3*"), 1)
	ic, err := ParseBytes(b)
	es := Errors(err)
	if len(es) != 3 || ic == nil || len(ic.Groups[0].Transactions) != 1 {
		t.Fatalf("errors %v", err)
	}
	for i, want := range []string{"SE01 says 8", "SE02 control", "IEA01 says 3"} {
		if !strings.Contains(es[i].Msg, want) {
			t.Errorf("error %d: %v", i, es[i])
		}
	}
	r := NewReader(bytes.NewReader(b))
	tx, err := r.Next()
	if tx == nil || err == nil {
		t.Fatalf("Next = %v, %v", tx, err)
	}
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "IEA01") {
		t.Fatalf("Next = %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next = %v, want EOF", err)
	}
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReader reads several interchanges from one stream.
func TestReader(t *testing.T) {
	s := samples(t)
	in := io.MultiReader(bytes.NewReader(s["850_two_orders_crlf.edi"]), bytes.NewReader(s["856_pick_pack_oneline.edi"]),
		strings.NewReader("\r\n"), bytes.NewReader(s["810_two_groups_lf.edi"]))
	r := NewReader(in)
	var got []string
	for {
		tx, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ic := tx.Group.Interchange
		got = append(got, fmt.Sprintf("%s/%s/%s/%c", ic.Header.Element(13), tx.Group.Header.Element(6), tx.Set, ic.Separators.Element))
		if v := tx.View(); v["groups"].([]any)[0].(map[string]any)["transactions"].([]any)[0].(map[string]any)["control"] != tx.Control {
			t.Errorf("view of %s", tx.Control)
		}
		if len(ic.Groups) != 0 || len(tx.Group.Transactions) != 0 {
			t.Error("the Reader keeps transactions")
		}
	}
	want := []string{"000000905/905/850/*", "000000905/905/850/*", "000003311/3311/856/|", "000001204/77/810/*", "000001204/77/810/*", "000001204/78/810/*"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// Parse wants exactly one.
	if _, err := ParseBytes(append(s["850_newline_terminator.edi"], s["850_minimal.edi"]...)); err == nil || !strings.Contains(err.Error(), "data after IEA") {
		t.Errorf("two interchanges: %v", err)
	}
}

func TestSegmentTooLong(t *testing.T) {
	b := mustRead(t, "testdata/850_minimal.edi")
	i := bytes.Index(b, []byte("PID*"))
	in := io.MultiReader(bytes.NewReader(b[:i]), strings.NewReader("PID*F****"), bytes.NewReader(bytes.Repeat([]byte("LONG TEXT "), maxSegment/5)))
	_, err := Parse(in)
	var e *Error
	if !errors.As(err, &e) || e.Segment != 7 || e.Offset != int64(i) || !strings.Contains(e.Msg, `no segment terminator "~" within 1048576 bytes`) {
		t.Fatalf("error %v", err)
	}
}

// generator produces an interchange of n 856 transactions on the fly, so
// that the stream is never in memory.
type generator struct {
	n, done int
	buf     bytes.Buffer
	tail    bool
}

func (g *generator) Read(p []byte) (int, error) {
	for g.buf.Len() < len(p) {
		switch {
		case g.done == 0 && g.buf.Len() == 0 && !g.tail:
			g.buf.WriteString("ISA*00*          *00*          *ZZ*ACMESUPPLY     *ZZ*NORTHWIND      *240117*1420*U*00401*000000001*0*P*>~\nGS*SH*ACMESUPPLY*NORTHWIND*20240117*1420*1*X*004010~\n")
			g.tail = true
		case g.done < g.n:
			g.done++
			fmt.Fprintf(&g.buf, "ST*856*%04d~\nBSN*00*SHP%07d*20240117*1415*0001~\nHL*1**S~\nTD1*CTN25*1****G*12*LB~\nHL*2*1*O~\nPRF*PO%07d~\nHL*3*2*I~\nLIN*1*VP*WID-100-BL*UP*012345678905~\nSN1**24*EA~\nPID*F****WIDGET, BLUE, 100MM~\nCTT*3~\nSE*12*%04d~\n", g.done%10000, g.done, g.done, g.done%10000)
		case g.done == g.n && g.tail:
			fmt.Fprintf(&g.buf, "GE*%d*1~\nIEA*1*000000001~\n", g.n)
			g.tail = false
		default:
			if g.buf.Len() == 0 {
				return 0, io.EOF
			}
			return g.buf.Read(p)
		}
	}
	return g.buf.Read(p)
}

// TestStreamingMemory reads a large interchange (about 80 MB) with a Reader
// and checks that the heap does not grow with it.
func TestStreamingMemory(t *testing.T) {
	n := 300000
	if testing.Short() {
		n = 20000
	}
	g := &generator{n: n}
	r := NewReader(g)
	var peak uint64
	var ms runtime.MemStats
	count, bytesIn := 0, int64(0)
	for {
		tx, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		count++
		if count%20000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		bytesIn = tx.Segments[len(tx.Segments)-1].Offset
	}
	if count != n {
		t.Fatalf("%d transactions, want %d", count, n)
	}
	t.Logf("%d transactions, %d MB read, peak heap in use %d MB", count, bytesIn>>20, peak>>20)
	if peak > 32<<20 {
		t.Errorf("peak heap %d MB: the Reader holds more than the current transaction", peak>>20)
	}
}
