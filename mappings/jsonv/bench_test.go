package jsonv

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
)

// orderJSON returns a realistic webshop order of about 15 KB: customer,
// addresses, 40 line items with nested discounts, payments and metadata.
func orderJSON(tb testing.TB) []byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	products := []string{"Kaffeebohnen „Röstmeister“", "Crème brûlée Set", "Ærøskøbing Wolldecke",
		"抹茶 Matcha Pulver", "Jalapeño Sauce 🌶️", "Żubrówka Gläser (6er)", "Smörgåsbord Brett", "Café Tasse ☕"}
	address := func(name, street, city string) map[string]any {
		return map[string]any{
			"name": name, "street": street, "city": city, "postal_code": "80331",
			"country": "DE", "phone": "+49 89 1234567", "is_default": true,
			"geo": map[string]any{"lat": 48.137154, "lon": 11.576124},
		}
	}
	var lines []any
	subtotal := 0.0
	for i := range 40 {
		qty := 1 + rng.IntN(5)
		price := float64(100+rng.IntN(9900)) / 100
		discounts := []any{}
		for j := range rng.IntN(3) {
			discounts = append(discounts, map[string]any{
				"code": fmt.Sprintf("PROMO%d", 10+j), "type": "percent", "value": 5 * (j + 1),
				"amount":  float64(rng.IntN(500)) / 100,
				"applies": map[string]any{"scope": "line", "stackable": j == 0, "campaign_id": 4200 + j},
			})
		}
		subtotal += price * float64(qty)
		lines = append(lines, map[string]any{
			"line_no": i + 1, "sku": fmt.Sprintf("SKU-%05d", rng.IntN(100000)),
			"name": products[i%len(products)], "quantity": qty, "unit_price": price,
			"tax_rate": 0.19, "discounts": discounts, "gift_wrap": i%7 == 0, "note": nil,
			"attributes": map[string]any{"color": []string{"schwarz", "weiß", "grün"}[i%3], "size": "M", "weight_kg": 0.25 * float64(1+i%4)},
		})
	}
	order := map[string]any{
		"id": "ORD-2024-000123", "external_id": 820982911946154777, "status": "paid",
		"created_at": "2024-03-01T12:30:00.123456Z", "currency": "EUR", "channel": "web",
		"customer": map[string]any{
			"id": 4711, "email": "zoe.angstrom@example.com", "name": "Zoë Ångström-Núñez",
			"tags":    []string{"vip", "newsletter", "früh-käufer"},
			"loyalty": map[string]any{"tier": "gold", "points": 12840, "since": "2019-05-04"},
		},
		"billing_address":  address("Zoë Ångström-Núñez", "Maximilianstraße 12", "München"),
		"shipping_address": address("Jürgen Müller", "Sendlinger Straße 3", "München"),
		"lines":            lines,
		"totals": map[string]any{
			"subtotal": subtotal, "shipping": 4.95, "tax": 0.19 * subtotal, "grand_total": subtotal + 4.95,
			"discounts": []any{map[string]any{"code": "WELCOME10", "amount": 10.0}},
		},
		"payments": []any{map[string]any{
			"provider": "stripe", "id": "pi_3OqXyZ2eZvKYlo2C1a2b3c4d", "amount": subtotal + 4.95,
			"captured": true, "card": map[string]any{"brand": "visa", "last4": "4242", "exp": "12/27"},
		}},
		"shipping": map[string]any{"carrier": "DHL", "service": "express", "tracking": nil, "eta_days": 2},
		"metadata": map[string]any{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "ab_test": "checkout-v2", "comment": "Bitte nicht klingeln 🙏"},
	}
	b, err := json.Marshal(order)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func BenchmarkDecode(b *testing.B) {
	data := orderJSON(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStdUnmarshal(b *testing.B) {
	data := orderJSON(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	v, err := Decode(orderJSON(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStdMarshal(b *testing.B) {
	v, err := Decode(orderJSON(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
