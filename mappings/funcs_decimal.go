package mappings

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// maxScale bounds the digits after the point (and the exponent) of a
// decimal, so that "1e999999999" cannot ask for a billion zeros.
const maxScale = 100

func init() {
	for _, f := range []Function{
		{Name: "decimal", Signature: "decimal(x) string", Fn: decUnary(func(d decimal.Decimal) decimal.Decimal { return d }),
			Description: "Returns x as exact decimal text, keeping its own digits after the point. A JSON number has no such digits: 19.90 in a body is the number 19.9 (as in JavaScript); format it with dec_round(x, 2), or send amounts as text.",
			Example:     `decimal("19.90") == "19.90" && decimal(5) == "5"`},
		{Name: "dec_add", Signature: "dec_add(a, b, ...) string", Fn: decAdd,
			Description: "Adds decimal numbers exactly.",
			Example:     `dec_add("1.10", "2.205", 0.1) == "3.405"`},
		{Name: "dec_sub", Signature: "dec_sub(a, b) string", Fn: decBinary(decimal.Decimal.Sub),
			Description: "Subtracts b from a exactly.",
			Example:     `dec_sub("10.00", "0.01") == "9.99"`},
		{Name: "dec_mul", Signature: "dec_mul(a, b) string", Fn: decBinary(decimal.Decimal.Mul),
			Description: "Multiplies a by b exactly; round the result with dec_round.",
			Example:     `dec_mul("19.99", 3) == "59.97"`},
		{Name: "dec_div", Signature: "dec_div(a, b, places) string", Fn: decDiv,
			Description: "Divides a by b, rounding half up to places digits after the point; dividing by zero is an error.",
			Example:     `dec_div("10", "3", 2) == "3.33"`},
		{Name: "dec_round", Signature: "dec_round(x, places[, mode]) string", Fn: decRound,
			Description: `Rounds x to exactly places digits after the point; mode is "half_up" (default), "half_even", "down", "up", "ceiling" or "floor".`,
			Example:     `dec_round("2.345", 2) == "2.35" && dec_round("2.345", 2, "half_even") == "2.34"`},
		{Name: "dec_sum", Signature: "dec_sum(list[, field]) string", Fn: decSum,
			Description: "Adds up a list of numbers exactly, or the given field of a list of objects.",
			Example:     `dec_sum([{"amount": "1.10"}, {"amount": 2.2}], "amount") == "3.30"`},
		{Name: "dec_cmp", Signature: "dec_cmp(a, b) int", Fn: decCmp,
			Description: "Compares a and b as decimals: -1 when a is smaller, 0 when equal, 1 when greater.",
			Example:     `dec_cmp("1.10", 1.1) == 0`},
		{Name: "dec_neg", Signature: "dec_neg(x) string", Fn: decUnary(decimal.Decimal.Neg),
			Description: "Returns x with its sign flipped.",
			Example:     `dec_neg("12.50") == "-12.50"`},
		{Name: "dec_abs", Signature: "dec_abs(x) string", Fn: decUnary(decimal.Decimal.Abs),
			Description: "Returns x without its sign.",
			Example:     `dec_abs("-12.50") == "12.50"`},
		{Name: "format_number", Signature: "format_number(x, places[, decimal_sep[, thousands_sep]]) string", Fn: formatNumber,
			Description: `Formats x rounded half up to places digits, with a decimal separator (default ".") and thousands separator (default ",").`,
			Example:     `format_number("1234567.891", 2, ",", ".") == "1.234.567,89"`},
	} {
		registerLib(f)
	}
}

// decArg reads a decimal from a payload value: text, any integer, a float
// (through its shortest text form, never float arithmetic) or json.Number.
func decArg(v any) (decimal.Decimal, error) {
	var s string
	switch n := v.(type) {
	case decimal.Decimal:
		return n, nil
	case int:
		return decimal.NewFromInt(int64(n)), nil
	case string:
		s = strings.TrimSpace(n)
	case json.Number:
		s = string(n)
	case float64:
		if !math.IsNaN(n) && !math.IsInf(n, 0) {
			s = strconv.FormatFloat(n, 'f', -1, 64)
		}
	case float32:
		s = strconv.FormatFloat(float64(n), 'f', -1, 32)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return decimal.NewFromInt(rv.Int()), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return decimal.NewFromUint64(rv.Uint()), nil
		}
	}
	d, err := decimal.NewFromString(s)
	switch {
	case err != nil:
		return d, fmt.Errorf("%s is not a decimal number", describe(v))
	case d.Exponent() < -maxScale || d.Exponent() > maxScale:
		return d, fmt.Errorf("%s has more than %d digits after the point or is too large", describe(v), maxScale)
	}
	return d, nil
}

// decString writes d with all the digits after the point it carries, so
// that 19.90 stays "19.90" and 1e3 becomes "1000".
func decString(d decimal.Decimal) string {
	if d.Exponent() < 0 {
		return d.StringFixed(-d.Exponent())
	}
	return d.String()
}

func placesArg(v any) (int32, error) {
	n, err := countArg("places", v, maxScale)
	return int32(n), err
}

func decUnary(f func(decimal.Decimal) decimal.Decimal) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		d, err := decArg(args[0])
		if err != nil {
			return nil, err
		}
		return decString(f(d)), nil
	}
}

// decPair reads the first two arguments as decimals.
func decPair(args []any) (a, b decimal.Decimal, err error) {
	if a, err = decArg(args[0]); err != nil {
		return a, b, err
	}
	b, err = decArg(args[1])
	return a, b, err
}

func decBinary(f func(a, b decimal.Decimal) decimal.Decimal) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		a, b, err := decPair(args)
		if err != nil {
			return nil, err
		}
		return decString(f(a, b)), nil
	}
}

func decAdd(args ...any) (any, error) {
	sum := decimal.Zero
	for _, v := range args {
		d, err := decArg(v)
		if err != nil {
			return nil, err
		}
		sum = sum.Add(d)
	}
	return decString(sum), nil
}

func decDiv(args ...any) (any, error) {
	a, b, err := decPair(args)
	if err != nil {
		return nil, err
	}
	places, err := placesArg(args[2])
	if err != nil {
		return nil, err
	}
	if b.IsZero() {
		return nil, fmt.Errorf("cannot divide %s by zero", decString(a))
	}
	return a.DivRound(b, places).StringFixed(places), nil
}

var roundModes = map[string]func(d decimal.Decimal, places int32) decimal.Decimal{
	"half_up":   decimal.Decimal.Round,
	"half_even": decimal.Decimal.RoundBank,
	"down":      decimal.Decimal.RoundDown,
	"up":        decimal.Decimal.RoundUp,
	"ceiling":   decimal.Decimal.RoundCeil,
	"floor":     decimal.Decimal.RoundFloor,
}

func decRound(args ...any) (any, error) {
	d, err := decArg(args[0])
	if err != nil {
		return nil, err
	}
	places, err := placesArg(args[1])
	if err != nil {
		return nil, err
	}
	round := decimal.Decimal.Round
	if len(args) > 2 {
		var ok bool
		if round, ok = roundModes[stringOf(args[2])]; !ok {
			return nil, fmt.Errorf(`mode %s is not one of "half_up", "half_even", "down", "up", "ceiling", "floor"`, describe(args[2]))
		}
	}
	return round(d, places).StringFixed(places), nil
}

func decSum(args ...any) (any, error) {
	list, ok := jsonv.AsList(args[0])
	if !ok {
		return nil, fmt.Errorf("%s is not a list", describe(args[0]))
	}
	var field string
	if len(args) > 1 {
		if field, ok = args[1].(string); !ok {
			return nil, fmt.Errorf("field: %s is not a field name", describe(args[1]))
		}
	}
	sum := decimal.Zero
	for i, v := range list {
		if len(args) > 1 {
			m := reflect.ValueOf(v)
			if m.Kind() != reflect.Map || m.Type().Key().Kind() != reflect.String {
				return nil, fmt.Errorf("item %d: %s is not an object", i, describe(v))
			}
			f := m.MapIndex(reflect.ValueOf(field).Convert(m.Type().Key()))
			if !f.IsValid() {
				return nil, fmt.Errorf("item %d has no field %q", i, field)
			}
			v = f.Interface()
		}
		d, err := decArg(v)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		sum = sum.Add(d)
	}
	return decString(sum), nil
}

func decCmp(args ...any) (any, error) {
	a, b, err := decPair(args)
	if err != nil {
		return nil, err
	}
	return a.Cmp(b), nil
}

func formatNumber(args ...any) (any, error) {
	d, err := decArg(args[0])
	if err != nil {
		return nil, err
	}
	places, err := placesArg(args[1])
	if err != nil {
		return nil, err
	}
	decSep, thousSep := ".", ","
	if len(args) > 2 {
		decSep = stringOf(args[2])
	}
	if len(args) > 3 {
		thousSep = stringOf(args[3])
	}
	s := d.StringFixed(places)
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteString(thousSep)
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString(decSep + frac)
	}
	return b.String(), nil
}
