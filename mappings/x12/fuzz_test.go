package x12

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds hostile input to Parse. It must never panic, every error
// must be an *Error, and whatever parses must build back into an interchange
// with the same JSON view; the friendly forms and the 997 must not panic
// either. Seeds: the samples, the malformed corpus and testdata/fuzz.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.edi", "testdata/malformed/*.edi"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ic, err := ParseBytes(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Offset < 0 || e.Offset > int64(len(data)) || e.Segment < 1 {
				t.Fatalf("error %#v out of the input (%d bytes)", *e, len(data))
			}
		}
		if ic == nil {
			return
		}
		view := ic.JSON()
		errs := []error{}
		if err != nil {
			errs = append(errs, err)
		}
		Ack997(ic, err == nil, errs, BuildOptions{})
		for _, g := range ic.Groups {
			for _, tx := range g.Transactions {
				if f := forms[tx.Set]; f != nil {
					Build(map[string]any{f.key: tx.JSON()[f.key]}, BuildOptions{Sender: "A", Receiver: "B"})
				}
			}
		}
		if err != nil {
			return
		}
		out, err := Build(view, BuildOptions{})
		if err != nil {
			t.Fatalf("build of a parsed interchange: %v", err)
		}
		again, err := ParseBytes(out)
		if err != nil {
			t.Fatalf("parse of the build: %v\n%q", err, out)
		}
		if !reflect.DeepEqual(again.JSON(), view) {
			t.Fatalf("round trip changes the view:\n%s", firstDiff(pretty(again.JSON(), ""), pretty(view, "")))
		}
	})
}
