package labca

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	ca, err := New("lab CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := New("other CA")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	issue := func(ca *CA, l Leaf) *x509.Certificate {
		t.Helper()
		p, err := ca.Issue(l)
		if err != nil {
			t.Fatal(err)
		}
		return p.Cert
	}
	server := issue(ca, Leaf{Name: "db1", Hosts: []string{"db1.lab", "127.0.0.1", "198.18.0.5", "::1"}})
	client := issue(ca, Leaf{Name: "dbha", Client: true})
	expired := issue(ca, Leaf{Name: "old", Hosts: []string{"db1.lab"}, NotAfter: time.Now().Add(-time.Hour)})
	foreign := issue(other, Leaf{Name: "db1", Hosts: []string{"db1.lab"}})
	serverAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cases := []struct {
		name  string
		cert  *x509.Certificate
		host  string
		usage []x509.ExtKeyUsage
		ok    bool
	}{
		{"server by DNS name", server, "db1.lab", serverAuth, true},
		{"server by IPv4 address", server, "198.18.0.5", serverAuth, true},
		{"server by loopback", server, "127.0.0.1", serverAuth, true},
		{"server by IPv6 address", server, "::1", serverAuth, true},
		{"server for another name", server, "db2.lab", serverAuth, false},
		{"server used as a client", server, "", clientAuth, false},
		{"client", client, "", clientAuth, true},
		{"client used as a server", client, "", serverAuth, false},
		{"expired", expired, "db1.lab", serverAuth, false},
		{"another CA", foreign, "db1.lab", serverAuth, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: tc.usage})
			if tc.ok != (err == nil) {
				t.Fatalf("verify: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	ca, err := New("lab CA")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(Leaf{Name: "db1", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "db1.crt"), filepath.Join(dir, "db1.key")
	if err := ca.Write(caFile); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{caFile, certFile, keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("the written pair does not load: %v", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		t.Error("the CA file holds no certificate")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
