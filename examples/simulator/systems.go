package simulator

import (
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"

	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// First numbers handed out, so that simulated ids look like the samples.
const (
	firstSalesOrder = 1001 // SO-1001
	firstAllocation = 5501 // AL-5501
	firstMessage    = 9001 // MSG-9001
	firstShipment   = 7001 // CS-7001
	firstImport     = 3001 // BI-3001
)

// ---- ERP ----------------------------------------------------------------

// NewERP returns a simulated ERP:
//
//	POST /sales-orders                  201 {"sales_order": "SO-1001", "status": "open"}
//	                                    ("held" with hold_reason when net_total is above the hold limit)
//	GET  /sales-orders/{id}             200 the order (by sales order or order_ref), 404 {"error": ...}
//	PUT  /sales-orders/{id}/shipments   200 {"sales_order", "order_ref", "status": "shipped", "shipments": n};
//	                                    {id} is the sales order or the order_ref; 404 when unknown
//	POST /bulk-imports                  202 {"import_id": "BI-3001", "status": "accepted", "accepted": n, "rejected": 0};
//	                                    lines without item_code are rejected ("partially_accepted", errors:
//	                                    [{line, error}]); 422 without lines
//
// Its default check answers 422 for a sales order without customer.email
// or without lines.
func NewERP() *System {
	s := newSystem("erp", newERPState())
	s.check = erpCheck
	return s
}

func erpCheck(r Record) string {
	if r.Method != http.MethodPost || r.Path != "/sales-orders" {
		return ""
	}
	m, ok := r.Body.(map[string]any)
	if !ok {
		return ""
	}
	c, _ := m["customer"].(map[string]any)
	if str(c, "email") == "" {
		return "customer.email is required"
	}
	if lines, _ := m["lines"].([]any); len(lines) == 0 {
		return "a sales order needs at least one line"
	}
	return ""
}

type erpState struct {
	seq     int
	orders  map[string]map[string]any
	byRef   map[string]string
	imports []map[string]any // bulk-import documents, in order
}

func newERPState() *erpState {
	return &erpState{seq: firstSalesOrder, orders: map[string]map[string]any{}, byRef: map[string]string{}}
}

func (e *erpState) reset() { *e = *newERPState() }

func (e *erpState) find(id string) map[string]any {
	if o, ok := e.orders[id]; ok {
		return o
	}
	return e.orders[e.byRef[id]]
}

func (e *erpState) route(s *System, method string, segs []string, _ string, body any) reply {
	if len(segs) == 1 && segs[0] == "bulk-imports" {
		if method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		return e.bulkImport(body)
	}
	if len(segs) == 0 || segs[0] != "sales-orders" {
		return notFound(method, segs)
	}
	switch {
	case len(segs) == 1:
		if method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		return e.create(s, body)
	case len(segs) == 2:
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		o := e.find(segs[1])
		if o == nil {
			return errReply(http.StatusNotFound, "sales order not found")
		}
		return reply{status: http.StatusOK, body: o}
	case len(segs) == 3 && segs[2] == "shipments":
		if method != http.MethodPut && method != http.MethodPost {
			return methodNotAllowed(http.MethodPut, http.MethodPost)
		}
		return e.ship(segs[1], body)
	}
	return notFound(method, segs)
}

func (e *erpState) create(s *System, body any) reply {
	m, bad := object(body)
	if bad != nil {
		return *bad
	}
	lines, _ := m["lines"].([]any)
	net, ok := rat(m["net_total"])
	if !ok {
		// No net total: the sum of qty * price - discount of the lines.
		net = new(big.Rat)
		for _, l := range lines {
			lm, _ := l.(map[string]any)
			q, ok1 := rat(lm["qty"])
			p, ok2 := rat(lm["price"])
			if ok1 && ok2 {
				net.Add(net, new(big.Rat).Mul(q, p))
			}
			if d, ok := rat(lm["discount"]); ok {
				net.Sub(net, d)
			}
		}
	}
	currency := str(m, "currency")
	if currency == "" {
		currency = "EUR"
	}
	id := fmt.Sprintf("SO-%d", e.seq)
	e.seq++
	status := "open"
	out := map[string]any{"sales_order": id, "status": status}
	if net.Cmp(s.holdLimit) > 0 {
		status = "held"
		out["status"] = status
		out["hold_reason"] = fmt.Sprintf("credit limit: net total %s above %s", net.FloatString(2), s.holdLimit.FloatString(2))
	}
	numbered := make([]any, 0, len(lines))
	for i, l := range lines {
		lm, ok := l.(map[string]any)
		if !ok {
			continue
		}
		c := make(map[string]any, len(lm)+1)
		for k, v := range lm {
			c[k] = v
		}
		c["line"] = i + 1
		numbered = append(numbered, c)
	}
	tax := new(big.Rat).Mul(net, big.NewRat(21, 100))
	order := map[string]any{
		"sales_order": id,
		"order_ref":   m["order_ref"],
		"status":      status,
		"created_at":  s.now().UTC().Format("2006-01-02T15:04:05Z"),
		"customer":    m["customer"],
		"ship_to":     m["ship_to"],
		"currency":    currency,
		"lines":       numbered,
		"totals": map[string]any{
			"net":      net.FloatString(2),
			"tax":      tax.FloatString(2),
			"gross":    new(big.Rat).Add(net, tax).FloatString(2),
			"currency": currency,
		},
		"shipments": []any{},
	}
	if r, ok := out["hold_reason"]; ok {
		order["hold_reason"] = r
	}
	e.orders[id] = order
	if ref := str(m, "order_ref"); ref != "" {
		if _, seen := e.byRef[ref]; !seen {
			e.byRef[ref] = id
		}
	}
	s.created++
	return reply{status: http.StatusCreated, body: out, headers: map[string]string{"Location": "/sales-orders/" + id}}
}

// bulkImport accepts a document of lines; a line without item_code is
// rejected and reported, the others are accepted.
func (e *erpState) bulkImport(body any) reply {
	m, bad := object(body)
	if bad != nil {
		return *bad
	}
	lines, _ := m["lines"].([]any)
	if len(lines) == 0 {
		return errReply(http.StatusUnprocessableEntity, "a bulk import needs at least one line")
	}
	var errs []any
	for i, l := range lines {
		if lm, _ := l.(map[string]any); str(lm, "item_code") == "" {
			errs = append(errs, map[string]any{"line": i + 1, "error": "item_code is required"})
		}
	}
	id := fmt.Sprintf("BI-%d", firstImport+len(e.imports))
	e.imports = append(e.imports, m)
	out := map[string]any{"import_id": id, "status": "accepted", "accepted": len(lines) - len(errs), "rejected": len(errs)}
	if len(errs) > 0 {
		out["status"], out["errors"] = "partially_accepted", errs
	}
	return reply{status: http.StatusAccepted, body: out}
}

// BulkImports returns the bulk-import documents an ERP received.
func (s *System) BulkImports() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kind.(*erpState)
	if !ok {
		return nil
	}
	return slices.Clone(e.imports)
}

func (e *erpState) ship(id string, body any) reply {
	o := e.find(id)
	if o == nil {
		return errReply(http.StatusNotFound, "sales order not found")
	}
	m, bad := object(body)
	if bad != nil {
		return *bad
	}
	sid := str(m, "shipment_id")
	if sid == "" {
		return errReply(http.StatusUnprocessableEntity, "shipment_id is required")
	}
	carrier := m["carrier_name"]
	if carrier == nil {
		carrier = m["carrier"]
	}
	shipment := map[string]any{
		"shipment_id":     sid,
		"carrier":         carrier,
		"carrier_code":    m["carrier"],
		"tracking_number": m["tracking_number"],
		"tracking_url":    m["tracking_url"],
		"shipped_at":      m["shipped_at"],
	}
	list, _ := o["shipments"].([]any)
	i := slices.IndexFunc(list, func(x any) bool { xm, _ := x.(map[string]any); return xm["shipment_id"] == sid })
	if i >= 0 {
		list[i] = shipment
	} else {
		list = append(list, shipment)
	}
	o["shipments"] = list
	o["status"] = "shipped"
	return reply{status: http.StatusOK, body: map[string]any{
		"sales_order": o["sales_order"], "order_ref": o["order_ref"], "status": "shipped", "shipments": len(list),
	}}
}

// SalesOrder returns a copy of an ERP sales order by its id or order_ref.
func (s *System) SalesOrder(id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kind.(*erpState)
	if !ok {
		return nil, false
	}
	o := e.find(id)
	if o == nil {
		return nil, false
	}
	b, err := jsonv.Marshal(o)
	if err != nil {
		return nil, false
	}
	v, err := jsonv.Decode(b)
	if err != nil {
		return nil, false
	}
	m, _ := v.(map[string]any)
	return m, true
}

// SetOrderStatus sets the status of an ERP sales order (e.g. "released",
// "cancelled"); false when the system is not an ERP or the order unknown.
func (s *System) SetOrderStatus(id, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kind.(*erpState)
	if !ok {
		return false
	}
	o := e.find(id)
	if o == nil {
		return false
	}
	o["status"] = status
	return true
}

// ---- WMS ----------------------------------------------------------------

// NewWMS returns a simulated warehouse management system:
//
//	POST /allocations        201 {"allocation_id": "AL-5501", "reference", "status": "allocated" | "backordered"}
//	GET  /allocations/{id}   200 the allocation, 404
//	GET  /stock/{item}       200 {"item_code", "on_hand", "allocated", "available"}, 404 for an unknown item
//
// It starts with stock for the items of the example's lookups (100234,
// 100235, 200117, 300501, 400020). An allocation needs a reference and
// lines of {item, qty > 0}, else 422.
func NewWMS() *System { return newSystem("wms", newWMSState()) }

type level struct{ onHand, allocated int }

type wmsState struct {
	seq    int
	stock  map[string]*level
	allocs map[string]map[string]any
}

func newWMSState() *wmsState {
	return &wmsState{seq: firstAllocation, allocs: map[string]map[string]any{}, stock: map[string]*level{
		"100234": {onHand: 140}, "100235": {onHand: 80}, "200117": {onHand: 60},
		"300501": {onHand: 40}, "400020": {onHand: 200},
	}}
}

func (w *wmsState) reset() { *w = *newWMSState() }

func (w *wmsState) route(s *System, method string, segs []string, _ string, body any) reply {
	switch {
	case len(segs) == 1 && segs[0] == "allocations":
		if method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		return w.allocate(s, body)
	case len(segs) == 2 && segs[0] == "allocations":
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		a, ok := w.allocs[segs[1]]
		if !ok {
			return errReply(http.StatusNotFound, "allocation not found")
		}
		return reply{status: http.StatusOK, body: a}
	case len(segs) == 2 && segs[0] == "stock":
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		l, ok := w.stock[segs[1]]
		if !ok {
			return errReply(http.StatusNotFound, "unknown item %q", segs[1])
		}
		return reply{status: http.StatusOK, body: map[string]any{
			"item_code": segs[1], "on_hand": l.onHand, "allocated": l.allocated, "available": max(l.onHand-l.allocated, 0),
		}}
	}
	return notFound(method, segs)
}

func (w *wmsState) allocate(s *System, body any) reply {
	m, bad := object(body)
	if bad != nil {
		return *bad
	}
	ref := str(m, "reference")
	if ref == "" {
		return errReply(http.StatusUnprocessableEntity, "reference is required")
	}
	lines, _ := m["lines"].([]any)
	if len(lines) == 0 {
		return errReply(http.StatusUnprocessableEntity, "an allocation needs at least one line")
	}
	type want struct {
		item string
		qty  int
	}
	wants := make([]want, 0, len(lines))
	for i, l := range lines {
		lm, _ := l.(map[string]any)
		item := str(lm, "item")
		if item == "" {
			if n, ok := integer(lm["item"]); ok {
				item = fmt.Sprint(n)
			}
		}
		qty, ok := integer(lm["qty"])
		if item == "" || !ok || qty <= 0 {
			return errReply(http.StatusUnprocessableEntity, "lines[%d] needs an item and a positive whole qty", i)
		}
		wants = append(wants, want{item, qty})
	}
	status := "allocated"
	out := make([]any, 0, len(wants))
	for _, x := range wants {
		l, ok := w.stock[x.item]
		if !ok {
			l = &level{}
			w.stock[x.item] = l
		}
		if l.onHand-l.allocated < x.qty {
			status = "backordered"
		}
		l.allocated += x.qty
		out = append(out, map[string]any{"item": x.item, "qty": x.qty})
	}
	id := fmt.Sprintf("AL-%d", w.seq)
	w.seq++
	w.allocs[id] = map[string]any{"allocation_id": id, "reference": ref, "status": status, "lines": out}
	s.created++
	return reply{status: http.StatusCreated, body: map[string]any{"allocation_id": id, "reference": ref, "status": status},
		headers: map[string]string{"Location": "/allocations/" + id}}
}

// SetStock sets a WMS item's quantity on hand; false when the system is
// not a WMS.
func (s *System) SetStock(item string, onHand int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.kind.(*wmsState)
	if !ok {
		return false
	}
	if l, ok := w.stock[item]; ok {
		l.onHand = onHand
	} else {
		w.stock[item] = &level{onHand: onHand}
	}
	return true
}

// ---- channels -----------------------------------------------------------

// NewChannels returns the simulated stock APIs of the sales channels:
//
//	PUT|POST /channels/{channel}/stock   200 {"accepted": true, "channel", "product_id", "quantity"}
//	GET      /channels/{channel}/stock   200 {"channel", "stock": {product_id: quantity}}
//
// A stock update needs a product_id and a whole quantity of 0 or more,
// else 422. Any channel name is accepted.
func NewChannels() *System { return newSystem("channels", newChannelState()) }

type channelState struct{ stock map[string]map[string]any }

func newChannelState() *channelState { return &channelState{stock: map[string]map[string]any{}} }

func (c *channelState) reset() { *c = *newChannelState() }

func (c *channelState) route(s *System, method string, segs []string, _ string, body any) reply {
	if len(segs) != 3 || segs[0] != "channels" || segs[2] != "stock" || segs[1] == "" {
		return notFound(method, segs)
	}
	ch := segs[1]
	switch method {
	case http.MethodGet:
		st := c.stock[ch]
		if st == nil {
			st = map[string]any{}
		}
		return reply{status: http.StatusOK, body: map[string]any{"channel": ch, "stock": st}}
	case http.MethodPut, http.MethodPost:
		m, bad := object(body)
		if bad != nil {
			return *bad
		}
		pid := str(m, "product_id")
		if pid == "" {
			return errReply(http.StatusUnprocessableEntity, "product_id is required")
		}
		q, ok := integer(m["quantity"])
		if !ok || q < 0 {
			return errReply(http.StatusUnprocessableEntity, "quantity must be a whole number of 0 or more")
		}
		if c.stock[ch] == nil {
			c.stock[ch] = map[string]any{}
		}
		c.stock[ch][pid] = q
		s.created++
		return reply{status: http.StatusOK, body: map[string]any{"accepted": true, "channel": ch, "product_id": pid, "quantity": q}}
	}
	return methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodPost)
}

// ---- notify -------------------------------------------------------------

// NewNotify returns a simulated e-mail service:
//
//	POST /emails        202 {"message_id": "MSG-9001", "status": "queued"}
//	GET  /emails/{id}   200 the e-mail with status "sent", 404
//
// Its default check answers 422 for an e-mail whose to is not an address.
func NewNotify() *System {
	s := newSystem("notify", newNotifyState())
	s.check = notifyCheck
	return s
}

func notifyCheck(r Record) string {
	if r.Method != http.MethodPost || r.Path != "/emails" {
		return ""
	}
	m, ok := r.Body.(map[string]any)
	if !ok {
		return ""
	}
	to := str(m, "to")
	if at := strings.IndexByte(to, '@'); at <= 0 || at == len(to)-1 || strings.ContainsAny(to, " \t") {
		return "to must be an e-mail address"
	}
	return ""
}

type notifyState struct {
	seq    int
	emails map[string]map[string]any
}

func newNotifyState() *notifyState {
	return &notifyState{seq: firstMessage, emails: map[string]map[string]any{}}
}

func (n *notifyState) reset() { *n = *newNotifyState() }

func (n *notifyState) route(s *System, method string, segs []string, _ string, body any) reply {
	switch {
	case len(segs) == 1 && segs[0] == "emails":
		if method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		m, bad := object(body)
		if bad != nil {
			return *bad
		}
		id := fmt.Sprintf("MSG-%d", n.seq)
		n.seq++
		n.emails[id] = map[string]any{
			"message_id": id, "status": "sent", "to": m["to"], "template": m["template"], "subject": m["subject"],
		}
		s.created++
		return reply{status: http.StatusAccepted, body: map[string]any{"message_id": id, "status": "queued"}}
	case len(segs) == 2 && segs[0] == "emails":
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		e, ok := n.emails[segs[1]]
		if !ok {
			return errReply(http.StatusNotFound, "e-mail not found")
		}
		return reply{status: http.StatusOK, body: e}
	}
	return notFound(method, segs)
}

// ---- carrier ------------------------------------------------------------

// NewCarrier returns a simulated parcel carrier:
//
//	POST /shipments               201 {"shipment_id": "CS-7001", "tracking_number", "tracking_url", "label_url"}
//	GET  /tracking/{number}       200 {"tracking_number", "reference", "status": "in_transit"}, 404
//
// A shipment needs a reference, else 422.
func NewCarrier() *System { return newSystem("carrier", newCarrierState()) }

type carrierState struct {
	seq      int
	tracking map[string]map[string]any
}

func newCarrierState() *carrierState {
	return &carrierState{seq: firstShipment, tracking: map[string]map[string]any{}}
}

func (c *carrierState) reset() { *c = *newCarrierState() }

func (c *carrierState) route(s *System, method string, segs []string, _ string, body any) reply {
	switch {
	case len(segs) == 1 && segs[0] == "shipments":
		if method != http.MethodPost {
			return methodNotAllowed(http.MethodPost)
		}
		m, bad := object(body)
		if bad != nil {
			return *bad
		}
		ref := str(m, "reference")
		if ref == "" {
			return errReply(http.StatusUnprocessableEntity, "reference is required")
		}
		id := fmt.Sprintf("CS-%d", c.seq)
		tn := fmt.Sprintf("3SCNVY%07d", c.seq)
		c.seq++
		c.tracking[tn] = map[string]any{"tracking_number": tn, "shipment_id": id, "reference": ref, "status": "in_transit"}
		s.created++
		return reply{status: http.StatusCreated, body: map[string]any{
			"shipment_id":     id,
			"tracking_number": tn,
			"tracking_url":    "https://postnl.nl/tracktrace/?b=" + tn,
			"label_url":       s.url + "/labels/" + id + ".pdf",
		}}
	case len(segs) == 2 && segs[0] == "tracking":
		if method != http.MethodGet {
			return methodNotAllowed(http.MethodGet)
		}
		t, ok := c.tracking[segs[1]]
		if !ok {
			return errReply(http.StatusNotFound, "unknown tracking number")
		}
		return reply{status: http.StatusOK, body: t}
	}
	return notFound(method, segs)
}
