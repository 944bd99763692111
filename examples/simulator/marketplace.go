package simulator

import (
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// marketplaceTime is how the marketplace writes updated_at: UTC with
// milliseconds, so that the text sorts as the time does.
const marketplaceTime = "2006-01-02T15:04:05.000Z07:00"

// NewMarketplace returns a simulated marketplace that orders are pulled
// from by polling "updated since":
//
//	GET /marketplace/orders?updated_since=RFC3339&limit=N
//	    200 {"orders": [...], "has_more": bool, "next_cursor": "<updated_at of the last order>" | null}
//	    the orders updated after updated_since (default: all), oldest first,
//	    at most limit (1 to 200, default 50); 400 for a bad updated_since or limit
//	GET /marketplace/orders/{id}   200 the order, 404
//	PUT /marketplace/orders/{id}   200 the order: creates it (lines required, else 422) or
//	                               updates status, buyer, lines, total, currency; stamps updated_at
//
// An order is {"order_id", "status", "buyer": {"name", "email"}, "currency",
// "total" (decimal text), "lines": [{"sku", "quantity", "price"}],
// "created_at", "updated_at"}. updated_at is UTC with milliseconds and
// strictly increasing across orders (a write stamps the later of now and
// the previous updated_at plus 1 ms), so updated_since=next_cursor
// continues exactly after a page, neither skipping nor repeating an order.
//
// It starts with three paid orders, 5001 to 5003, updated on 2026-01-05.
func NewMarketplace() *System { return newSystem("marketplace", newMarketplaceState()) }

type marketplaceState struct {
	orders map[string]map[string]any
	last   time.Time // latest updated_at handed out
}

func newMarketplaceState() *marketplaceState {
	m := &marketplaceState{orders: map[string]map[string]any{}}
	seed := []struct {
		id, name, email, sku string
		qty                  int
		price, total         string
	}{
		{"5001", "Anna Jansen", "anna.jansen@example.com", "TSHIRT-RED-M", 2, "12.00", "24.00"},
		{"5002", "Piet de Vries", "Piet.deVries@Example.com", "MUG-BLUE", 1, "19.99", "19.99"},
		{"5003", "Sofie Peeters", "sofie.peeters@example.be", "COFFEE-1KG", 3, "24.90", "74.70"},
	}
	for i, o := range seed {
		at := time.Date(2026, 1, 5, 9, 15*i, 0, 0, time.UTC)
		m.orders[o.id] = map[string]any{
			"order_id": o.id, "status": "paid", "currency": "EUR", "total": o.total,
			"buyer":      map[string]any{"name": o.name, "email": o.email},
			"lines":      []any{map[string]any{"sku": o.sku, "quantity": o.qty, "price": o.price}},
			"created_at": at.Format(marketplaceTime), "updated_at": at.Format(marketplaceTime),
		}
		m.last = at
	}
	return m
}

func (m *marketplaceState) reset() { *m = *newMarketplaceState() }

func (m *marketplaceState) route(s *System, method string, segs []string, query string, body any) reply {
	if len(segs) < 2 || segs[0] != "marketplace" || segs[1] != "orders" || len(segs) > 3 {
		return notFound(method, segs)
	}
	if len(segs) == 2 {
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		return m.list(query)
	}
	switch method {
	case http.MethodGet:
		if o, ok := m.orders[segs[2]]; ok {
			return reply{status: http.StatusOK, body: o}
		}
		return errReply(http.StatusNotFound, "order %q not found", segs[2])
	case http.MethodPut:
		f, bad := object(body)
		if bad != nil {
			return *bad
		}
		o, created, msg := m.put(s.now(), segs[2], f)
		if msg != "" {
			return errReply(http.StatusUnprocessableEntity, "%s", msg)
		}
		if created {
			s.created++
		}
		return reply{status: http.StatusOK, body: o}
	}
	return methodNotAllowed(http.MethodGet, http.MethodPut)
}

func (m *marketplaceState) list(query string) reply {
	q, err := url.ParseQuery(query)
	if err != nil {
		return errReply(http.StatusBadRequest, "bad query: %v", err)
	}
	var since time.Time
	if v := q.Get("updated_since"); v != "" {
		if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return errReply(http.StatusBadRequest, "updated_since must be an RFC 3339 time, got %q", v)
		}
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 200 {
			return errReply(http.StatusBadRequest, "limit must be a whole number from 1 to 200, got %q", v)
		}
	}
	type entry struct {
		at time.Time
		o  map[string]any
	}
	var all []entry
	for _, o := range m.orders {
		at, _ := time.Parse(time.RFC3339Nano, o["updated_at"].(string))
		if at.After(since) {
			all = append(all, entry{at, o})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	out := []any{}
	var cursor any
	for _, e := range all[:min(limit, len(all))] {
		out = append(out, e.o)
		cursor = e.o["updated_at"]
	}
	return reply{status: http.StatusOK, body: map[string]any{"orders": out, "has_more": len(all) > limit, "next_cursor": cursor}}
}

// put creates or updates order id from fields and stamps updated_at.
func (m *marketplaceState) put(now time.Time, id string, fields map[string]any) (order map[string]any, created bool, msg string) {
	o, ok := m.orders[id]
	if !ok {
		if lines, _ := fields["lines"].([]any); len(lines) == 0 {
			return nil, false, "a new order needs at least one line"
		}
		o = map[string]any{"order_id": id, "status": "paid", "currency": "EUR", "total": "0.00", "buyer": map[string]any{}}
		created = true
	}
	for _, k := range []string{"status", "buyer", "lines", "total", "currency"} {
		if v, set := fields[k]; set {
			o[k] = v
		}
	}
	at := now.UTC().Truncate(time.Millisecond)
	if !at.After(m.last) {
		at = m.last.Add(time.Millisecond)
	}
	m.last = at
	o["updated_at"] = at.Format(marketplaceTime)
	if created {
		o["created_at"] = o["updated_at"]
	}
	m.orders[id] = o
	return o, created, ""
}

// PutMarketplaceOrder creates or updates a marketplace order as PUT
// /marketplace/orders/{id} does and returns its new updated_at; false when
// the system is not the marketplace or the order is refused.
func (s *System) PutMarketplaceOrder(id string, fields map[string]any) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.kind.(*marketplaceState)
	if !ok {
		return "", false
	}
	o, created, msg := m.put(s.now(), id, fields)
	if msg != "" {
		return "", false
	}
	if created {
		s.created++
	}
	return o["updated_at"].(string), true
}

// MarketplaceOrder returns a copy of a marketplace order; false when the
// system is not the marketplace or the order does not exist.
func (s *System) MarketplaceOrder(id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.kind.(*marketplaceState)
	if !ok || m.orders[id] == nil {
		return nil, false
	}
	return maps.Clone(m.orders[id]), true
}
