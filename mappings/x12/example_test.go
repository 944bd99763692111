package x12_test

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/conveyor-run/conveyor/mappings/x12"
)

// A file connector reads a large file transaction by transaction, one
// message each, in constant memory.
func ExampleNewReader() {
	f, err := os.Open("testdata/810_two_groups_lf.edi")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	r := x12.NewReader(f)
	for {
		tx, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("to error/:", err)
			break
		}
		inv := tx.View()["groups"].([]any)[0].(map[string]any)["transactions"].([]any)[0].(map[string]any)["invoice"].(map[string]any)
		fmt.Println(tx.Set, tx.Control, inv["big"].(map[string]any)["invoice_number"], inv["total"])
	}
	// Output:
	// 810 0001 INV-1001 466.80
	// 810 0002 INV-1002 89.00
	// 810 0003 INV-1003 -19.90
}

func ExampleBuild() {
	doc := map[string]any{"invoice": map[string]any{
		"big":   map[string]any{"invoice_number": "INV-7", "po_number": "PO-1"},
		"lines": []any{map[string]any{"line": "1", "qty": 2, "uom": "EA", "price": "4.50", "vendor_part": "W-1"}},
	}}
	next := int64(41)
	out, err := x12.Build(doc, x12.BuildOptions{
		Sender: "SELLER", Receiver: "BUYER", Time: time.Date(2024, 1, 18, 8, 5, 0, 0, time.UTC),
		NextControl: func(kind string) (int64, error) { next++; return next, nil },
	})
	if err != nil {
		panic(err)
	}
	fmt.Print(string(out))
	// Output:
	// ISA*00*          *00*          *ZZ*SELLER         *ZZ*BUYER          *240118*0805*U*00401*000000042*0*P*:~
	// GS*IN*SELLER*BUYER*20240118*0805*43*X*004010~
	// ST*810*0044~
	// BIG*20240118*INV-7**PO-1~
	// IT1*1*2*EA*4.50**VP*W-1~
	// TDS*900~
	// CTT*1~
	// SE*6*0044~
	// GE*1*43~
	// IEA*1*000000042~
}
