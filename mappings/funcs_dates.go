package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // time zone names must not depend on the host's tzdata
)

// nowFunc is the clock of today(); tests replace it.
var nowFunc = time.Now

func init() {
	for _, f := range []Function{
		{Name: "parse_date", Signature: "parse_date(value, pattern[, timezone]) time.Time", Fn: parseDate,
			Description: `Reads a date from text written in pattern (e.g. "dd.MM.yyyy HH:mm", or "iso"); a pattern without offset is read in timezone, UTC by default.`,
			Example:     `parse_date("31.01.2024 14:30", "dd.MM.yyyy HH:mm", "Europe/Zurich") == date("2024-01-31T13:30:00Z")`},
		{Name: "format_date", Signature: "format_date(value, pattern[, timezone]) string", Fn: formatDate,
			Description: "Writes a date (a date value, RFC 3339 text or unix seconds) in pattern, in timezone if given and otherwise in the date's own offset.",
			Example:     `format_date("2024-01-31T13:30:00Z", "EEE d MMM yyyy, h:mm a", "Europe/Zurich") == "Wed 31 Jan 2024, 2:30 PM"`},
		{Name: "to_timezone", Signature: "to_timezone(value, timezone) time.Time", Fn: toTimezone,
			Description: "Returns the same instant as seen in timezone (an IANA name such as Europe/Zurich).",
			Example:     `format_date(to_timezone("2024-07-01T12:00:00Z", "America/New_York"), "HH:mm XXX") == "08:00 -04:00"`},
		{Name: "add_days", Signature: "add_days(value, n) time.Time", Fn: addDays,
			Description: "Adds n calendar days (negative to go back) to a date.",
			Example:     `format_date(add_days("2024-02-28", 2), "yyyy-MM-dd") == "2024-03-01"`},
		{Name: "add_duration", Signature: "add_duration(value, duration) time.Time", Fn: addDuration,
			Description: `Adds a duration such as "2h30m", "-15m" or "90s" to a date.`,
			Example:     `format_date(add_duration("2024-01-31T23:00:00Z", "2h30m"), "iso") == "2024-02-01T01:30:00Z"`},
		{Name: "unix", Signature: "unix(value) int", Fn: unixSeconds,
			Description: "Returns a date as seconds since 1970-01-01T00:00:00Z.",
			Example:     `unix("2024-01-01T00:00:00Z") == 1704067200`},
		{Name: "today", Signature: "today([timezone]) string", Fn: today,
			Description: "Returns the current date as yyyy-MM-dd, in timezone or UTC.",
			Example:     `len(today("Europe/Zurich")) == 10`},
	} {
		registerLib(f)
	}
}

// datePattern is an analyst's date pattern converted to a Go layout.
type datePattern struct {
	layout string
	zoned  bool              // the text carries its own offset or zone
	iso    bool              // "iso": RFC 3339, or a date and time without offset, or a date
	tokens map[string]string // Go layout element -> pattern letters, for errors
	// hours are where single H stands in layout as "15". Go has no hour
	// 0-23 without a leading zero, so format writes those itself.
	hours []int
}

var datePatterns sync.Map // pattern -> *datePattern

// compileDatePattern converts pattern once and caches the result.
func compileDatePattern(pattern string) (*datePattern, error) {
	if p, ok := datePatterns.Load(pattern); ok {
		return p.(*datePattern), nil
	}
	p, err := convertDatePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	datePatterns.Store(pattern, p)
	return p, nil
}

// convertDatePattern turns Unicode/Java pattern letters into a Go layout.
// Go layouts cannot escape text, so literal text that Go would read as a
// layout element (digits, "Jan", "Mon", "MST", "PM") is refused.
func convertDatePattern(pattern string) (*datePattern, error) {
	switch pattern {
	case "iso", "rfc3339":
		p, err := convertDatePattern("yyyy-MM-dd'T'HH:mm:ssXXX")
		if err == nil {
			p.layout, p.iso = time.RFC3339Nano, pattern == "iso"
		}
		return p, err
	case "":
		return nil, errors.New("empty pattern")
	}
	p := &datePattern{tokens: map[string]string{}}
	var layout, lit strings.Builder
	flush := func(next string) error {
		s := lit.String()
		lit.Reset()
		for _, w := range []string{"Jan", "Mon", "MST", "PM", "pm"} {
			if strings.Contains(s, w) {
				return fmt.Errorf("literal text %q cannot contain %q", s, w)
			}
		}
		if strings.ContainsAny(s, "0123456789") {
			return fmt.Errorf("literal text %q cannot contain digits", s)
		}
		if strings.HasSuffix(s, "_") && strings.HasPrefix(next, "2") {
			return fmt.Errorf("literal text %q cannot end in _ before d", s)
		}
		layout.WriteString(s)
		return nil
	}
	rs := []rune(pattern)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case c == '\'':
			j := i + 1
			if j < len(rs) && rs[j] == '\'' {
				lit.WriteRune('\'')
				i = j + 1
				continue
			}
			for ; ; j++ {
				if j == len(rs) {
					return nil, errors.New("quote ' is not closed")
				}
				if rs[j] == '\'' {
					if j+1 < len(rs) && rs[j+1] == '\'' {
						lit.WriteRune('\'')
						j++
						continue
					}
					break
				}
				lit.WriteRune(rs[j])
			}
			i = j + 1
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(rs) && rs[j] == c {
				j++
			}
			tok := string(rs[i:j])
			elem, zoned := layoutElem(c, j-i)
			if elem == "" {
				return nil, fmt.Errorf("unknown pattern letters %q (quote literal text: 'T')", tok)
			}
			if c == 'S' {
				prev := lit.String()
				if !strings.HasSuffix(prev, ".") && !strings.HasSuffix(prev, ",") {
					return nil, fmt.Errorf("%s must follow . or ,", tok)
				}
				lit.Reset()
				lit.WriteString(prev[:len(prev)-1])
				elem = prev[len(prev)-1:] + elem
			}
			if err := flush(elem); err != nil {
				return nil, err
			}
			if tok == "H" {
				p.hours = append(p.hours, layout.Len())
			}
			layout.WriteString(elem)
			p.zoned = p.zoned || zoned
			if p.tokens[elem] == "" {
				p.tokens[elem] = tok
			}
			i = j
		default:
			lit.WriteRune(c)
			i++
		}
	}
	if err := flush(""); err != nil {
		return nil, err
	}
	p.layout = layout.String()
	return p, nil
}

// layoutElem is the Go layout element for n repetitions of pattern letter
// c, or "" when there is none.
func layoutElem(c rune, n int) (elem string, zoned bool) {
	pick := func(elems ...string) string {
		if n > len(elems) {
			return ""
		}
		return elems[n-1]
	}
	switch c {
	case 'y':
		return pick("2006", "06", "2006", "2006"), false
	case 'M':
		return pick("1", "01", "Jan", "January"), false
	case 'd':
		return pick("2", "02"), false
	case 'H':
		return pick("15", "15"), false
	case 'h':
		return pick("3", "03"), false
	case 'm':
		return pick("4", "04"), false
	case 's':
		return pick("5", "05"), false
	case 'S':
		if n <= 9 {
			return strings.Repeat("0", n), false
		}
	case 'a':
		return pick("PM"), false
	case 'E':
		return pick("Mon", "Mon", "Mon", "Monday"), false
	case 'X':
		return pick("Z07", "Z0700", "Z07:00"), true
	case 'x':
		return pick("-07", "-0700", "-07:00"), true
	case 'Z':
		return pick("-0700", "-0700", "-0700", "", "Z07:00"), true
	case 'z':
		return pick("MST", "MST", "MST"), true
	}
	return "", false
}

// format writes t in p.
func (p *datePattern) format(t time.Time) string {
	if len(p.hours) == 0 {
		return t.Format(p.layout)
	}
	var b []byte
	last := 0
	for _, i := range p.hours {
		b = t.AppendFormat(b, p.layout[last:i])
		b = strconv.AppendInt(b, int64(t.Hour()), 10)
		last = i + len("15")
	}
	return string(t.AppendFormat(b, p.layout[last:]))
}

// parse reads s written in p; text without offset is read in loc.
func (p *datePattern) parse(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if p.iso {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t, nil
			}
		}
		return time.Time{}, errors.New(`expected e.g. "2024-01-31T09:30:00Z", "2024-01-31T09:30:00" or "2024-01-31"`)
	}
	t, err := time.ParseInLocation(p.layout, s, loc)
	var pe *time.ParseError
	if err == nil || !errors.As(err, &pe) {
		return t, err
	}
	where := fmt.Sprintf("at %q", pe.ValueElem)
	if pe.ValueElem == "" {
		where = "at the end"
	}
	switch {
	case pe.Message != "":
		return t, errors.New(strings.TrimPrefix(pe.Message, ": "))
	case p.tokens[pe.LayoutElem] != "":
		return t, fmt.Errorf("expected %s %s", p.tokens[pe.LayoutElem], where)
	}
	return t, fmt.Errorf("expected %q %s", pe.LayoutElem, where)
}

var locations sync.Map // name -> *time.Location

// locationArg reads a time zone: an IANA name such as "Europe/Zurich", or
// the value of expr's timezone().
func locationArg(v any) (*time.Location, error) {
	if l, ok := v.(*time.Location); ok && l != nil {
		return l, nil
	}
	name, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("timezone: %s is not a time zone name", describe(v))
	}
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		return nil, fmt.Errorf(`timezone: %q is not a time zone (use an IANA name such as "Europe/Zurich" or "UTC")`, name)
	}
	locations.Store(name, l)
	return l, nil
}

// timeArg reads a date: a time.Time, RFC 3339 text (text without offset,
// or a bare date, is UTC) or unix seconds.
func timeArg(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case string:
		if d, err := (&datePattern{iso: true}).parse(t, time.UTC); err == nil {
			return d, nil
		}
	case int:
		return time.Unix(int64(t), 0).UTC(), nil
	case float64, json.Number:
		if f, err := strconv.ParseFloat(stringOf(t), 64); err == nil && math.Abs(f) < 1e12 {
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf(`%s is not a date (expected e.g. "2024-01-31T09:30:00Z" or unix seconds)`, describe(v))
}

func parseDate(args ...any) (any, error) {
	pattern, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("pattern: %s is not a pattern", describe(args[1]))
	}
	p, err := compileDatePattern(pattern)
	if err != nil {
		return nil, err
	}
	loc := time.UTC
	if len(args) > 2 {
		if loc, err = locationArg(args[2]); err != nil {
			return nil, err
		}
	}
	switch v := args[0].(type) {
	case time.Time:
		return v, nil
	case nil:
		return nil, fmt.Errorf("null does not match pattern %q", pattern)
	}
	t, err := p.parse(stringOf(args[0]), loc)
	if err != nil {
		return nil, fmt.Errorf("%s does not match pattern %q: %w", describe(args[0]), pattern, err)
	}
	// Go reads a zone abbreviation that loc does not use (EST in UTC, PDT
	// in Europe/Zurich) as offset 0 in a made-up zone, which would move
	// the instant by hours without a word.
	if zone, off := t.Zone(); strings.Contains(p.layout, "MST") && off == 0 && t.Location() != loc && zone != "UTC" && zone != "GMT" {
		return nil, fmt.Errorf("%s: the offset of time zone %q is not known in %s "+
			"(read an offset instead, with XXX or Z in the pattern, or pass the time zone the text is written in, e.g. \"America/New_York\")",
			describe(args[0]), zone, loc)
	}
	return t, nil
}

func formatDate(args ...any) (any, error) {
	t, err := timeArg(args[0])
	if err != nil {
		return nil, err
	}
	pattern, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("pattern: %s is not a pattern", describe(args[1]))
	}
	p, err := compileDatePattern(pattern)
	if err != nil {
		return nil, err
	}
	if len(args) > 2 {
		loc, err := locationArg(args[2])
		if err != nil {
			return nil, err
		}
		t = t.In(loc)
	}
	return p.format(t), nil
}

func toTimezone(args ...any) (any, error) {
	t, err := timeArg(args[0])
	if err != nil {
		return nil, err
	}
	loc, err := locationArg(args[1])
	if err != nil {
		return nil, err
	}
	return t.In(loc), nil
}

func addDays(args ...any) (any, error) {
	t, err := timeArg(args[0])
	if err != nil {
		return nil, err
	}
	n, err := intArg("n", args[1])
	if err != nil {
		return nil, err
	}
	return t.AddDate(0, 0, n), nil
}

func addDuration(args ...any) (any, error) {
	t, err := timeArg(args[0])
	if err != nil {
		return nil, err
	}
	d, ok := args[1].(time.Duration)
	if s, isText := args[1].(string); isText {
		var perr error
		d, perr = time.ParseDuration(strings.TrimSpace(s))
		ok = perr == nil
	}
	if !ok {
		return nil, fmt.Errorf(`duration: %s is not a duration (write e.g. "2h30m", "-15m" or "90s")`, describe(args[1]))
	}
	return t.Add(d), nil
}

func unixSeconds(args ...any) (any, error) {
	t, err := timeArg(args[0])
	if err != nil {
		return nil, err
	}
	return int(t.Unix()), nil
}

func today(args ...any) (any, error) {
	loc := time.UTC
	if len(args) > 0 {
		var err error
		if loc, err = locationArg(args[0]); err != nil {
			return nil, err
		}
	}
	return nowFunc().In(loc).Format("2006-01-02"), nil
}
