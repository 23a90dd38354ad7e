package tlsconfig

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/labca"
)

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	sf := p.server(t, p.ca, "server", "127.0.0.1")
	sf.CA = p.caFile
	srv := mustServer(t, sf)
	good := p.client(t, p.ca, "dbha")
	good.CA = p.caFile
	otherCA := p.client(t, p.other, "stranger")
	otherCA.CA = p.caFile
	serverUsage := p.server(t, p.ca, "server-usage", "127.0.0.1") // not for client authentication
	serverUsage.CA = p.caFile
	cases := []struct {
		name   string
		client Files
		want   string // substring of the server's error; "" means connected
	}{
		{"a client certificate signed by the CA", good, ""},
		{"no client certificate", Files{CA: p.caFile}, "tls: client didn't provide a certificate"},
		{"a client certificate of another CA", otherCA, "against client_ca_file " + p.caFile + ": x509: certificate signed by unknown authority"},
		{"a certificate not for client authentication", serverUsage, "incompatible key usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, srv, mustClient(t, VerifyFull, tc.client, "127.0.0.1"))
			if tc.want == "" {
				if r.clientErr != nil || r.serverErr != nil {
					t.Fatalf("want connected; client %v, server %v", r.clientErr, r.serverErr)
				}
				if r.clientCert == nil || r.clientCert.Subject.CommonName != "dbha" {
					t.Fatalf("the server saw client certificate %v", r.clientCert)
				}
				return
			}
			if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), tc.want) {
				t.Fatalf("want a server error containing %q, got %v", tc.want, r.serverErr)
			}
			if r.clientErr == nil {
				t.Fatal("the client was not told")
			}
			t.Log(r.serverErr)
		})
	}
}

func TestServerWithoutClientCA(t *testing.T) {
	p := newPKI(t)
	srv := mustServer(t, p.server(t, p.ca, "server", "localhost"))
	if srv.ClientAuth != 0 || srv.MinVersion < 0x0303 {
		t.Errorf("ClientAuth %v, MinVersion %x", srv.ClientAuth, srv.MinVersion)
	}
	if r := handshake(t, srv, mustClient(t, VerifyFull, Files{CA: p.caFile}, "localhost")); r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("client %v, server %v", r.clientErr, r.serverErr)
	}
}

// TestServerRotation: once the server's files are replaced, the next
// handshake presents the new certificate; a broken file fails the
// handshake, with an error naming it, until it is fixed.
func TestServerRotation(t *testing.T) {
	p := newPKI(t)
	sf := p.server(t, p.ca, "server", "127.0.0.1")
	srv := mustServer(t, sf)
	client := mustClient(t, VerifyFull, Files{CA: p.caFile}, "127.0.0.1")
	r := handshake(t, srv, client)
	if r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	first := r.serverCert.SerialNumber

	next := p.server(t, p.ca, "server", "127.0.0.1")
	r = handshake(t, srv, client)
	if r.clientErr != nil {
		t.Fatal(r.clientErr)
	}
	if r.serverCert.SerialNumber.Cmp(first) == 0 || r.serverCert.SerialNumber.Cmp(certOf(t, next).SerialNumber) != 0 {
		t.Fatalf("the client saw serial %v; want the new certificate's", r.serverCert.SerialNumber)
	}

	// Rewritten in place, not renamed: another size and time.
	if err := os.WriteFile(sf.Key, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = handshake(t, srv, client)
	if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "key_file "+sf.Key) || r.clientErr == nil {
		t.Fatalf("with a broken key file: want a server error naming it; server %v, client %v", r.serverErr, r.clientErr)
	}
	t.Log(r.serverErr)
	p.server(t, p.ca, "server", "127.0.0.1")
	if r = handshake(t, srv, client); r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("once fixed: client %v, server %v", r.clientErr, r.serverErr)
	}
}

// TestServerClientCARotation: a client CA file replaced by another CA's
// admits that CA's clients and no longer the old one's.
func TestServerClientCARotation(t *testing.T) {
	p := newPKI(t)
	sf := p.server(t, p.ca, "server", "127.0.0.1")
	sf.CA = p.caFile
	srv := mustServer(t, sf)
	cf := p.client(t, p.other, "dbha")
	cf.CA = p.caFile // to verify the server
	serverCA := p.caFile + ".server"
	if err := p.ca.Write(serverCA); err != nil {
		t.Fatal(err)
	}
	cf.CA = serverCA
	client := mustClient(t, VerifyFull, cf, "127.0.0.1")
	if r := handshake(t, srv, client); r.serverErr == nil {
		t.Fatal("a client of another CA was admitted")
	}
	if err := p.other.Write(p.caFile); err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, srv, client); r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("after the client CA file was replaced: client %v, server %v", r.clientErr, r.serverErr)
	}
}

func TestServerRefusesBadSettings(t *testing.T) {
	p := newPKI(t)
	readable := p.server(t, p.ca, "readable", "localhost")
	chmod(t, readable.Key, 0o604)
	expired := p.issue(t, p.ca, "expired", labca.Leaf{Hosts: []string{"localhost"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)})
	good := p.server(t, p.ca, "good", "localhost")
	cases := []struct {
		name    string
		f       Files
		want    string
		wantErr error
	}{
		{"no certificate", Files{}, "cert_file and key_file, both", nil},
		{"a key readable by others", readable, "key_file: " + readable.Key, ErrKeyReadable},
		{"an expired certificate", expired, "cert_file " + expired.Cert + ": certificate is outside its validity period: it expired at 2025-06-01T12:00:00Z (NotAfter)", ErrCertValidity},
		{"a missing client CA file", Files{Cert: good.Cert, Key: good.Key, CA: p.caFile + ".missing"}, "client_ca_file: stat " + p.caFile + ".missing", os.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Server(tc.f)
			if err == nil {
				t.Fatalf("want an error, got a config %v", cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %v", err, tc.wantErr)
			}
		})
	}
}
