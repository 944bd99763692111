package httpconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
)

// pki is a CA and a client certificate it signed, as PEM files in dir.
type pki struct {
	ca                *x509.Certificate
	certFile, keyFile string
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, clientKey := key(), key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	clTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "conveyor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	clDER, err := x509.CreateCertificate(rand.Reader, clTmpl, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(clientKey)
	p := pki{ca: ca, certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem")}
	writePEM(t, p.certFile, "CERTIFICATE", clDER)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mtlsServer requires a client certificate signed by p's CA and answers
// with its common name; serverCA is a PEM file trusting the server.
func mtlsServer(t *testing.T, p pki, dir string) (srv *httptest.Server, serverCA string) {
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/token" {
			io.WriteString(w, `{"access_token": "tls-token", "expires_in": 60}`)
			return
		}
		fmt.Fprintf(w, `{"client": %q, "auth": %q}`, r.TLS.PeerCertificates[0].Subject.CommonName, r.Header.Get("Authorization"))
	}))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	serverCA = filepath.Join(dir, "server-ca.pem")
	writePEM(t, serverCA, "CERTIFICATE", srv.Certificate().Raw)
	return srv, serverCA
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	srv, serverCA := mtlsServer(t, p, dir)

	c := client(t, map[string]any{"base_url": srv.URL, "tls": map[string]any{"ca_file": serverCA, "cert_file": p.certFile, "key_file": p.keyFile}}, 0)
	resp, err := c.Call(context.Background(), connectors.Request{Path: "/orders"})
	if err != nil || resp.Status != 200 || resp.Body.(map[string]any)["client"] != "conveyor" {
		t.Fatalf("mTLS call: %v, %v", resp, err)
	}

	// The token endpoint is reached with the same TLS settings.
	values := oauthValues(srv.URL, srv.URL+"/token")
	values["tls"] = map[string]string{"ca_file": serverCA, "cert_file": p.certFile, "key_file": p.keyFile}
	c2 := client(t, values, 0)
	resp, err = c2.Call(context.Background(), connectors.Request{Path: "/orders"})
	if err != nil || resp.Body.(map[string]any)["auth"] != "Bearer tls-token" {
		t.Fatalf("oauth2 over mTLS: %v, %v", resp, err)
	}

	for name, tlsv := range map[string]map[string]any{
		"no client certificate": {"ca_file": serverCA},
		"server not trusted":    {"cert_file": p.certFile, "key_file": p.keyFile},
	} {
		c := client(t, map[string]any{"base_url": srv.URL, "tls": tlsv}, 2*time.Second)
		if resp, err := c.Call(context.Background(), connectors.Request{Path: "/orders"}); err == nil {
			t.Errorf("%s: got %d, want a transport error", name, resp.Status)
		}
	}
}

func TestTLSBadConfig(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("PRIVATE-KEY-MATERIAL"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tls  map[string]any
		want string
	}{
		{map[string]any{"cert_file": p.certFile}, "cert_file and key_file go together"},
		{map[string]any{"ca_file": filepath.Join(dir, "missing.pem")}, "tls.ca_file: open "},
		{map[string]any{"ca_file": notPEM}, "holds no PEM certificate"},
		{map[string]any{"cert_file": p.certFile, "key_file": notPEM}, "client certificate " + p.certFile + " with key " + notPEM},
		{map[string]any{"ca": "x"}, `tls: unknown field "ca"`},
	} {
		_, err := NewClient(connectors.Config{Name: "erp", Values: map[string]any{"base_url": "https://erp", "tls": tc.tls}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.tls, err, tc.want)
		} else if strings.Contains(err.Error(), "MATERIAL") {
			t.Errorf("error shows the file's contents: %v", err)
		}
	}
}

// An API on a private CA (ca_file) taking its tokens from an identity
// provider the system trusts: the token endpoint is trusted through the
// system roots, while the API still trusts only the CA. ca_file replaced
// the system roots for the token endpoint too, so no token could be had.
func TestTokenEndpointTrustsSystemRoots(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	api, apiCA := mtlsServer(t, p, dir)

	// The identity provider's certificate: its own CA, which only the
	// (stand-in) system trust store holds.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	idpCert, _ := x509.ParseCertificate(der)
	idp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token": "idp-token", "expires_in": 60}`)
	}))
	idp.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	idp.StartTLS()
	t.Cleanup(idp.Close)
	saved := systemRoots
	t.Cleanup(func() { systemRoots = saved })
	systemRoots = func() (*x509.CertPool, error) {
		pool := x509.NewCertPool()
		pool.AddCert(idpCert)
		return pool, nil
	}

	values := oauthValues(api.URL, idp.URL+"/token")
	values["tls"] = map[string]string{"ca_file": apiCA, "cert_file": p.certFile, "key_file": p.keyFile}
	c := client(t, values, 2*time.Second)
	resp, err := c.Call(context.Background(), connectors.Request{Path: "/orders"})
	if err != nil || resp.Body.(map[string]any)["auth"] != "Bearer idp-token" {
		t.Fatalf("API on a private CA with a public identity provider: %v, %v", resp, err)
	}
	// The API itself is still pinned to ca_file: an API whose certificate
	// only the system roots trust is refused.
	values = map[string]any{"base_url": idp.URL, "tls": map[string]string{"ca_file": apiCA}}
	if resp, err := client(t, values, 2*time.Second).Call(context.Background(), connectors.Request{Path: "/token"}); err == nil {
		t.Errorf("an API outside ca_file answered %d, want a transport error", resp.Status)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
