package fileconn_test

import (
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	fileconn "github.com/conveyor-run/conveyor/connectors/file"
)

func readAll(t *testing.T, format, src string, opts fileconn.CSVOptions) ([]any, error) {
	t.Helper()
	rs, err := fileconn.NewRecords(strings.NewReader(src), format, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for {
		v, err := rs.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
}

func TestRecords(t *testing.T) {
	obj := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name, format, src string
		opts              fileconn.CSVOptions
		want              []any
	}{
		{"csv header, BOM, quotes, blank line", "csv", "\xef\xbb\xbfsku,qty,note\nA-1,2,\"a, b\"\n\nB-2,3,\"say \"\"hi\"\"\"\n",
			fileconn.DefaultCSV, []any{obj("sku", "A-1", "qty", "2", "note", "a, b"), obj("sku", "B-2", "qty", "3", "note", `say "hi"`)}},
		{"csv multi-line field, CRLF", "csv", "a,b\r\n1,\"x\r\ny\"\r\n", fileconn.DefaultCSV, []any{obj("a", "1", "b", "x\ny")}},
		{"csv bare CR line ends, CRs in quotes kept", "csv", "a,b\r1,\"x\ry\"\r2,\"p\r\nq\"\r\n", fileconn.DefaultCSV,
			[]any{obj("a", "1", "b", "x\ry"), obj("a", "2", "b", "p\nq")}},
		{"csv semicolon without header", "csv", "1;2\n3;4\n", fileconn.CSVOptions{Delimiter: ';'},
			[]any{[]any{"1", "2"}, []any{"3", "4"}}},
		{"csv header only", "csv", "a,b\n", fileconn.DefaultCSV, nil},
		{"jsonl blank lines skipped", "jsonl", "{\"a\": 1}\n\n  \n[2]\r\n\"x\"", fileconn.DefaultCSV,
			[]any{map[string]any{"a": 1}, []any{2}, "x"}},
		{"json array gives elements", "json", "\xef\xbb\xbf[{\"a\": 1}, 2]", fileconn.DefaultCSV, []any{map[string]any{"a": 1}, 2}},
		{"json object is one record", "json", `{"a": [1]}`, fileconn.DefaultCSV, []any{map[string]any{"a": []any{1}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, tc.format, tc.src, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestRecordsX12(t *testing.T) {
	src, err := os.ReadFile("../../mappings/x12/testdata/850_two_orders_crlf.edi")
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, "x12", string(src)+string(src), fileconn.DefaultCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d records from two interchanges of two orders", len(got))
	}
	tx := got[1].(map[string]any)["groups"].([]any)[0].(map[string]any)["transactions"].([]any)[0].(map[string]any)
	if po := tx["purchase_order"].(map[string]any)["beg"].(map[string]any)["po_number"]; po != "4500012346" {
		t.Errorf("second record: po %v", po)
	}
}

// Every malformed input is located: line and column, or X12 segment and
// byte.
func TestRecordErrors(t *testing.T) {
	good, err := os.ReadFile("../../mappings/x12/testdata/850_minimal.edi")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, format, src, want string
		fatal                   bool
	}{
		{"csv wrong field count", "csv", "a,b,c\n1,2,3\n4,5\n", "line 3: the row has 2 fields, the header has 3", false},
		{"csv unterminated quote", "csv", "a,b\n1,2\n3,\"open\n4,5\n", "line 4, column 5: a quoted field of the row starting on line 3 is not closed", true},
		{"csv bare quote", "csv", "a,b\n1,x\"y\n", "line 2, column 4: bare \" in non-quoted-field", true},
		{"csv bad quote on the last row", "csv", "a,b\n\"x\"y,2\n", "line 2, column 3: extraneous or missing \" in quoted-field", true},
		{"csv unterminated quote on the last row", "csv", "a,b\n\"x,2\n", "a quoted field of the row starting on line 2 is not closed before the end of the file", true},
		{"csv field not UTF-8", "csv", "name,city\nM\xfcller,Wien\n", `line 2, column 1: field 1 ("name") is not UTF-8 text (byte 0xFC)`, false},
		{"csv header not UTF-8", "csv", "name,Stra\xdfe\nx,y\n", "line 1, column 6: header: field 2 is not UTF-8 text (byte 0xDF)", true},
		{"csv duplicate header", "csv", "a,b,a\n1,2,3\n", `line 1: header: columns 1 and 3 are both named "a"`, true},
		{"jsonl bad line 3", "jsonl", "{\"a\": 1}\n{\"a\": 2}\n  {\"a\": 3,}\n{\"a\": 4}\n", "line 3, column 11: invalid character '}'", false},
		{"json truncated", "json", "{\n  \"a\": [1, 2\n", "line 3, column 1: unexpected end of JSON input", true},
		{"json empty", "json", " \n", "line 1, column 1: the file is empty", true},
		{"x12 wrong SE01", "x12", strings.Replace(string(good), "SE*7*0001", "SE*9*0001", 1), "segment 9 (SE) at byte ", false},
		{"x12 truncated", "x12", string(good[:len(good)-40]), "segment 9 at byte 306: input ends without SE", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, tc.format, tc.src, fileconn.DefaultCSV)
			var fe *fileconn.Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *fileconn.Error", err, err)
			}
			if !strings.Contains(fe.Error(), tc.want) || fe.Fatal != tc.fatal {
				t.Errorf("error %q (fatal %v), want it to contain %q (fatal %v)", fe, fe.Fatal, tc.want, tc.fatal)
			}
		})
	}
}

// A CSV file whose lines end in a bare CR (classic Mac OS, some
// exporters) reads as its rows, not as one header row and no records.
func TestReadAllCSVBareCR(t *testing.T) {
	v, err := fileconn.ReadAll(strings.NewReader("sku,qty\rA-1,2\rB-2,3\r"), "csv", fileconn.DefaultCSV)
	want := []any{map[string]any{"sku": "A-1", "qty": "2"}, map[string]any{"sku": "B-2", "qty": "3"}}
	if err != nil || !reflect.DeepEqual(v, want) {
		t.Errorf("got %v %v, want %v", v, err, want)
	}
}

// A data row after an invalid one is still read: a field that is not
// UTF-8 spoils only its own row.
func TestRecordsCSVNotUTF8GoesOn(t *testing.T) {
	got, err := readAll(t, "csv", "name\nM\xfcller\nMuller\n", fileconn.DefaultCSV)
	var fe *fileconn.Error
	if !errors.As(err, &fe) || fe.Fatal || fe.Line != 2 || fe.Column != 1 {
		t.Fatalf("error %v, want a non-fatal error on line 2, column 1", err)
	}
	rs, _ := fileconn.NewRecords(strings.NewReader("name\nM\xfcller\nMuller\n"), "csv", fileconn.DefaultCSV)
	rs.Next()
	if v, err := rs.Next(); err != nil || !reflect.DeepEqual(v, map[string]any{"name": "Muller"}) {
		t.Errorf("after the bad row: %v %v (before it: %v)", v, err, got)
	}
}

// countingReader produces "a,b\n1,\"" and then n bytes of x with a line
// break every 100 bytes: a quote that is never closed.
type countingReader struct {
	head []byte
	left int
	read int
}

func (r *countingReader) Read(p []byte) (int, error) {
	n := copy(p, r.head)
	r.head = r.head[n:]
	for ; n < len(p) && r.left > 0; n++ {
		if r.left%100 == 0 {
			p[n] = '\n'
		} else {
			p[n] = 'x'
		}
		r.left--
	}
	r.read += n
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// A CSV row is capped at MaxLine like a JSON line: a stray quote does not
// read the rest of a huge file into one field.
func TestRecordsCSVRowLongerThanMaxLine(t *testing.T) {
	src := &countingReader{head: []byte("a,b\n1,\""), left: 4 * fileconn.MaxLine}
	rs, err := fileconn.NewRecords(src, "csv", fileconn.DefaultCSV)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rs.Next()
	var fe *fileconn.Error
	if !errors.As(err, &fe) || !fe.Fatal || !strings.Contains(fe.Error(), "the row starting on line 2 is longer than") {
		t.Errorf("error %v, want a fatal error for a row too long", err)
	}
	if src.read > 2*fileconn.MaxLine {
		t.Errorf("read %d bytes, more than twice MaxLine", src.read)
	}
}

// ReadAll gives the whole file as one value; X12 the interchange view.
func TestReadAll(t *testing.T) {
	v, err := fileconn.ReadAll(strings.NewReader("a\n1\n2\n"), "csv", fileconn.DefaultCSV)
	if err != nil || !reflect.DeepEqual(v, []any{map[string]any{"a": "1"}, map[string]any{"a": "2"}}) {
		t.Errorf("csv: %v %v", v, err)
	}
	src, _ := os.ReadFile("../../mappings/x12/testdata/850_two_orders_crlf.edi")
	v, err = fileconn.ReadAll(strings.NewReader(string(src)), "x12", fileconn.DefaultCSV)
	if err != nil {
		t.Fatal(err)
	}
	if txs := v.(map[string]any)["groups"].([]any)[0].(map[string]any)["transactions"].([]any); len(txs) != 2 {
		t.Errorf("x12: %d transactions", len(txs))
	}
	_, err = fileconn.ReadAll(strings.NewReader(strings.Replace(string(src), "SE*12*0002", "SE*11*0002", 1)), "x12", fileconn.DefaultCSV)
	if err == nil || !strings.Contains(err.Error(), "(SE) at byte") {
		t.Errorf("x12 wrong count: %v", err)
	}
}

// FuzzRecords: any input gives records or located errors, never a panic,
// and reading ends.
func FuzzRecords(f *testing.F) {
	for _, s := range []string{"a,b\n1,2\n", "a,b\n1,\"2\n", "{\"a\": 1}\n{\n", "[1, 2]", "\xef\xbb\xbfx;y\n"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	formats := []string{"csv", "jsonl", "json", "x12"}
	f.Fuzz(func(t *testing.T, src string, which uint8) {
		rs, err := fileconn.NewRecords(strings.NewReader(src), formats[int(which)%len(formats)], fileconn.DefaultCSV)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i <= len(src)+1; i++ {
			_, err := rs.Next()
			if err == io.EOF {
				return
			}
			var fe *fileconn.Error
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not located", err, err)
			}
			if fe != nil && fe.Fatal {
				return
			}
		}
		t.Fatalf("more records than bytes in %q", src)
	})
}
