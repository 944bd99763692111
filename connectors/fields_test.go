package connectors

import "testing"

func TestCheckFields(t *testing.T) {
	for _, c := range []struct {
		where string
		m     map[string]any
		want  string
	}{
		{"", map[string]any{"url": 1, "max_conns": 2}, ""},
		{"", map[string]any{"url": 1, "pool": 3}, `unknown field "pool" (known: url, max_conns)`},
		{"tls", map[string]any{"ca_flie": "x"}, `tls: unknown field "ca_flie" (did you mean "ca_file"?)`},
		// every unknown field, in order, not the first a map range finds
		{"", map[string]any{"zz": 1, "urll": 2, "aa": 3}, `unknown field "aa" (known: url, max_conns)` + "\n" +
			`unknown field "urll" (did you mean "url"?)` + "\n" + `unknown field "zz" (known: url, max_conns)`},
	} {
		known := []string{"url", "max_conns"}
		if c.where == "tls" {
			known = []string{"ca_file", "cert_file", "key_file"}
		}
		err := CheckFields(c.where, c.m, known...)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckFields(%q, %v) = %q; want %q", c.where, c.m, got, c.want)
		}
	}
}
