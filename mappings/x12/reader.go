package x12

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxSegment bounds one segment, so that input without terminators cannot
// make the reader buffer it whole.
const maxSegment = 1 << 20

// isaWidths are the fixed widths of ISA01..ISA16; with "ISA", the 16
// element separators and the terminator they make 106 characters.
var isaWidths = [16]int{2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1}

const isaLen = 106

// reader states: where the next segment belongs.
const (
	stOutside     = iota // before an ISA or after an IEA
	stInterchange        // after ISA or GE: GS or IEA next
	stGroup              // after GS or SE: ST or GE next
	stTransaction        // after ST: anything up to SE
)

// Reader reads the transactions of one or more interchanges from a stream,
// holding only the current transaction in memory, so files of hundreds of
// megabytes are read in constant memory (apart from one transaction).
type Reader struct {
	br    *bufio.Reader
	off   int64 // bytes consumed
	buf   []byte
	state int
	n     int // segments read in the current interchange
	ic    *Interchange
	group *Group
	tx    *Transaction
	ngrp  int // groups in the interchange so far
	ntx   int // transactions in the group so far
	seen  int // interchanges started
	err   error

	keep   bool         // Parse: link transactions into groups and groups into the interchange
	single bool         // Parse: a second interchange is an error
	first  *Interchange // Parse: the interchange read
}

// NewReader returns a Reader of the X12 interchanges in r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next transaction set, with its Group (GS header) and the
// group's Interchange (ISA header, separators) attached, or io.EOF after the
// last IEA. Errors are *Error. When a count or a trailer control number is
// wrong the structure is intact: Next returns the transaction concerned
// (nil for a GE or IEA) with the error and can be called again. Any other
// error is fatal and Next returns it from then on.
func (r *Reader) Next() (*Transaction, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		tx, err := r.step()
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.fatal {
				r.err = err
			}
			return tx, err
		}
		if tx != nil {
			return tx, nil
		}
	}
}

// Interchange is the interchange being read (its header and separators), nil
// before the first ISA.
func (r *Reader) Interchange() *Interchange { return r.ic }

// Parse reads one interchange whole. Errors are *Error, several joined when
// counts or control numbers are wrong in more than one place (see Errors).
// On error Parse still returns what it read, with the separators and the
// transactions complete so far, so that a rejecting 997 can be built; it
// returns nil only when no ISA could be read. Use NewReader for input with
// several interchanges or too large to hold.
func Parse(r io.Reader) (*Interchange, error) {
	rd := NewReader(r)
	rd.keep, rd.single = true, true
	var errs []error
	for {
		_, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, err)
			if rd.err != nil {
				break
			}
		}
	}
	return rd.first, errors.Join(errs...)
}

// ParseBytes is Parse of an interchange in memory.
func ParseBytes(data []byte) (*Interchange, error) { return Parse(bytes.NewReader(data)) }

// Validate reads every interchange in r in constant memory and returns
// every error found, joined, or nil.
func Validate(r io.Reader) error {
	rd := NewReader(r)
	var errs []error
	for {
		_, err := rd.Next()
		if err == io.EOF || err != nil && rd.err != nil {
			if err != io.EOF {
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
}

// fatalf is a fatal error about element el of s.
func fatalf(s *Segment, el int, format string, args ...any) *Error {
	e := segErr(s, el, format, args...)
	e.fatal = true
	return e
}

// step reads one segment and returns a transaction when it closed one.
func (r *Reader) step() (*Transaction, error) {
	if r.state == stOutside {
		return nil, r.readISA()
	}
	s, err := r.segment()
	if err == io.EOF {
		return nil, r.eofError()
	}
	if err != nil {
		return nil, err
	}
	switch r.state {
	case stInterchange:
		switch s.ID {
		case "GS":
			return nil, r.openGroup(s)
		case "IEA":
			return nil, r.closeInterchange(s)
		}
		return nil, fatalf(&s, 0, "expected GS (functional group) or IEA (end of interchange), got %s", s.ID)
	case stGroup:
		switch s.ID {
		case "ST":
			return nil, r.openTransaction(s)
		case "GE":
			return nil, r.closeGroup(s)
		}
		return nil, fatalf(&s, 0, "expected ST (transaction set) or GE (end of group), got %s", s.ID)
	}
	switch s.ID {
	case "SE":
		return r.closeTransaction(s)
	case "ISA", "IEA", "GS", "GE", "ST":
		st := &r.tx.Segments[0]
		return nil, fatalf(&s, 0, "transaction %s %q (ST at segment %d) has no SE before this %s", r.tx.Set, r.tx.Control, st.Index, s.ID)
	}
	r.tx.Segments = append(r.tx.Segments, s)
	return nil, nil
}

// eofError explains what is missing when the input ends inside an envelope.
func (r *Reader) eofError() error {
	var msg string
	switch r.state {
	case stInterchange:
		msg = fmt.Sprintf("input ends without IEA: interchange %s is not closed", r.ic.Header.Element(13))
	case stGroup:
		msg = fmt.Sprintf("input ends without GE: group %s (GS at segment %d) is not closed", r.group.Header.Element(6), r.group.Header.Index)
	default:
		msg = fmt.Sprintf("input ends without SE: transaction %s %q (ST at segment %d) is not closed", r.tx.Set, r.tx.Control, r.tx.Segments[0].Index)
	}
	return &Error{Segment: r.n + 1, Offset: r.off, Msg: msg, fatal: true}
}

func (r *Reader) openGroup(s Segment) error {
	for i, name := range gsNames {
		if s.Element(i+1) == "" {
			return fatalf(&s, i+1, "GS%02d (%s) is missing", i+1, strings.ReplaceAll(name, "_", " "))
		}
	}
	if !isDigits(s.Element(6)) || len(s.Element(6)) > 9 {
		return fatalf(&s, 6, "GS06 group control number must be 1 to 9 digits, got %q", s.Element(6))
	}
	r.group = &Group{Header: s, Interchange: r.ic}
	r.ngrp++
	r.ntx = 0
	r.state = stGroup
	if r.keep {
		r.ic.Groups = append(r.ic.Groups, r.group)
	}
	return nil
}

func (r *Reader) openTransaction(s Segment) error {
	switch {
	case s.Element(1) == "":
		return fatalf(&s, 1, "ST01 transaction set identifier is missing")
	case s.Element(2) == "":
		return fatalf(&s, 2, "ST02 transaction set control number is missing")
	}
	r.tx = &Transaction{Set: s.Element(1), Control: s.Element(2), Segments: []Segment{s}, Group: r.group}
	r.ntx++
	r.state = stTransaction
	return nil
}

// closeTransaction checks SE against the transaction and hands it out.
func (r *Reader) closeTransaction(s Segment) (*Transaction, error) {
	tx := r.tx
	tx.Segments = append(tx.Segments, s)
	r.tx, r.state = nil, stGroup
	if r.keep {
		r.group.Transactions = append(r.group.Transactions, tx)
	}
	var errs []error
	if n, err := count(&s, 1); err != nil {
		errs = append(errs, err)
	} else if n != len(tx.Segments) {
		e := segErr(&s, 1, "SE01 says %s, the transaction has %d (ST to SE)", plural(n, "segment"), len(tx.Segments))
		e.ak5 = "4"
		errs = append(errs, e)
	}
	if s.Element(2) != tx.Control {
		e := segErr(&s, 2, "SE02 control number %q does not match ST02 %q", s.Element(2), tx.Control)
		e.ak5 = "3"
		errs = append(errs, e)
	}
	return tx, errors.Join(errs...)
}

func (r *Reader) closeGroup(s Segment) error {
	r.group.Trailer = s
	r.state = stInterchange
	var errs []error
	if n, err := count(&s, 1); err != nil {
		errs = append(errs, err)
	} else if n != r.ntx {
		e := segErr(&s, 1, "GE01 says %s, the group has %d", plural(n, "transaction set"), r.ntx)
		e.ak9 = "5"
		errs = append(errs, e)
	}
	if !sameNumber(s.Element(2), r.group.Header.Element(6)) {
		e := segErr(&s, 2, "GE02 control number %q does not match GS06 %q", s.Element(2), r.group.Header.Element(6))
		e.ak9 = "4"
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func (r *Reader) closeInterchange(s Segment) error {
	r.ic.Trailer = s
	r.state = stOutside
	var errs []error
	if n, err := count(&s, 1); err != nil {
		errs = append(errs, err)
	} else if n != r.ngrp {
		errs = append(errs, segErr(&s, 1, "IEA01 says %s, the interchange has %d", plural(n, "functional group"), r.ngrp))
	}
	if !sameNumber(s.Element(2), r.ic.Header.Element(13)) {
		errs = append(errs, segErr(&s, 2, "IEA02 control number %q does not match ISA13 %q", s.Element(2), r.ic.Header.Element(13)))
	}
	return errors.Join(errs...)
}

// count reads a count element.
func count(s *Segment, el int) (int, error) {
	v := s.Element(el)
	n, err := strconv.Atoi(v)
	if err != nil || !isDigits(v) {
		return 0, segErr(s, el, "%s%02d must be a count, got %q", s.ID, el, v)
	}
	return n, nil
}

// skipSpace skips line breaks, blanks, NULs and DOS end-of-file marks
// between segments (and a UTF-8 byte order mark before the first ISA).
func (r *Reader) skipSpace() {
	if r.off == 0 {
		if b, _ := r.br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
			r.br.Discard(3)
			r.off = 3
		}
	}
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return
		}
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' && c != 0 && c != 0x1a {
			r.br.UnreadByte()
			return
		}
		r.off++
	}
}

// readISA reads the fixed-width ISA and learns the separators from it.
func (r *Reader) readISA() error {
	r.skipSpace()
	start := r.off
	b, _ := r.br.Peek(isaLen)
	if len(b) == 0 {
		if r.seen == 0 {
			return &Error{Segment: 1, Offset: start, Msg: "input is empty, expected an ISA segment", fatal: true}
		}
		return io.EOF
	}
	if r.seen > 0 && r.single {
		return &Error{Segment: r.n + 1, Offset: start, Msg: "data after IEA: a second interchange or garbage (read several interchanges with a Reader)", fatal: true}
	}
	r.seen++
	r.n = 0
	isa := &Segment{ID: "ISA", Index: 1, Offset: start}
	if len(b) < 4 || string(b[:3]) != "ISA" {
		return &Error{Segment: 1, Offset: start, Msg: fmt.Sprintf("expected an ISA segment, got %q", preview(b)), fatal: true}
	}
	el := b[3]
	if isAlnum(el) || el == ' ' || el == '\r' || el == '\n' {
		return fatalf(isa, 0, "element separator %s (after ISA) must not be a letter, digit or blank", quoteSep(el))
	}
	if err := isaLayout(b, el, start); err != nil {
		return err
	}
	for i, pos := 0, 4; i < 16; i++ {
		isa.Elements = append(isa.Elements, string(b[pos:pos+isaWidths[i]]))
		pos += isaWidths[i] + 1
	}
	sep := Separators{Element: el, Component: b[104], Segment: b[105]}
	if c := b[82]; !isAlnum(c) && c != ' ' {
		sep.Repetition = c
	}
	if err := checkSeparators(sep); err != nil {
		el := 16
		if err.seg {
			el = 0
		} else if err.rep {
			el = 11
		}
		e := fatalf(isa, el, "%s", err.msg)
		if el == 0 {
			e.Offset = start + isaLen - 1
		}
		return e
	}
	for i, v := range isa.Elements[:15] {
		if strings.IndexByte(v, sep.Element) >= 0 || strings.IndexByte(v, sep.Segment) >= 0 {
			return fatalf(isa, i+1, "ISA%02d %q holds the element separator %s or the segment terminator %s: the ISA is not fixed-width",
				i+1, v, quoteSep(sep.Element), quoteSep(sep.Segment))
		}
	}
	for _, n := range []int{6, 8} {
		if strings.TrimSpace(isa.Elements[n-1]) == "" {
			return fatalf(isa, n, "ISA%02d (%s) is blank", n, isaNames[n-1])
		}
	}
	if !isDigits(isa.Elements[12]) {
		return fatalf(isa, 13, "ISA13 interchange control number must be 9 digits, got %q", isa.Elements[12])
	}
	r.br.Discard(isaLen)
	r.off += isaLen
	r.n = 1
	r.ic = &Interchange{Header: *isa, Separators: sep}
	if r.first == nil {
		r.first = r.ic
	}
	r.ngrp, r.state = 0, stInterchange
	return nil
}

// isaLayout checks that b holds an ISA with every element at its fixed
// width; otherwise it names the first element whose width is wrong, or
// where the input ends.
func isaLayout(b []byte, el byte, start int64) error {
	ok := len(b) == isaLen
	for i, pos := 0, 3; ok && i < 15; i++ {
		pos += isaWidths[i] + 1
		ok = b[pos] == el
	}
	if ok {
		return nil
	}
	errAt := func(n, off int, format string, args ...any) error {
		return &Error{Segment: 1, SegmentID: "ISA", Element: n, Offset: start + int64(off), Msg: fmt.Sprintf(format, args...), fatal: true}
	}
	off, n := 4, 1
	for ; n < 16; n++ {
		j := bytes.IndexByte(b[off:], el)
		if j < 0 {
			break
		}
		if j != isaWidths[n-1] {
			return errAt(n, off, "ISA%02d must be %d characters (the ISA is fixed-width), got %d", n, isaWidths[n-1], j)
		}
		off += j + 1
	}
	if len(b) < isaLen {
		return errAt(n, len(b), "truncated ISA: the input ends after %d of its %d characters", len(b), isaLen)
	}
	return errAt(n, off, "ISA%02d must be %d characters followed by the element separator %s", n, isaWidths[n-1], quoteSep(el))
}

type sepError struct {
	msg      string
	seg, rep bool
}

// checkSeparators refuses separators that are letters, digits or blanks,
// or the same character used twice.
func checkSeparators(s Separators) *sepError {
	switch {
	case isAlnum(s.Component) || s.Component == ' ':
		return &sepError{msg: fmt.Sprintf("component separator %s (ISA16) must not be a letter, digit or blank", quoteSep(s.Component))}
	case s.Component == s.Element:
		return &sepError{msg: fmt.Sprintf("component separator %s (ISA16) is also the element separator", quoteSep(s.Component))}
	case isAlnum(s.Segment) || s.Segment == ' ':
		return &sepError{msg: fmt.Sprintf("segment terminator %s (after ISA16) must not be a letter, digit or blank", quoteSep(s.Segment)), seg: true}
	case s.Segment == s.Element || s.Segment == s.Component:
		return &sepError{msg: fmt.Sprintf("segment terminator %s (after ISA16) is also used as element or component separator", quoteSep(s.Segment)), seg: true}
	case s.Repetition != 0 && (s.Repetition == s.Element || s.Repetition == s.Component || s.Repetition == s.Segment):
		return &sepError{msg: fmt.Sprintf("repetition separator %s (ISA11) is also used as another separator", quoteSep(s.Repetition)), rep: true}
	}
	return nil
}

func preview(b []byte) string {
	if len(b) > 20 {
		b = b[:20]
	}
	return string(b)
}

// segment reads the next segment after the ISA; io.EOF at the end of input.
// A last segment without terminator is accepted.
func (r *Reader) segment() (Segment, error) {
	r.skipSpace()
	term := r.ic.Separators.Segment
	start := r.off
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice(term)
		r.buf = append(r.buf, chunk...)
		r.off += int64(len(chunk))
		if err == nil {
			r.buf = r.buf[:len(r.buf)-1]
			break
		}
		if err == bufio.ErrBufferFull {
			if len(r.buf) > maxSegment {
				return Segment{}, &Error{Segment: r.n + 1, Offset: start, fatal: true,
					Msg: fmt.Sprintf("no segment terminator %s within %d bytes: wrong terminator or not X12", quoteSep(term), maxSegment)}
			}
			continue
		}
		if err != io.EOF {
			return Segment{}, err
		}
		if len(r.buf) == 0 {
			return Segment{}, io.EOF
		}
		break
	}
	if term == '\n' {
		r.buf = bytes.TrimSuffix(r.buf, []byte{'\r'})
	}
	r.n++
	if err := r.runOn(start); err != nil {
		return Segment{}, err
	}
	line := string(r.buf)
	s := Segment{Index: r.n, Offset: start}
	id, rest, more := cut(line, r.ic.Separators.Element)
	s.ID = id
	if id == "" && !more {
		return s, &Error{Segment: r.n, Offset: start, fatal: true, Msg: fmt.Sprintf("empty segment: two segment terminators %s in a row", quoteSep(term))}
	}
	if !validID(id) {
		return s, &Error{Segment: r.n, Offset: start, fatal: true,
			Msg: fmt.Sprintf("%q is not a segment ID (2 or 3 upper-case letters and digits): garbage or wrong separators (element %s, segment %s)",
				preview([]byte(id)), quoteSep(r.ic.Separators.Element), quoteSep(term))}
	}
	for more {
		var e string
		e, rest, more = cut(rest, r.ic.Separators.Element)
		s.Elements = append(s.Elements, e)
	}
	return s, nil
}

// runOn catches a segment that runs over a line break into what looks like
// the next segment: the file ends its segments with line breaks, not with
// the terminator its ISA declares.
func (r *Reader) runOn(start int64) error {
	sep := r.ic.Separators
	if sep.Segment == '\n' || sep.Segment == '\r' {
		return nil
	}
	for i := bytes.IndexByte(r.buf, '\n'); i >= 0; {
		next := bytes.TrimLeft(r.buf[i+1:], "\r\n")
		if id, _, ok := bytes.Cut(next, []byte{sep.Element}); ok && validID(string(id)) {
			first, _, _ := bytes.Cut(r.buf, []byte{sep.Element})
			e := &Error{Segment: r.n, Offset: start + int64(len(r.buf)-len(next)), fatal: true,
				Msg: fmt.Sprintf("the segment runs over a line break into %q, which looks like the next segment: the ISA declares the segment terminator %s, is it a line break?",
					preview(next), quoteSep(sep.Segment))}
			if validID(string(first)) {
				e.SegmentID = string(first)
			}
			return e
		}
		j := bytes.IndexByte(r.buf[i+1:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}

func cut(s string, sep byte) (before, after string, found bool) {
	if i := indexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func validID(id string) bool {
	if len(id) < 2 || len(id) > 3 || id[0] < 'A' || id[0] > 'Z' {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
