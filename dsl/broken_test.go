package dsl_test

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/conveyor-run/conveyor/dsl"
)

// TestBroken lints every testdata/broken/*.yaml as the CLI does and
// compares the diagnostics, one `file:line:col: message (hint)` a line,
// with testdata/broken/<name>.golden. Run with -update to rewrite the
// goldens, then review every line:col by eye: it must point at the
// offending character.
func TestBroken(t *testing.T) {
	env := testFlowEnv(t)
	files := yamlFiles(t, "testdata/broken")
	if len(files) < 20 {
		t.Fatalf("only %d broken files", len(files))
	}
	for _, path := range files {
		name := strings.TrimSuffix(path, ".yaml")
		t.Run(strings.TrimPrefix(name, "testdata/broken/"), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ds := lint(path, src, env)
			if len(ds) == 0 {
				t.Fatalf("%s: no diagnostics", path)
			}
			checkInside(t, ds)
			got := ds.Error() + "\n"
			golden := name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics of %s differ from %s\n--- got\n%s--- want\n%s", path, golden, got, want)
			}
		})
	}
}

// checkInside fails when a diagnostic points outside its file: past the
// last line, or past the end of its line.
func checkInside(t *testing.T, ds dsl.Diagnostics) {
	t.Helper()
	for _, d := range ds {
		src, err := os.ReadFile(d.File)
		if err != nil {
			t.Errorf("%v: %v", d, err)
			continue
		}
		lines := strings.Split(string(src), "\n")
		if d.Line < 1 || d.Line > len(lines) || d.Col < 1 || d.Col > utf8.RuneCountInString(lines[d.Line-1])+1 {
			t.Errorf("%v points outside the file", d)
		}
	}
}

// TestBrokenBlockColumn: an error on the third line of a | block is
// reported on that line, at the offending character inside the block.
func TestBrokenBlockColumn(t *testing.T) {
	path := "testdata/broken/expr_block.yaml"
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ds := lint(path, src, testFlowEnv(t))
	lines := strings.Split(string(src), "\n")
	header := -1
	for i, l := range lines {
		if strings.HasSuffix(l, ": |") {
			header = i + 1 // 1-based line of the | header
		}
	}
	if len(ds) != 1 || header < 0 {
		t.Fatalf("diagnostics %v, header line %d", ds, header)
	}
	d := ds[0]
	if d.Line != header+3 {
		t.Errorf("line %d, want %d (the block's third line)", d.Line, header+3)
	}
	line := lines[d.Line-1]
	indent := len(line) - len(strings.TrimLeft(line, " "))
	if d.Col <= indent || line[d.Col-1] != '*' {
		t.Errorf("column %d of %q, want the * at column %d", d.Col, line, strings.Index(line, "*")+1)
	}
}
