package httpconn

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// A webhook URL carries its secret in the path (Slack's
// /services/T…/B…/<token>): a transport error, which lands in logs and
// the dead-letter history, shows the path with that segment hidden. The
// other segments, and base paths of plain names, stay readable.
func TestTransportErrorHidesTheWebhookToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused from now on
	for _, tc := range []struct{ base, path, want, secret string }{
		{"http://" + addr + "/services/T0001ABCD/B0001ABCD/Xq9dK2mZ7pL4sV8nR3tY6wH1", "", "/services/T0001ABCD/B0001ABCD/…/", "Xq9dK2mZ7pL4sV8nR3tY6wH1"},
		{"http://" + addr + "/webhookb2/" + strings.Repeat("f", 40) + "/IncomingWebhook", "/x", "/webhookb2/…/IncomingWebhook/x", strings.Repeat("f", 40)},
		{"http://" + addr + "/sap/opu/odata/sap/API_SALES_ORDER_SRV", "/orders/SO100000000000000042", "/sap/opu/odata/sap/API_SALES_ORDER_SRV/orders/SO100000000000000042", ""},
	} {
		c := client(t, map[string]any{"base_url": tc.base}, time.Second)
		_, err := c.Call(context.Background(), connectors.Request{Method: "POST", Path: tc.path, Body: map[string]any{}})
		if err == nil {
			t.Fatalf("%s: no error from a refused connection", tc.base)
		}
		if !strings.Contains(err.Error(), "http://"+addr+tc.want+":") || (tc.secret != "" && strings.Contains(err.Error(), tc.secret)) {
			t.Errorf("error %q; want it to show http://%s%s and not the secret", err, addr, tc.want)
		}
	}
}

// A Host header changes the HTTP Host only: the TLS server name (SNI) and
// the certificate check follow base_url, as with curl -H "Host: ...". A
// certificate is checked against the address the connection dials, so a
// Host header cannot make a certificate for another name pass.
func TestHostHeaderLeavesTLSNameToBaseURL(t *testing.T) {
	var mu sync.Mutex
	var host, sni string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		host, sni = r.Host, r.TLS.ServerName
		mu.Unlock()
		w.WriteHeader(204)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, ca, "CERTIFICATE", srv.Certificate().Raw) // valid for 127.0.0.1 and example.com

	// https://127.0.0.1: checked against the IP address; Host is a name
	// the certificate does not hold, and the call goes through.
	c := client(t, map[string]any{"base_url": srv.URL, "tls": map[string]any{"ca_file": ca}, "headers": map[string]any{"Host": "erp.internal"}}, 0)
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/a"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if host != "erp.internal" || sni != "" {
		t.Errorf("Host %q, SNI %q; want erp.internal and none (an IP address has no SNI)", host, sni)
	}
	mu.Unlock()

	// https://localhost: the certificate does not hold localhost, and a
	// Host it does hold (example.com) does not change that.
	local := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c = client(t, map[string]any{"base_url": local, "tls": map[string]any{"ca_file": ca}, "headers": map[string]any{"Host": "example.com"}}, 2*time.Second)
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/b"}); err == nil || !strings.Contains(err.Error(), "localhost") {
		t.Errorf("error %v; want a certificate error naming localhost", err)
	}
}
