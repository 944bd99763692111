package mappings

import (
	"encoding/json"
	"testing"
)

func TestDecimals(t *testing.T) {
	big := json.Number("820982911946154777.01")
	runCalls(t, []callCase{
		{fn: "decimal", args: []any{"19.90"}, want: "19.90"},
		{fn: "decimal", args: []any{19.9}, want: "19.9"},
		{fn: "decimal", args: []any{5}, want: "5"},
		{fn: "decimal", args: []any{int64(-5)}, want: "-5"},
		{fn: "decimal", args: []any{uint64(18446744073709551615)}, want: "18446744073709551615"},
		{fn: "decimal", args: []any{" 1.50 "}, want: "1.50"},
		{fn: "decimal", args: []any{"1e3"}, want: "1000"},
		{fn: "decimal", args: []any{"-0.00"}, want: "0.00"},
		{fn: "decimal", args: []any{1e21}, want: "1000000000000000000000"},
		{fn: "decimal", args: []any{big}, want: "820982911946154777.01"},
		{fn: "decimal", args: []any{"12,50"}, err: `decimal: "12,50" is not a decimal number`},
		{fn: "decimal", args: []any{""}, err: `decimal: "" is not a decimal number`},
		{fn: "decimal", args: []any{nil}, err: `decimal: null is not a decimal number`},
		{fn: "decimal", args: []any{true}, err: `decimal: true is not a decimal number`},
		{fn: "decimal", args: []any{[]any{1}}, err: `decimal: a list is not a decimal number`},
		{fn: "decimal", args: []any{"1e200"}, err: `decimal: "1e200" has more than 100 digits after the point or is too large`},
		{fn: "decimal", args: []any{"1e999999999"}, err: `decimal: "1e999999999" is not a decimal number`},

		{fn: "dec_add", args: []any{0.1, 0.2}, want: "0.3"},
		{fn: "dec_add", args: []any{"1.10", "2.20"}, want: "3.30"},
		{fn: "dec_add", args: []any{big, "0.99"}, want: "820982911946154778.00"},
		{fn: "dec_add", args: []any{"1", 2, 3.5, json.Number("4")}, want: "10.5"},
		{fn: "dec_add", args: []any{"1", "12,50"}, err: `dec_add: "12,50" is not a decimal number`},
		{fn: "dec_sub", args: []any{0.3, 0.1}, want: "0.2"},
		{fn: "dec_sub", args: []any{"1.00", big}, want: "-820982911946154776.01"},
		{fn: "dec_mul", args: []any{"1.10", 3}, want: "3.30"},
		{fn: "dec_mul", args: []any{1.1, 1.1}, want: "1.21"},
		{fn: "dec_mul", args: []any{"x", 1}, err: `dec_mul: "x" is not a decimal number`},

		{fn: "dec_div", args: []any{"10", "3", 2}, want: "3.33"},
		{fn: "dec_div", args: []any{"2", "3", 2}, want: "0.67"},
		{fn: "dec_div", args: []any{"-2", "3", 2}, want: "-0.67"},
		{fn: "dec_div", args: []any{"1", "8", 2}, want: "0.13"},
		{fn: "dec_div", args: []any{"6", "3", 0}, want: "2"},
		{fn: "dec_div", args: []any{"6", "3", 2}, want: "2.00"},
		{fn: "dec_div", args: []any{"6", "0.00", 2}, err: "dec_div: cannot divide 6 by zero"},
		{fn: "dec_div", args: []any{"6", "3", -1}, err: "dec_div: places must not be negative, got -1"},
		{fn: "dec_div", args: []any{"6", "3", 101}, err: "dec_div: places must be at most 100, got 101"},

		{fn: "dec_round", args: []any{"2.5", 0}, want: "3"},
		{fn: "dec_round", args: []any{"-2.5", 0}, want: "-3"},
		{fn: "dec_round", args: []any{"1", 2}, want: "1.00"},
		{fn: "dec_round", args: []any{"1.005", 2}, want: "1.01"},
		{fn: "dec_round", args: []any{1.005, 2}, want: "1.01"},
		{fn: "dec_round", args: []any{"2.5", 0, "half_even"}, want: "2"},
		{fn: "dec_round", args: []any{"3.5", 0, "half_even"}, want: "4"},
		{fn: "dec_round", args: []any{"1.239", 2, "down"}, want: "1.23"},
		{fn: "dec_round", args: []any{"-1.239", 2, "down"}, want: "-1.23"},
		{fn: "dec_round", args: []any{"1.231", 2, "up"}, want: "1.24"},
		{fn: "dec_round", args: []any{"-1.231", 2, "up"}, want: "-1.24"},
		{fn: "dec_round", args: []any{"-1.239", 2, "ceiling"}, want: "-1.23"},
		{fn: "dec_round", args: []any{"-1.231", 2, "floor"}, want: "-1.24"},
		{fn: "dec_round", args: []any{"1.2", 3, "floor"}, want: "1.200"},
		{fn: "dec_round", args: []any{"1.5", 0, "nearest"}, err: `dec_round: mode "nearest" is not one of "half_up", "half_even", "down", "up", "ceiling", "floor"`},
		{fn: "dec_round", args: []any{"1.5", "two"}, err: `dec_round: places: "two" is not a whole number`},

		{fn: "dec_sum", args: []any{[]any{0.1, 0.2, "0.30", 1}}, want: "1.60"},
		{fn: "dec_sum", args: []any{[]any{}}, want: "0"},
		{fn: "dec_sum", args: []any{[]string{"1.5", "2.5"}}, want: "4.0"},
		{fn: "dec_sum", args: []any{[]any{map[string]any{"amount": big}, map[string]any{"amount": 0.99}}, "amount"}, want: "820982911946154778.00"},
		{fn: "dec_sum", args: []any{[]any{map[string]string{"amount": "1.5"}}, "amount"}, want: "1.5"},
		{fn: "dec_sum", args: []any{[]any{map[string]any{"amount": 1}, map[string]any{}}, "amount"}, err: `dec_sum: item 1 has no field "amount"`},
		{fn: "dec_sum", args: []any{[]any{1, "x"}}, err: `dec_sum: item 1: "x" is not a decimal number`},
		{fn: "dec_sum", args: []any{[]any{1}, "amount"}, err: `dec_sum: item 0: 1 is not an object`},
		{fn: "dec_sum", args: []any{nil}, err: `dec_sum: null is not a list`},

		{fn: "dec_cmp", args: []any{"1.10", 1.1}, want: 0},
		{fn: "dec_cmp", args: []any{0.1, "0.10000000000000001"}, want: -1},
		{fn: "dec_cmp", args: []any{big, json.Number("820982911946154777.00")}, want: 1},
		{fn: "dec_neg", args: []any{"0.50"}, want: "-0.50"},
		{fn: "dec_neg", args: []any{"-3"}, want: "3"},
		{fn: "dec_abs", args: []any{-1.5}, want: "1.5"},

		{fn: "format_number", args: []any{"1234567.891", 2, ",", "."}, want: "1.234.567,89"},
		{fn: "format_number", args: []any{"1234567.891", 2}, want: "1,234,567.89"},
		{fn: "format_number", args: []any{-1234.5, 0, ".", "'"}, want: "-1'235"},
		{fn: "format_number", args: []any{1.005, 2}, want: "1.01"},
		{fn: "format_number", args: []any{"999.999", 2}, want: "1,000.00"},
		{fn: "format_number", args: []any{"-0.001", 2}, want: "0.00"},
		{fn: "format_number", args: []any{"123456", 0, ".", ""}, want: "123456"},
		{fn: "format_number", args: []any{big, 1, ",", " "}, want: "820 982 911 946 154 777,0"},
		{fn: "format_number", args: []any{"abc", 2}, err: `format_number: "abc" is not a decimal number`},
	})
}
