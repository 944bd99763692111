// Package mappings owns the expression environment and function library of
// Conveyor: what an expression can see (body, headers, query, params, vars,
// meta, item), the functions it can call (lookups, dates, decimals, strings,
// ids), and compiling and evaluating expressions and mapping trees. It knows
// nothing of HTTP or stores: callers hand it values and get values back.
package mappings

import (
	"net/textproto"
	"time"
)

// Env is what an expression sees. One Env serves a message for all its
// steps; the executor updates Body, Vars and Item as it goes.
type Env struct {
	Body    any               `expr:"body"`
	Headers map[string]string `expr:"headers"` // canonical keys: X-Shopify-Topic
	Query   map[string]string `expr:"query"`
	Params  map[string]string `expr:"params"`
	Vars    map[string]any    `expr:"vars"`
	Meta    Meta              `expr:"meta"`
	Item    any               `expr:"item"` // the element inside a split
	// Header is header(name): a case-insensitive header lookup.
	Header func(name string) string `expr:"header"`
}

// Meta describes the message being processed.
type Meta struct {
	ID         string    `expr:"id"`
	Flow       string    `expr:"flow"`
	Revision   int       `expr:"revision"`
	ReceivedAt time.Time `expr:"received_at"`
	Attempt    int       `expr:"attempt"`
	Index      int       `expr:"index"` // position of item inside a split
}

// NewEnv returns an Env for one message. Header keys are canonicalised so
// headers["X-Shop"] and header("x-shop") both find them.
func NewEnv(body any, headers map[string]string, meta Meta) *Env {
	h := make(map[string]string, len(headers))
	for k, v := range headers {
		h[textproto.CanonicalMIMEHeaderKey(k)] = v
	}
	e := &Env{Body: body, Headers: h, Query: map[string]string{}, Params: map[string]string{}, Vars: map[string]any{}, Meta: meta}
	e.Header = func(name string) string { return e.Headers[textproto.CanonicalMIMEHeaderKey(name)] }
	return e
}

// Names are the variables every expression can use.
var Names = []string{"body", "headers", "query", "params", "vars", "meta", "item", "header"}
