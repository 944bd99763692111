package httpconn

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/conveyor-run/conveyor/connectors"
)

// A Host among the connection's headers is sent with every request, as a
// request's own Host header is (a virtual host behind an address). Go
// ignores a Host in Request.Header, so it was dropped without a word and
// the server saw the base URL's host.
func TestConnectionHostHeaderIsSent(t *testing.T) {
	var mu sync.Mutex
	var hosts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	c := client(t, map[string]any{"base_url": srv.URL, "headers": map[string]any{"host": "erp.internal"}}, 0)
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/a"}); err != nil {
		t.Fatal(err)
	}
	// The request's own Host still wins.
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/b", Headers: map[string]string{"Host": "wms.internal"}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hosts) != 2 || hosts[0] != "erp.internal" || hosts[1] != "wms.internal" {
		t.Errorf("hosts %q; want erp.internal from the connection, then wms.internal from the request", hosts)
	}
}
