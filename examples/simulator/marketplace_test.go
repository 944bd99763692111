package simulator

import (
	"net/url"
	"testing"
)

// Paging by updated_since=next_cursor visits every order once, oldest
// first, including orders written meanwhile.
func TestMarketplacePolling(t *testing.T) {
	ss := start(t)
	c := conn(t, ss.Marketplace)
	page := func(since string, limit string) (orders []any, more bool, cursor any) {
		t.Helper()
		q := url.Values{"limit": {limit}}
		if since != "" {
			q.Set("updated_since", since)
		}
		r := call(t, c, "GET", "/marketplace/orders?"+q.Encode(), nil, "")
		if r.Status != 200 {
			t.Fatalf("list: %d %v", r.Status, r.Body)
		}
		body := r.Body.(map[string]any)
		return body["orders"].([]any), body["has_more"] == true, body["next_cursor"]
	}
	ids := func(orders []any) (out []string) {
		for _, o := range orders {
			out = append(out, o.(map[string]any)["order_id"].(string))
		}
		return out
	}

	first, more, cursor := page("2026-01-01T00:00:00Z", "2")
	if got := ids(first); len(got) != 2 || got[0] != "5001" || got[1] != "5002" || !more || cursor != "2026-01-05T09:15:00.000Z" {
		t.Fatalf("first page %v more %v cursor %v", got, more, cursor)
	}
	at, ok := ss.Marketplace.PutMarketplaceOrder("5004", map[string]any{"lines": []any{map[string]any{"sku": "SOCKS-3PK", "quantity": 1, "price": "9.95"}}, "total": "9.95"})
	if !ok {
		t.Fatal("PutMarketplaceOrder refused a new order")
	}
	// an update moves an order to the end
	if r := call(t, c, "PUT", "/marketplace/orders/5001", map[string]any{"status": "cancelled"}, "k1"); r.Status != 200 || field(r, "status") != "cancelled" {
		t.Fatalf("put: %d %v", r.Status, r.Body)
	}
	rest, more, cursor := page(cursor.(string), "50")
	if got := ids(rest); len(got) != 3 || got[0] != "5003" || got[1] != "5004" || got[2] != "5001" || more {
		t.Fatalf("second page %v more %v", got, more)
	}
	if last := rest[2].(map[string]any)["updated_at"].(string); last <= at || cursor != last {
		t.Errorf("updated_at %s not after %s, cursor %v", last, at, cursor)
	}
	if none, more, cursor := page(cursor.(string), "50"); len(none) != 0 || more || cursor != nil {
		t.Errorf("past the end: %v %v %v", none, more, cursor)
	}
	if ss.Marketplace.Orders() != 1 {
		t.Errorf("created %d, want 1", ss.Marketplace.Orders())
	}
	for _, bad := range []string{"?updated_since=yesterday", "?limit=0", "?limit=500"} {
		if r := call(t, c, "GET", "/marketplace/orders"+bad, nil, ""); r.Status != 400 {
			t.Errorf("%s: %d", bad, r.Status)
		}
	}
	if r := call(t, c, "PUT", "/marketplace/orders/9999", map[string]any{"status": "paid"}, ""); r.Status != 422 {
		t.Errorf("new order without lines: %d", r.Status)
	}
	if r := call(t, c, "GET", "/marketplace/orders/5002", nil, ""); r.Status != 200 || field(r, "total") != "19.99" {
		t.Errorf("get: %d %v", r.Status, r.Body)
	}
}
