package x12

import (
	"errors"
	"fmt"
	"strings"
)

// Separators are the delimiters of an interchange. The ISA segment declares
// them: the element separator is its fourth character, the repetition
// separator ISA11 (from version 00402 on), the component separator ISA16 and
// the segment terminator the character after ISA16.
type Separators struct {
	Element    byte // default '*'
	Repetition byte // default '^'; 0 when ISA11 is a standards identifier such as "U"
	Component  byte // default ':'
	Segment    byte // default '~'
	// Suffix is written after every segment terminator by Build and Ack997:
	// "\n" by default, none when the terminator is itself a line break
	// (a partner's, or a document's), unless options ask for one
	// (segment_terminator "\r\n" is CR LF). Line breaks after
	// terminators are skipped when reading.
	Suffix string
}

// DefaultSeparators are the separators Build writes unless told otherwise.
var DefaultSeparators = Separators{Element: '*', Repetition: '^', Component: ':', Segment: '~', Suffix: "\n"}

// Segment is one segment of an interchange.
type Segment struct {
	ID       string   // e.g. "BEG"
	Elements []string // Elements[0] is element 01; composites and repetitions unsplit
	Index    int      // 1-based position in the interchange; the ISA is 1
	Offset   int64    // byte offset of the segment's first character in the input
}

// Element returns element n counted as in X12 (BEG03 is Element(3)), or ""
// when the segment has fewer elements.
func (s *Segment) Element(n int) string {
	if n < 1 || n > len(s.Elements) {
		return ""
	}
	return s.Elements[n-1]
}

// elementOffset is the byte offset of element n (the segment's when n is
// 0, the segment's end when it has fewer elements).
func (s *Segment) elementOffset(n int) int64 {
	if n == 0 {
		return s.Offset
	}
	off := s.Offset + int64(len(s.ID))
	for i := 0; i < n-1 && i < len(s.Elements); i++ {
		off += int64(len(s.Elements[i]) + 1)
	}
	if n <= len(s.Elements) {
		off++
	}
	return off
}

// Interchange is one ISA..IEA envelope.
type Interchange struct {
	Header     Segment // ISA, with its 16 elements as read (padded)
	Trailer    Segment // IEA; ID "" when the input ended before it
	Separators Separators
	Groups     []*Group // empty when the interchange comes from a Reader
}

// Group is one functional group, GS..GE.
type Group struct {
	Header       Segment // GS
	Trailer      Segment // GE; ID "" when the input ended before it
	Interchange  *Interchange
	Transactions []*Transaction // empty when the group comes from a Reader
}

// Transaction is one transaction set, ST..SE.
type Transaction struct {
	Set      string    // ST01, e.g. "850"
	Control  string    // ST02
	Segments []Segment // ST to SE inclusive
	Group    *Group
}

// Error is a malformed interchange, located for an analyst: the segment (by
// position and ID), the element, and the byte offset in the input.
type Error struct {
	Segment   int    // 1-based index in the interchange (the ISA is 1); for a missing segment the index it would have
	SegmentID string // e.g. "SE"; "" when the segment is missing or unreadable
	Element   int    // 1-based element position (SE01 is 1); 0 for the whole segment
	Offset    int64  // byte offset of the element, or of the segment when Element is 0
	Msg       string // what is wrong

	fatal bool   // reading cannot go on after it
	ak5   string // 997 AK5 syntax error code when it concerns one transaction
	ak9   string // 997 AK9 syntax error code when it concerns a group
}

// Error returns e.g. "segment 14 (SE) at byte 812: SE01 says 12 segments,
// the transaction has 13".
func (e *Error) Error() string {
	if e.SegmentID == "" {
		return fmt.Sprintf("segment %d at byte %d: %s", e.Segment, e.Offset, e.Msg)
	}
	return fmt.Sprintf("segment %d (%s) at byte %d: %s", e.Segment, e.SegmentID, e.Offset, e.Msg)
}

// Fatal reports whether reading stopped at e. A wrong count or a trailer
// whose control number does not match its header is not fatal: the
// structure is intact and a Reader goes on with the next transaction.
func (e *Error) Fatal() bool { return e.fatal }

// Errors returns every *Error in err, which may join several (as Parse
// returns them).
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// segErr is an error about element el of s (the whole segment when el is 0).
func segErr(s *Segment, el int, format string, args ...any) *Error {
	return &Error{Segment: s.Index, SegmentID: s.ID, Element: el, Offset: s.elementOffset(el), Msg: fmt.Sprintf(format, args...)}
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// quoteSep shows a separator in a message: "~", "\n".
func quoteSep(b byte) string { return fmt.Sprintf("%q", sepStr(b)) }

// sameNumber compares control numbers that may differ in leading zeros.
func sameNumber(a, b string) bool {
	if a == b {
		return true
	}
	ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	return ta == tb && isDigits(a) && isDigits(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// sepStr is a separator as a one-byte string.
func sepStr(b byte) string { return string([]byte{b}) }
