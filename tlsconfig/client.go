package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Client returns the config of a connection to serverName (a host name or
// an IP address, without a port) in mode: nil for Disable, an error when
// the files do not suit the mode or cannot be used now. f.CA is the CA the
// server's certificate must chain to (needed by VerifyCA and VerifyFull,
// optional for Require); f.Cert and f.Key, optional, are the client
// certificate presented when the server asks for one.
//
// Verification is done by VerifyConnection with the CA file as it is at
// that handshake (InsecureSkipVerify only turns off crypto/tls's own check,
// which would hold the CA pool of the day the config was built). Errors of
// a handshake say what failed against what: the CA file, the expected
// name, our own certificate's file.
func Client(mode Mode, f Files, serverName string) (*tls.Config, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	switch {
	case mode == Disable || mode == "":
		return nil, nil
	case mode.NeedsCA() && f.CA == "":
		return nil, fmt.Errorf("TLS mode %s needs a ca_file to verify the server's certificate against", mode)
	case mode == VerifyFull && serverName == "":
		return nil, errors.New("TLS mode verify-full needs the server's name")
	case (f.Cert == "") != (f.Key == ""):
		return nil, errors.New("a client certificate needs cert_file and key_file, both")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName, // sent as SNI; checked below in verify-full
		// Verification, when the mode asks for it, is VerifyConnection's.
		InsecureSkipVerify: true,
	}
	if f.CA != "" {
		ca := file{"ca_file", f.CA}
		pool, err := newSource(func() (*x509.CertPool, error) { return loadPool(ca) }, ca)
		if err != nil {
			return nil, err
		}
		v := serverCheck{ca: ca, pool: pool}
		if mode == VerifyFull {
			v.name = serverName
		}
		cfg.VerifyConnection = v.verify
	}
	if f.Cert != "" {
		kp, err := newKeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.current(time.Now())
		}
	}
	return cfg, nil
}

// serverCheck verifies a server's certificate against the CA file, and
// against name unless it is empty (verify-ca, require with a CA file).
type serverCheck struct {
	ca   file
	pool *source[*x509.CertPool]
	name string
}

// verify is the pattern crypto/tls documents for VerifyConnection, with
// the CA pool read at the handshake and errors that say what was expected.
func (v serverCheck) verify(cs tls.ConnectionState) error {
	pool, err := v.pool.get()
	if err != nil {
		return fmt.Errorf("verify the server's certificate: %w", err)
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         pool,
		Intermediates: x509.NewCertPool(),
		DNSName:       v.name, // an IP address is matched to IP SANs
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(opts)
	var (
		name    x509.HostnameError
		unknown x509.UnknownAuthorityError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &name):
		return fmt.Errorf("the server's certificate is not valid for the name %q (verify-full): %w", v.name, err)
	case errors.As(err, &unknown):
		return fmt.Errorf("the server's certificate is not signed by a CA in %s: %w", v.ca, err)
	}
	return fmt.Errorf("verify the server's certificate against %s: %w", v.ca, err)
}
