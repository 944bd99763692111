package mappings

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/conveyor-run/conveyor/mappings/x12"
)

func init() {
	for _, f := range []Function{
		{Name: "x12_parse", Signature: "x12_parse(text) any", Fn: x12Parse,
			Description: "Parses an X12 EDI interchange into {isa, separators, groups: [{gs, transactions: [{set, control, segments}]}]}, segments nested by loop; " +
				"an 850, 856 or 810 also gets its friendly form purchase_order, ship_notice or invoice. A malformed interchange is an error naming the segment and byte.",
			Example: `x12_parse("ISA*00*          *00*          *ZZ*BUYER          *ZZ*SELLER         *240115*0930*U*00401*000000001*0*P*>~` +
				`GS*PO*BUYER*SELLER*20240115*0930*1*X*004010~ST*850*0001~BEG*00*SA*PO-1001**20240115~PO1*1*10*EA*9.95**VP*W-1~CTT*1~SE*5*0001~GE*1*1~IEA*1*000000001~")` +
				`.groups[0].transactions[0].purchase_order.lines[0].vendor_part == "W-1"`},
		{Name: "x12_build", Signature: "x12_build(doc[, options]) string", Fn: x12Build,
			Description: "Writes an X12 interchange from one transaction ({purchase_order: ...}, {ship_notice: ...}, {invoice: ...} or {set, segments}), {transactions: [...]} or a parsed interchange, " +
				"counting segments and numbering HL levels. Options: sender and receiver (required), sender_qualifier, receiver_qualifier, gs_sender, gs_receiver, version, gs_version, usage, " +
				"ack_requested, isa_control, gs_control, st_control, time, element_separator, component_separator, repetition_separator, segment_terminator (e.g. \"~\\n\").",
			Example: `x12_parse(x12_build({invoice: {big: {invoice_number: "INV-7"}, lines: [{line: "1", qty: 2, uom: "EA", price: "4.50", vendor_part: "W-1"}]}}, ` +
				`{sender: "SELLER", receiver: "BUYER"})).groups[0].transactions[0].invoice.total == "9.00"`},
		{Name: "x12_ack", Signature: "x12_ack(text[, accepted[, options]]) string", Fn: x12Ack,
			Description: "Answers an X12 interchange with a 997 functional acknowledgement addressed back to its sender: a transaction set is accepted unless it is malformed " +
				"or accepted is false; options as for x12_build (control numbers, time, ...).",
			Example: `x12_ack(x12_build({purchase_order: {beg: {po_number: "PO-1"}}}, {sender: "BUYER", receiver: "SELLER"})) contains "AK5*A~"`},
	} {
		registerLib(f)
	}
}

func x12Parse(args ...any) (any, error) {
	ic, err := x12.ParseBytes([]byte(stringOf(args[0])))
	if err != nil {
		return nil, err
	}
	return ic.JSON(), nil
}

func x12Build(args ...any) (any, error) {
	doc, ok := args[0].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("doc: %s is not an object", describe(args[0]))
	}
	var opts x12.BuildOptions
	if len(args) > 1 {
		var err error
		if opts, err = x12Options(args[1]); err != nil {
			return nil, err
		}
	}
	out, err := x12.Build(doc, opts)
	return string(out), err
}

func x12Ack(args ...any) (any, error) {
	accepted := true
	if len(args) > 1 && args[1] != nil {
		b, ok := args[1].(bool)
		if !ok {
			return nil, fmt.Errorf("accepted: %s is not true or false", describe(args[1]))
		}
		accepted = b
	}
	var opts x12.BuildOptions
	if len(args) > 2 {
		var err error
		if opts, err = x12Options(args[2]); err != nil {
			return nil, err
		}
	}
	ic, err := x12.ParseBytes([]byte(stringOf(args[0])))
	if ic == nil {
		return nil, err
	}
	var errs []error
	for _, e := range x12.Errors(err) {
		errs = append(errs, e)
	}
	out, err := x12.Ack997(ic, accepted, errs, opts)
	return string(out), err
}

// x12OptionNames are the keys of the options of x12_build and x12_ack.
var x12OptionNames = []string{"ack_requested", "component_separator", "element_separator", "gs_control", "gs_receiver", "gs_sender",
	"gs_version", "isa_control", "receiver", "receiver_qualifier", "repetition_separator", "segment_terminator", "sender",
	"sender_qualifier", "st_control", "time", "usage", "version"}

// x12Options reads the options map of x12_build and x12_ack. Separator
// options start from x12.DefaultSeparators.
func x12Options(v any) (x12.BuildOptions, error) {
	var o x12.BuildOptions
	if v == nil {
		return o, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return o, fmt.Errorf("options: %s is not an object", describe(v))
	}
	texts := map[string]*string{
		"sender": &o.Sender, "sender_qualifier": &o.SenderQualifier, "receiver": &o.Receiver, "receiver_qualifier": &o.ReceiverQualifier,
		"gs_sender": &o.GroupSender, "gs_receiver": &o.GroupReceiver, "version": &o.Version, "gs_version": &o.GroupVersion, "usage": &o.Usage,
	}
	controls := map[string]*int64{"isa_control": &o.InterchangeControl, "gs_control": &o.GroupControl, "st_control": &o.TransactionControl}
	sep, custom := x12.DefaultSeparators, false
	for _, k := range slices.Sorted(maps.Keys(m)) {
		val := m[k]
		s := stringOf(val)
		switch {
		case texts[k] != nil:
			*texts[k] = s
		case controls[k] != nil:
			n, err := countArg("options."+k, val, 999999999)
			if err != nil {
				return o, err
			}
			*controls[k] = int64(n)
		case k == "segment_terminator" && s != "":
			sep.Segment, sep.Suffix, custom = s[0], s[1:], true
		case k == "repetition_separator" && s == "":
			sep.Repetition, custom = 0, true
		case strings.HasSuffix(k, "_separator") && slices.Contains(x12OptionNames, k) || k == "segment_terminator":
			if len(s) != 1 {
				return o, fmt.Errorf("options.%s must be one character, got %s", k, describe(val))
			}
			custom = true
			switch k {
			case "element_separator":
				sep.Element = s[0]
			case "component_separator":
				sep.Component = s[0]
			default:
				sep.Repetition = s[0]
			}
		case k == "ack_requested":
			b, ok := val.(bool)
			if !ok {
				return o, fmt.Errorf("options.ack_requested: %s is not true or false", describe(val))
			}
			o.AckRequested = b
		case k == "time":
			t, err := timeOption(val)
			if err != nil {
				return o, err
			}
			o.Time = t
		default:
			return o, fmt.Errorf("options: unknown option %q (known: %s)", k, strings.Join(x12OptionNames, ", "))
		}
	}
	if custom {
		o.Separators = sep
	}
	return o, nil
}

func timeOption(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case string:
		if p, err := time.Parse(time.RFC3339, t); err == nil {
			return p, nil
		}
	}
	return time.Time{}, fmt.Errorf("options.time must be a time or RFC 3339 text such as \"2024-01-17T14:20:00Z\", got %s", describe(v))
}
