package x12

import "strings"

// isaNames name ISA01..ISA16 in the JSON view; "" marks the elements shown
// under "separators" instead. Padded names are trimmed on the right.
var isaNames = [16]string{"auth_qualifier", "auth", "security_qualifier", "security", "sender_qualifier", "sender",
	"receiver_qualifier", "receiver", "date", "time", "standards_id", "version", "control", "ack_requested", "usage", ""}

// gsNames name GS01..GS08.
var gsNames = []string{"functional_id", "sender", "receiver", "date", "time", "control", "agency", "version"}

// JSON returns the interchange as plain values (see the package comment).
func (ic *Interchange) JSON() map[string]any {
	groups := make([]any, 0, len(ic.Groups))
	for _, g := range ic.Groups {
		txs := make([]any, 0, len(g.Transactions))
		for _, t := range g.Transactions {
			txs = append(txs, t.JSON())
		}
		groups = append(groups, map[string]any{"gs": g.headerJSON(), "transactions": txs})
	}
	return map[string]any{"isa": ic.headerJSON(), "separators": ic.Separators.json(), "groups": groups}
}

// View returns the view of the interchange holding only t, shaped like
// (*Interchange).JSON, so that a mapping written for whole interchanges
// also reads one transaction handed out by a Reader.
func (t *Transaction) View() map[string]any {
	g := t.Group
	return map[string]any{"isa": g.Interchange.headerJSON(), "separators": g.Interchange.Separators.json(),
		"groups": []any{map[string]any{"gs": g.headerJSON(), "transactions": []any{t.JSON()}}}}
}

// JSON returns the transaction: set, control, its segments nested by loop
// and, for 850, 856 and 810, the friendly form.
func (t *Transaction) JSON() map[string]any {
	m := map[string]any{"set": t.Set, "control": t.Control}
	if len(t.Segments) > 0 {
		if v := t.Segments[0].Element(3); v != "" {
			m["convention"] = v
		}
	}
	root := tree(t)
	sep := t.separators()
	m["segments"] = itemsJSON(root.items, sep)
	if f := forms[t.Set]; f != nil {
		fm := map[string]any{}
		for _, p := range f.parts {
			p.read(root, fm)
		}
		m[f.key] = fm
	}
	return m
}

func (t *Transaction) separators() Separators {
	if t.Group != nil && t.Group.Interchange != nil {
		return t.Group.Interchange.Separators
	}
	return DefaultSeparators
}

func itemsJSON(items []*node, sep Separators) []any {
	out := make([]any, 0, len(items))
	for _, it := range items {
		if it.seg == nil {
			out = append(out, map[string]any{"loop": it.loop, "segments": itemsJSON(it.items, sep)})
			continue
		}
		els := make([]any, len(it.seg.Elements))
		for i, e := range it.seg.Elements {
			els[i] = elementJSON(e, sep)
		}
		out = append(out, map[string]any{"id": it.seg.ID, "elements": els})
	}
	return out
}

// elementJSON splits a composite into a list of components and repetitions
// into {"repeats": [...]}.
func elementJSON(v string, sep Separators) any {
	if sep.Repetition != 0 && strings.IndexByte(v, sep.Repetition) >= 0 {
		var reps []any
		for _, r := range strings.Split(v, sepStr(sep.Repetition)) {
			reps = append(reps, composite(r, sep.Component))
		}
		return map[string]any{"repeats": reps}
	}
	return composite(v, sep.Component)
}

func composite(v string, comp byte) any {
	if strings.IndexByte(v, comp) < 0 {
		return v
	}
	parts := strings.Split(v, sepStr(comp))
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out
}

func (ic *Interchange) headerJSON() map[string]any {
	m := map[string]any{}
	for i, name := range isaNames {
		v := ic.Header.Element(i + 1)
		switch {
		case name == "":
			continue
		case i == 10 && ic.Separators.Repetition != 0:
			continue
		case len(v) > 1:
			v = strings.TrimRight(v, " ")
		}
		m[name] = v
	}
	return m
}

func (g *Group) headerJSON() map[string]any {
	m := map[string]any{}
	for i, name := range gsNames {
		m[name] = g.Header.Element(i + 1)
	}
	return m
}

func (s Separators) json() map[string]any {
	m := map[string]any{"element": sepStr(s.Element), "component": sepStr(s.Component), "segment": sepStr(s.Segment)}
	if s.Repetition != 0 {
		m["repetition"] = sepStr(s.Repetition)
	}
	return m
}
