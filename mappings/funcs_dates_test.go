package mappings

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestDatePatterns(t *testing.T) {
	for _, c := range []struct{ pattern, layout, err string }{
		{pattern: "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", layout: "2006-01-02T15:04:05.000Z07:00"},
		{pattern: "yy/M/d h:m:s a", layout: "06/1/2 3:4:5 PM"},
		{pattern: "EEE, dd MMM yyyy HH:mm:ss Z", layout: "Mon, 02 Jan 2006 15:04:05 -0700"},
		{pattern: "EEEE d MMMM", layout: "Monday 2 January"},
		{pattern: "yyyyMMddHHmmss", layout: "20060102150405"},
		{pattern: "HH:mm:ss,SSS xx", layout: "15:04:05,000 -0700"},
		{pattern: "'at' h 'o''clock'", layout: "at 3 o'clock"},
		{pattern: "d''MM", layout: "2'01"},
		{pattern: "yyyy-QQ", err: `pattern "yyyy-QQ": unknown pattern letters "QQ" (quote literal text: 'T')`},
		{pattern: "yyyy-MM-ddTHH", err: `pattern "yyyy-MM-ddTHH": unknown pattern letters "T" (quote literal text: 'T')`},
		{pattern: "ddd", err: `pattern "ddd": unknown pattern letters "ddd" (quote literal text: 'T')`},
		{pattern: "HH:mm:ssSSS", err: `pattern "HH:mm:ssSSS": SSS must follow . or ,`},
		{pattern: "yyyy 'Q1'", err: `pattern "yyyy 'Q1'": literal text " Q1" cannot contain digits`},
		{pattern: "'Monday' d", err: `pattern "'Monday' d": literal text "Monday " cannot contain "Mon"`},
		{pattern: "M_d", err: `pattern "M_d": literal text "_" cannot end in _ before d`},
		{pattern: "yyyy 'week", err: `pattern "yyyy 'week": quote ' is not closed`},
		{pattern: "", err: `pattern "": empty pattern`},
	} {
		p, err := compileDatePattern(c.pattern)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%q: error %v, want %q", c.pattern, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.pattern, err)
		case c.err == "" && p.layout != c.layout:
			t.Errorf("%q: layout %q, want %q", c.pattern, p.layout, c.layout)
		}
	}
}

func TestDates(t *testing.T) {
	zurich, _ := time.LoadLocation("Europe/Zurich")
	plus2 := time.FixedZone("", 2*3600)
	jan31 := time.Date(2024, 1, 31, 13, 30, 0, 0, time.UTC)
	defer func(f func() time.Time) { nowFunc = f }(nowFunc)
	nowFunc = func() time.Time { return time.Date(2024, 1, 31, 23, 30, 0, 0, time.UTC) }

	runCalls(t, []callCase{
		{fn: "parse_date", args: []any{"31.01.2024 14:30", "dd.MM.yyyy HH:mm", "Europe/Zurich"}, want: time.Date(2024, 1, 31, 14, 30, 0, 0, zurich)},
		{fn: "parse_date", args: []any{"31.01.2024", "dd.MM.yyyy"}, want: time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)},
		{fn: "parse_date", args: []any{"2024-01-31T15:30:00.250+02:00", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "Europe/Zurich"}, want: time.Date(2024, 1, 31, 15, 30, 0, 250e6, plus2)},
		{fn: "parse_date", args: []any{"2024-01-31T13:30:00Z", "yyyy-MM-dd'T'HH:mm:ssXXX"}, want: jan31},
		{fn: "parse_date", args: []any{"Wed, 31 Jan 2024 13:30:00 +0000", "EEE, dd MMM yyyy HH:mm:ss Z"}, want: jan31.In(time.FixedZone("", 0))},
		{fn: "parse_date", args: []any{"1/31/24 1:30 PM", "M/d/yy h:mm a"}, want: jan31},
		{fn: "parse_date", args: []any{20240131, "yyyyMMdd"}, want: time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)},
		{fn: "parse_date", args: []any{json.Number("20240131"), "yyyyMMdd"}, want: time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)},
		{fn: "parse_date", args: []any{" 2024-01-31 ", "iso"}, want: time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)},
		{fn: "parse_date", args: []any{"2024-01-31T14:30:00", "iso", "Europe/Zurich"}, want: time.Date(2024, 1, 31, 14, 30, 0, 0, zurich)},
		{fn: "parse_date", args: []any{"2024-01-31T13:30:00Z", "rfc3339"}, want: jan31},
		{fn: "parse_date", args: []any{jan31, "iso"}, want: jan31},
		{fn: "parse_date", args: []any{"2024-01-31", "rfc3339"}, err: `parse_date: "2024-01-31" does not match pattern "rfc3339": expected "T" at the end`},
		{fn: "parse_date", args: []any{"2024-01-31T10:00", "rfc3339"}, err: `parse_date: "2024-01-31T10:00" does not match pattern "rfc3339": expected ":" at the end`},
		{fn: "parse_date", args: []any{"2024-01-31T10:00:00", "rfc3339"}, err: `parse_date: "2024-01-31T10:00:00" does not match pattern "rfc3339": expected XXX at the end`},
		{fn: "parse_date", args: []any{"24-01-31T10:00:00Z", "rfc3339"}, err: `parse_date: "24-01-31T10:00:00Z" does not match pattern "rfc3339": expected yyyy at "24-01-31T10:00:00Z"`},
		{fn: "parse_date", args: []any{"31/01/2024", "iso"}, err: `parse_date: "31/01/2024" does not match pattern "iso": expected e.g. "2024-01-31T09:30:00Z", "2024-01-31T09:30:00" or "2024-01-31"`},
		{fn: "parse_date", args: []any{"31/01/2024", "dd.MM.yyyy"}, err: `parse_date: "31/01/2024" does not match pattern "dd.MM.yyyy": expected "." at "/01/2024"`},
		{fn: "parse_date", args: []any{"2024-13-01", "yyyy-MM-dd"}, err: `parse_date: "2024-13-01" does not match pattern "yyyy-MM-dd": month out of range`},
		{fn: "parse_date", args: []any{"24-01-31", "yyyy-MM-dd"}, err: `parse_date: "24-01-31" does not match pattern "yyyy-MM-dd": expected yyyy at "24-01-31"`},
		{fn: "parse_date", args: []any{"2024-01-31 10:00", "yyyy-MM-dd"}, err: `parse_date: "2024-01-31 10:00" does not match pattern "yyyy-MM-dd": extra text: " 10:00"`},
		{fn: "parse_date", args: []any{nil, "yyyy-MM-dd"}, err: `parse_date: null does not match pattern "yyyy-MM-dd"`},
		{fn: "parse_date", args: []any{"2024", "yyyy", "Mars/Olympus"}, err: `parse_date: timezone: "Mars/Olympus" is not a time zone (use an IANA name such as "Europe/Zurich" or "UTC")`},
		{fn: "parse_date", args: []any{"2024", "yyyy", "Local"}, err: `parse_date: timezone: "Local" is not a time zone (use an IANA name such as "Europe/Zurich" or "UTC")`},
		{fn: "parse_date", args: []any{"2024", 4}, err: `parse_date: pattern: 4 is not a pattern`},
		{fn: "parse_date", args: []any{"2024", "yyyy-QQ"}, err: `parse_date: pattern "yyyy-QQ": unknown pattern letters "QQ" (quote literal text: 'T')`},

		{fn: "format_date", args: []any{jan31, "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"}, want: "2024-01-31T13:30:00.000Z"},
		{fn: "format_date", args: []any{jan31, "yyyy-MM-dd'T'HH:mm:ssXXX", "Europe/Zurich"}, want: "2024-01-31T14:30:00+01:00"},
		{fn: "format_date", args: []any{jan31, "EEEE d MMMM yy, hh:mm a Z", "America/New_York"}, want: "Wednesday 31 January 24, 08:30 AM -0500"},
		{fn: "format_date", args: []any{"2024-01-31T15:30:00+02:00", "HH:mm xxx"}, want: "15:30 +02:00"},
		{fn: "format_date", args: []any{"2024-01-31", "dd.MM.yyyy"}, want: "31.01.2024"},
		{fn: "format_date", args: []any{1706707800, "iso"}, want: "2024-01-31T13:30:00Z"},
		{fn: "format_date", args: []any{1706707800.5, "rfc3339"}, want: "2024-01-31T13:30:00.5Z"},
		{fn: "format_date", args: []any{json.Number("1706707800"), "iso", "Asia/Tokyo"}, want: "2024-01-31T22:30:00+09:00"},
		{fn: "format_date", args: []any{"31.01.2024", "iso"}, err: `format_date: "31.01.2024" is not a date (expected e.g. "2024-01-31T09:30:00Z" or unix seconds)`},
		{fn: "format_date", args: []any{nil, "iso"}, err: `format_date: null is not a date (expected e.g. "2024-01-31T09:30:00Z" or unix seconds)`},
		{fn: "format_date", args: []any{jan31, "dd.mm.YYYY"}, err: `format_date: pattern "dd.mm.YYYY": unknown pattern letters "YYYY" (quote literal text: 'T')`},

		{fn: "to_timezone", args: []any{jan31, "Asia/Kolkata"}, want: time.Date(2024, 1, 31, 19, 0, 0, 0, mustLoc("Asia/Kolkata"))},
		{fn: "to_timezone", args: []any{"2024-01-31T13:30:00Z", "UTC"}, want: jan31},
		{fn: "to_timezone", args: []any{jan31, 1}, err: `to_timezone: timezone: 1 is not a time zone name`},

		{fn: "add_days", args: []any{"2024-02-28", 1}, want: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{fn: "add_days", args: []any{jan31, -31}, want: time.Date(2023, 12, 31, 13, 30, 0, 0, time.UTC)},
		{fn: "add_days", args: []any{time.Date(2024, 3, 30, 12, 0, 0, 0, zurich), 1}, want: time.Date(2024, 3, 31, 12, 0, 0, 0, zurich)},
		{fn: "add_days", args: []any{jan31, "one"}, err: `add_days: n: "one" is not a whole number`},
		{fn: "add_duration", args: []any{jan31, "2h30m"}, want: time.Date(2024, 1, 31, 16, 0, 0, 0, time.UTC)},
		{fn: "add_duration", args: []any{jan31, -90 * time.Second}, want: time.Date(2024, 1, 31, 13, 28, 30, 0, time.UTC)},
		{fn: "add_duration", args: []any{jan31, "2 days"}, err: `add_duration: duration: "2 days" is not a duration (write e.g. "2h30m", "-15m" or "90s")`},
		{fn: "add_duration", args: []any{jan31, 3600}, err: `add_duration: duration: 3600 is not a duration (write e.g. "2h30m", "-15m" or "90s")`},

		{fn: "unix", args: []any{jan31}, want: 1706707800},
		{fn: "unix", args: []any{"2024-01-31T14:30:00+01:00"}, want: 1706707800},
		{fn: "unix", args: []any{1706707800}, want: 1706707800},
		{fn: "unix", args: []any{true}, err: `unix: true is not a date (expected e.g. "2024-01-31T09:30:00Z" or unix seconds)`},

		{fn: "today", args: nil, want: "2024-01-31"},
		{fn: "today", args: []any{"Europe/Zurich"}, want: "2024-02-01"},
		{fn: "today", args: []any{mustLoc("America/New_York")}, want: "2024-01-31"},
	})
}

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// A zone abbreviation the time zone does not know is refused: Go reads it
// as offset 0, so "09:30 EST" would silently become 09:30 UTC. UTC, GMT and
// abbreviations of the given time zone are still read.
func TestParseDateZoneAbbreviation(t *testing.T) {
	for _, c := range []struct {
		src  string
		want int // 0: an error naming the zone
	}{
		{`unix(parse_date("2024-01-31 09:30 EST", "yyyy-MM-dd HH:mm z"))`, 0},
		{`unix(parse_date("2024-01-31 09:30 CET", "yyyy-MM-dd HH:mm z"))`, 0},
		{`unix(parse_date("2024-07-01 09:30 PDT", "yyyy-MM-dd HH:mm z", "Europe/Zurich"))`, 0},
		{`unix(parse_date("2024-01-31 09:30 EST", "yyyy-MM-dd HH:mm z", "America/New_York"))`, 1706711400},
		{`unix(parse_date("2024-01-31 09:30 CET", "yyyy-MM-dd HH:mm z", "Europe/Berlin"))`, 1706689800},
		{`unix(parse_date("2024-01-31 09:30 UTC", "yyyy-MM-dd HH:mm z"))`, 1706693400},
		{`unix(parse_date("2024-01-31 09:30 UTC", "yyyy-MM-dd HH:mm z", "Europe/Zurich"))`, 1706693400},
		{`unix(parse_date("2024-01-31 09:30 GMT", "yyyy-MM-dd HH:mm z"))`, 1706693400},
		{`unix(parse_date("2024-01-31 09:30 GMT", "yyyy-MM-dd HH:mm z", "Europe/London"))`, 1706693400},
	} {
		got, err := evalAt(t, c.src, nil)
		switch {
		case c.want == 0 && (err == nil || !strings.Contains(err.Error(), "time zone") || !strings.Contains(err.Error(), "XXX")):
			t.Errorf("%s = %v, %v; want an error naming the zone", c.src, got, err)
		case c.want != 0 && (err != nil || !equalValue(got, c.want)):
			t.Errorf("%s = %v, %v; want %d", c.src, got, err, c.want)
		}
	}
}

// A single H writes the hour without a leading zero, as h does.
func TestFormatDateSingleH(t *testing.T) {
	for _, c := range []struct{ value, pattern, want string }{
		{"2024-01-31T09:05:00Z", "H:mm", "9:05"},
		{"2024-01-31T19:05:00Z", "H:mm", "19:05"},
		{"2024-01-31T00:05:00Z", "H'h'mm", "0h05"},
		{"2024-01-31T09:05:00Z", "HH:mm", "09:05"},
		{"2024-01-31T09:05:00Z", "yyyy-MM-dd H", "2024-01-31 9"},
		{"2024-01-31T09:05:00Z", "H/H", "9/9"},
		{"2024-01-31T09:05:00Z", "dd.MM. H 'Uhr'", "31.01. 9 Uhr"},
	} {
		got, err := evalAt(t, fmt.Sprintf("format_date(%q, %q)", c.value, c.pattern), nil)
		if err != nil || got != c.want {
			t.Errorf("format_date(%q, %q) = %v, %v; want %q", c.value, c.pattern, got, err, c.want)
		}
	}
	got, err := evalAt(t, `unix(parse_date("2024-01-31 9:05", "yyyy-MM-dd H:mm"))`, nil)
	if err != nil || !equalValue(got, 1706691900) {
		t.Errorf("parse_date with H = %v, %v", got, err)
	}
}
