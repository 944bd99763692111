package httpconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/conveyor-run/conveyor/connectors"
)

// tlsConfig builds the client TLS settings of tls: {ca_file, cert_file,
// key_file}, reading the files once, when the connection is built (a
// changed file takes effect when conveyor.yaml is reloaded). ca_file
// replaces the system roots for the API, as curl's --cacert does: the
// connection trusts only that CA. Its OAuth2 token endpoint (token) trusts
// the system roots as well: an API on a private CA commonly takes its
// tokens from a public identity provider (Entra ID, Okta, Auth0) that
// the CA did not sign. cert_file and key_file present a client
// certificate (mTLS) to both; they come together. Paths are taken as
// given: the runtime makes them absolute against the workspace. Errors
// name the file and never show its contents.
func tlsConfig(v any) (api, token *tls.Config, err error) {
	m, err := stringMap(v, "tls")
	if err != nil {
		return nil, nil, err
	}
	if err := connectors.CheckFields("tls", m, "ca_file", "cert_file", "key_file"); err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var tokenRoots *x509.CertPool
	if f := m["ca_file"]; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", f)
		}
		if tokenRoots, err = systemRoots(); err != nil || tokenRoots == nil {
			tokenRoots = x509.NewCertPool() // no system roots here: the CA alone, as for the API
		}
		tokenRoots.AppendCertsFromPEM(pem)
	}
	cert, key := m["cert_file"], m["key_file"]
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, nil, errors.New("tls: cert_file and key_file go together (mTLS needs both)")
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: client certificate %s with key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	token = cfg
	if tokenRoots != nil {
		token = cfg.Clone()
		token.RootCAs = tokenRoots
	}
	return cfg, token, nil
}

// systemRoots is the system's trust store (a variable for tests).
var systemRoots = x509.SystemCertPool
