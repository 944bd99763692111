package x12

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Ack997 writes a 997 functional acknowledgement of ic: one 997 per
// functional group (AK1), an AK2/AK5 per transaction set and an AK9 per
// group. Accepted false rejects every transaction set (a business
// rejection). errs are the problems found, usually from Parse (see Errors):
//   - an *Error located in a transaction set rejects it (AK5 "R"); a wrong
//     SE01 or SE02 gives its AK5 code, any other error an AK3 (segment) and
//     AK4 (element) note;
//   - an *Error on a GS or GE, or a group Parse could not finish, rejects
//     the group (AK9 "R"), with the AK9 code of a wrong GE01 or GE02;
//   - any other error rejects everything.
//
// For a file too large to hold, a Reader's transactions may be kept with
// only their ST and SE segments. The envelope goes back to the sender: by default the ISA and GS sender
// and receiver of ic swapped, its version, separators and usage; opts set
// the control numbers and may override the rest.
func Ack997(ic *Interchange, accepted bool, errs []error, opts BuildOptions) ([]byte, error) {
	if ic == nil {
		return nil, errors.New("no interchange to acknowledge")
	}
	global := false
	var located []*Error
	for _, err := range errs {
		es := Errors(err)
		if len(es) == 0 {
			global = true
		}
		located = append(located, es...)
	}
	h := &ic.Header
	def := func(opt *string, v string) {
		if *opt == "" {
			*opt = strings.TrimRight(v, " ")
		}
	}
	def(&opts.Sender, h.Element(8))
	def(&opts.SenderQualifier, h.Element(7))
	def(&opts.Receiver, h.Element(6))
	def(&opts.ReceiverQualifier, h.Element(5))
	def(&opts.Version, h.Element(12))
	def(&opts.Usage, h.Element(15))
	if len(ic.Groups) > 0 {
		g := &ic.Groups[0].Header
		def(&opts.GroupSender, g.Element(3))
		def(&opts.GroupReceiver, g.Element(2))
		def(&opts.GroupVersion, g.Element(8))
	}
	if opts.Separators.Element == 0 {
		opts.Separators = ic.Separators
		opts.Separators.Suffix = DefaultSeparators.Suffix
		if ic.Separators.Segment == '\r' || ic.Separators.Segment == '\n' {
			opts.Separators.Suffix = "" // as the partner writes it: the terminator is the line break
		}
	}
	seg := func(id string, els ...string) any {
		l := make([]any, len(els))
		for i, e := range els {
			l[i] = e
		}
		return map[string]any{"id": id, "elements": l}
	}
	var txs []any
	for _, g := range ic.Groups {
		last := g.Trailer.Index // a group without GE ends the input
		if g.Trailer.ID == "" {
			last = math.MaxInt
		}
		var segs []any
		ak1 := []string{g.Header.Element(1), g.Header.Element(6)}
		if g.Header.Element(8) >= "005" {
			ak1 = append(ak1, g.Header.Element(8))
		}
		segs = append(segs, seg("AK1", ak1...))
		groupBad, ak9codes, nAccepted := global || g.Trailer.ID == "", []string{}, 0
		if g.Trailer.ID == "" {
			ak9codes = append(ak9codes, "3")
		}
		for _, e := range located {
			if e.Segment >= g.Header.Index && e.Segment <= last && !inTransaction(g, e) {
				groupBad = true
				if e.ak9 != "" {
					ak9codes = append(ak9codes, e.ak9)
				}
			}
		}
		for _, t := range g.Transactions {
			segs = append(segs, seg("AK2", t.Set, t.Control))
			st, se := t.Segments[0].Index, t.Segments[len(t.Segments)-1].Index
			var codes []string
			bad := !accepted || global || groupBad
			for _, e := range located {
				if e.Segment < st || e.Segment > se {
					continue
				}
				bad = true
				if e.ak5 != "" {
					codes = append(codes, e.ak5)
					continue
				}
				// Transactions kept without their body (ST and SE only) give
				// no copy of the bad data.
				id, bad := e.SegmentID, ""
				if i := e.Segment - st; i < len(t.Segments) && t.Segments[i].Index == e.Segment {
					id, bad = t.Segments[i].ID, truncate(t.Segments[i].Element(e.Element), 99)
				}
				segs = append(segs, seg("AK3", id, strconv.Itoa(e.Segment-st+1), "", "8"))
				if e.Element > 0 {
					segs = append(segs, seg("AK4", strconv.Itoa(e.Element), "", "7", bad))
				}
				codes = append(codes, "5")
			}
			status := "A"
			if bad {
				status = "R"
			} else {
				nAccepted++
			}
			segs = append(segs, seg("AK5", append([]string{status}, firstCodes(codes)...)...))
		}
		status := "A"
		switch {
		case groupBad || nAccepted == 0 && len(g.Transactions) > 0:
			status = "R"
		case nAccepted < len(g.Transactions):
			status = "P"
		}
		included := strconv.Itoa(len(g.Transactions))
		if n := g.Trailer.Element(1); isDigits(n) {
			included = n
		}
		ak9 := []string{status, included, strconv.Itoa(len(g.Transactions)), strconv.Itoa(nAccepted)}
		segs = append(segs, seg("AK9", append(ak9, firstCodes(ak9codes)...)...))
		txs = append(txs, map[string]any{"set": "997", "segments": segs})
	}
	if len(txs) == 0 {
		return nil, errors.New("the interchange has no functional group to acknowledge")
	}
	return Build(map[string]any{"transactions": txs}, opts)
}

// inTransaction reports whether e is located in one of g's transactions.
func inTransaction(g *Group, e *Error) bool {
	for _, t := range g.Transactions {
		if e.Segment >= t.Segments[0].Index && e.Segment <= t.Segments[len(t.Segments)-1].Index {
			return true
		}
	}
	return false
}

// firstCodes drops duplicates and keeps the five codes an AK5 or AK9 holds.
func firstCodes(codes []string) []string {
	var out []string
	for _, c := range codes {
		if len(out) < 5 && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
