package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Server returns the config of a TLS server (dbha's HTTP API): f.Cert and
// f.Key are its certificate and key; f.CA, when set, turns on mutual TLS:
// every client must present a certificate for client authentication that
// chains to it. The files are read again when they change, as Client's
// are: the certificate by GetCertificate, the client CA by
// VerifyConnection at each handshake.
//
// Mutual TLS is RequireAnyClientCert plus that VerifyConnection rather
// than RequireAndVerifyClientCert with a ClientCAs pool swapped in by
// GetConfigForClient: the config GetConfigForClient returns replaces the
// one http.Server prepared (with its ALPN protocols), and the check is
// then the same, in the same place, as a client's.
//
// A handshake that fails on our side (our files unreadable, our
// certificate expired) returns the error to the server, which logs it
// (http.Server's ErrorLog); the client sees an internal-error alert.
func Server(f Files) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("a TLS server needs cert_file and key_file, both")
	}
	kp, err := newKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.current(time.Now())
		},
	}
	if f.CA == "" {
		return cfg, nil
	}
	ca := file{"client_ca_file", f.CA}
	pool, err := newSource(func() (*x509.CertPool, error) { return loadPool(ca) }, ca)
	if err != nil {
		return nil, err
	}
	v := clientCheck{ca: ca, pool: pool}
	cfg.ClientAuth = tls.RequireAnyClientCert // verified by v.verify
	cfg.VerifyConnection = v.verify
	return cfg, nil
}

// clientCheck verifies a client's certificate against the client CA file.
type clientCheck struct {
	ca   file
	pool *source[*x509.CertPool]
}

func (v clientCheck) verify(cs tls.ConnectionState) error {
	pool, err := v.pool.get()
	if err != nil {
		return fmt.Errorf("verify the client's certificate: %w", err)
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the client sent no certificate (mutual TLS)")
	}
	opts := x509.VerifyOptions{
		Roots:         pool,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("verify the client's certificate (%s) against %s: %w", cs.PeerCertificates[0].Subject, v.ca, err)
	}
	return nil
}
