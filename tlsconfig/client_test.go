package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/labca"
)

func TestParseMode(t *testing.T) {
	cases := []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{"", Disable, ""},
		{"disable", Disable, ""},
		{"require", Require, ""},
		{"verify-ca", VerifyCA, ""},
		{"verify-full", VerifyFull, ""},
		{"prefer", "", `unknown TLS mode "prefer": it falls back to clear text`},
		{"allow", "", "falls back to clear text"},
		{"Verify-Full", "", `unknown TLS mode "Verify-Full": use disable, require, verify-ca or verify-full`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrUnknownMode) {
					t.Fatalf("ParseMode(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// TestClientModes runs each mode against servers with a good certificate,
// one for another name, one from another CA and an expired one.
func TestClientModes(t *testing.T) {
	p := newPKI(t)
	good := p.server(t, p.ca, "good", "localhost", "127.0.0.1")
	wrongName := p.server(t, p.ca, "wrong-name", "wrong.example", "10.9.9.9")
	otherCA := p.server(t, p.other, "other-ca", "localhost", "127.0.0.1")
	expired := p.issue(t, p.ca, "expired", labca.Leaf{Hosts: []string{"localhost", "127.0.0.1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	notCA := "not signed by a CA in ca_file " + p.caFile
	cases := []struct {
		name   string
		mode   Mode
		ca     bool // give the client our CA file
		to     string
		server Files
		want   string // substring of the client's error; "" means connected
	}{
		{"require, good", Require, false, "127.0.0.1", good, ""},
		{"require accepts another name without a CA file", Require, false, "127.0.0.1", wrongName, ""},
		{"require accepts another CA without a CA file", Require, false, "127.0.0.1", otherCA, ""},
		{"require accepts an expired certificate without a CA file", Require, false, "127.0.0.1", expired, ""},
		{"require with a CA file, good", Require, true, "127.0.0.1", good, ""},
		{"require with a CA file accepts another name", Require, true, "127.0.0.1", wrongName, ""},
		{"require with a CA file refuses another CA", Require, true, "127.0.0.1", otherCA, notCA},
		{"require with a CA file refuses an expired certificate", Require, true, "127.0.0.1", expired, "ca_file " + p.caFile + ": x509: certificate has expired or is not yet valid: current time"},
		{"verify-ca, good", VerifyCA, true, "127.0.0.1", good, ""},
		{"verify-ca accepts another name signed by the CA", VerifyCA, true, "127.0.0.1", wrongName, ""},
		{"verify-ca refuses another CA", VerifyCA, true, "127.0.0.1", otherCA, notCA},
		{"verify-ca refuses an expired certificate", VerifyCA, true, "127.0.0.1", expired, "expired"},
		{"verify-full, IP address", VerifyFull, true, "127.0.0.1", good, ""},
		{"verify-full, DNS name", VerifyFull, true, "localhost", good, ""},
		{"verify-full refuses another IP address", VerifyFull, true, "127.0.0.1", wrongName, `not valid for the name "127.0.0.1" (verify-full)`},
		{"verify-full refuses another DNS name", VerifyFull, true, "localhost", wrongName, `not valid for the name "localhost"`},
		{"verify-full refuses another CA", VerifyFull, true, "127.0.0.1", otherCA, notCA},
		{"verify-full refuses an expired certificate", VerifyFull, true, "localhost", expired, "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Files{}
			if tc.ca {
				f.CA = p.caFile
			}
			r := handshake(t, staticServer(t, tc.server), mustClient(t, tc.mode, f, tc.to))
			if tc.want == "" {
				if r.clientErr != nil {
					t.Fatalf("want connected, got %v", r.clientErr)
				}
				if r.serverCert.SerialNumber.Cmp(certOf(t, tc.server).SerialNumber) != 0 {
					t.Errorf("the client saw another certificate")
				}
				if r.version < tls.VersionTLS12 {
					t.Errorf("TLS version %x", r.version)
				}
				return
			}
			if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, r.clientErr)
			}
			t.Log(r.clientErr)
		})
	}
}

func TestClientDisable(t *testing.T) {
	for _, m := range []Mode{Disable, ""} {
		cfg, err := Client(m, Files{}, "db1")
		if cfg != nil || err != nil {
			t.Errorf("Client(%q) = %v, %v; want nil, nil", m, cfg, err)
		}
	}
}

func TestClientRefusesBadSettings(t *testing.T) {
	p := newPKI(t)
	cl := p.client(t, p.ca, "dbha")
	readable := p.client(t, p.ca, "readable")
	chmod(t, readable.Key, 0o644)
	expired := p.issue(t, p.ca, "expired", labca.Leaf{Client: true,
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2021, 1, 2, 3, 4, 5, 0, time.UTC)})
	future := p.issue(t, p.ca, "future", labca.Leaf{Client: true,
		NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	garbage := filepath.Join(p.dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(p.dir, "missing.crt")
	cases := []struct {
		name    string
		mode    Mode
		f       Files
		to      string
		want    []string
		wantErr error
	}{
		{"unknown mode", "prefer", Files{}, "db1", []string{"falls back to clear text"}, ErrUnknownMode},
		{"verify-ca without a CA file", VerifyCA, Files{}, "db1", []string{"verify-ca needs a ca_file"}, nil},
		{"verify-full without a CA file", VerifyFull, Files{}, "db1", []string{"verify-full needs a ca_file"}, nil},
		{"verify-full without a name", VerifyFull, Files{CA: p.caFile}, "", []string{"needs the server's name"}, nil},
		{"a certificate without its key", Require, Files{Cert: cl.Cert}, "db1", []string{"cert_file and key_file, both"}, nil},
		{"a missing CA file", VerifyCA, Files{CA: missing}, "db1", []string{"ca_file: stat " + missing}, os.ErrNotExist},
		{"a CA file without a certificate", VerifyCA, Files{CA: garbage}, "db1", []string{"ca_file " + garbage + ": holds no PEM certificate"}, nil},
		{"a key readable by others", Require, readable, "db1", []string{"key_file: " + readable.Key, "(mode -rw-r--r--): chmod 600 it"}, ErrKeyReadable},
		{"a certificate that is not one", Require, Files{Cert: garbage, Key: cl.Key}, "db1", []string{"cert_file " + garbage + " and key_file " + cl.Key}, nil},
		{"a certificate of another key", Require, Files{Cert: expired.Cert, Key: cl.Key}, "db1", []string{"private key does not match"}, nil},
		{"our certificate expired", Require, expired, "db1", []string{"cert_file " + expired.Cert, "expired at 2021-01-02T03:04:05Z (NotAfter)"}, ErrCertValidity},
		{"our certificate not valid yet", Require, future, "db1", []string{"cert_file " + future.Cert, "not valid before"}, ErrCertValidity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Client(tc.mode, tc.f, tc.to)
			if err == nil {
				t.Fatalf("want an error, got a config %v", cfg)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %v", err, tc.wantErr)
			}
		})
	}
}

// TestCARotation: a client whose CA file is replaced verifies against the
// new CA from the next handshake on.
func TestCARotation(t *testing.T) {
	p := newPKI(t)
	srv := staticServer(t, p.server(t, p.other, "server", "127.0.0.1"))
	client := mustClient(t, VerifyFull, Files{CA: p.caFile}, "127.0.0.1")
	if r := handshake(t, srv, client); r.clientErr == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	if err := p.other.Write(p.caFile); err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, srv, client); r.clientErr != nil {
		t.Fatalf("after the CA file was replaced: %v", r.clientErr)
	}
}

// TestClientCertRotation: the server sees the client's new certificate
// once its files are replaced; a broken file fails the handshake with an
// error naming it, and a fixed one is used again.
func TestClientCertRotation(t *testing.T) {
	p := newPKI(t)
	sf := p.server(t, p.ca, "server", "127.0.0.1")
	sf.CA = p.caFile
	srv := mustServer(t, sf)
	f := p.client(t, p.ca, "dbha")
	f.CA = p.caFile
	client := mustClient(t, VerifyFull, f, "127.0.0.1")
	r := handshake(t, srv, client)
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("first handshake: client %v, server %v", r.clientErr, r.serverErr)
	}
	first := r.clientCert.SerialNumber

	next := p.client(t, p.ca, "dbha") // the same files, a new certificate
	r = handshake(t, srv, client)
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("after rotation: client %v, server %v", r.clientErr, r.serverErr)
	}
	if r.clientCert.SerialNumber.Cmp(first) == 0 || r.clientCert.SerialNumber.Cmp(certOf(t, next).SerialNumber) != 0 {
		t.Fatalf("the server saw serial %v; want the new certificate's", r.clientCert.SerialNumber)
	}

	if err := os.WriteFile(f.Cert, []byte("truncated"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = handshake(t, srv, client)
	if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), "cert_file "+f.Cert) {
		t.Fatalf("with a broken certificate file: want an error naming it, got %v", r.clientErr)
	}
	p.client(t, p.ca, "dbha")
	if r = handshake(t, srv, client); r.clientErr != nil {
		t.Fatalf("once fixed: %v", r.clientErr)
	}

	chmod(t, f.Key, 0o640)
	r = handshake(t, srv, client)
	if !errors.Is(r.clientErr, ErrKeyReadable) {
		t.Fatalf("with the key made readable by the group: want ErrKeyReadable, got %v", r.clientErr)
	}
}

func certOf(t *testing.T, f Files) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}
