package runtime

import "testing"

func TestSplitMemoKey(t *testing.T) {
	for key, want := range map[string][2]string{
		"3":          {"3", ""},
		"3#2":        {"3", ""},
		"5[].1[2]":   {"5[].1", "[2]"},
		"5[].1[2]#3": {"5[].1", "[2]"},
	} {
		if path, items := splitMemoKey(key); path != want[0] || items != want[1] {
			t.Errorf("%s: %q %q, want %q %q", key, path, items, want[0], want[1])
		}
	}
}
