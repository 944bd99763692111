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
// replaces the system roots, as curl's --cacert does: the connection, its
// token endpoint included, trusts only that CA. cert_file and key_file
// present a client certificate (mTLS); they come together. Paths are
// taken as given: the runtime makes them absolute against the workspace.
// Errors name the file and never show its contents.
func tlsConfig(v any) (*tls.Config, error) {
	m, err := stringMap(v, "tls")
	if err != nil {
		return nil, err
	}
	if err := connectors.CheckFields("tls", m, "ca_file", "cert_file", "key_file"); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f := m["ca_file"]; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", f)
		}
	}
	cert, key := m["cert_file"], m["key_file"]
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, errors.New("tls: cert_file and key_file go together (mTLS needs both)")
	default:
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s with key %s: %w", cert, key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
