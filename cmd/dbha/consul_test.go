package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/labca"
)

// consulTestCerts writes, under dir, a CA (ca.crt), dbha's client
// certificate (dbha.crt, dbha.key) and returns them with the CA, for
// issuing server certificates to verify against.
func consulTestCerts(t *testing.T, dir string) (*labca.CA, config.ConsulTLS) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := labca.New("consul test CA")
	if err != nil {
		t.Fatal(err)
	}
	files := config.ConsulTLS{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "dbha.crt"), KeyFile: filepath.Join(dir, "dbha.key")}
	if err := ca.Write(files.CAFile); err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(labca.Leaf{Name: "dbha", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Write(files.CertFile, files.KeyFile); err != nil {
		t.Fatal(err)
	}
	return ca, files
}

// serverCert is a server certificate of ca for hosts, as an agent would
// present it.
func serverCert(t *testing.T, ca *labca.CA, hosts ...string) *x509.Certificate {
	t.Helper()
	p, err := ca.Issue(labca.Leaf{Name: "consul", Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return p.Cert
}

// TestConsulTLS: without consul.tls there is no TLS config (plain HTTP, as
// before); with it, the agent's certificate is always verified in full:
// against the CA file and the name (server_name, else the address's
// host), whatever else is set; files that cannot be used are a
// configuration error naming the agent and the file.
func TestConsulTLS(t *testing.T) {
	dir := t.TempDir()
	ca, files := consulTestCerts(t, filepath.Join(dir, "tls"))
	other, err := labca.New("another CA")
	if err != nil {
		t.Fatal(err)
	}
	const addr = "127.0.0.1:8501"

	if tc, err := consulTLS(config.Consul{Address: addr}); tc != nil || err != nil {
		t.Errorf("without consul.tls: %v, %v; want no TLS config", tc, err)
	}

	verify := []struct {
		name       string
		serverName string
		cert       *x509.Certificate
		want       string // "" verifies; else in the error
	}{
		{"the address's host", "", serverCert(t, ca, "127.0.0.1"), ""},
		{"server_name", "server.dc1.consul", serverCert(t, ca, "server.dc1.consul"), ""},
		{"a certificate for another name than the address", "", serverCert(t, ca, "server.dc1.consul"),
			`not valid for the name "127.0.0.1" (verify-full)`},
		{"a certificate for another name than server_name", "server.dc2.consul", serverCert(t, ca, "server.dc1.consul", "127.0.0.1"),
			`not valid for the name "server.dc2.consul" (verify-full)`},
		{"a certificate of another CA", "", serverCert(t, other, "127.0.0.1"),
			"not signed by a CA in ca_file " + files.CAFile},
	}
	for _, tc := range verify {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Consul{Address: addr, TLS: files}
			c.TLS.ServerName = tc.serverName
			cfg, err := consulTLS(c)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.VerifyConnection == nil || cfg.GetClientCertificate == nil {
				t.Fatalf("config %+v: want the server verified and a client certificate", cfg)
			}
			if cert, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil || cert.Leaf.Subject.CommonName != "dbha" {
				t.Errorf("client certificate: %v, %v; want dbha's", cert, err)
			}
			err = cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want verified, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}

	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readable := filepath.Join(dir, "readable.key")
	if raw, err := os.ReadFile(files.KeyFile); err != nil || os.WriteFile(readable, raw, 0o644) != nil {
		t.Fatal("copy the key", err)
	}
	bad := []struct {
		name string
		tls  config.ConsulTLS
		want string
	}{
		{"a CA file without a certificate", config.ConsulTLS{CAFile: garbage}, "ca_file " + garbage},
		{"a key readable by others", config.ConsulTLS{CAFile: files.CAFile, CertFile: files.CertFile, KeyFile: readable}, readable},
		{"a certificate that is not one", config.ConsulTLS{CAFile: files.CAFile, CertFile: garbage, KeyFile: files.KeyFile}, garbage},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consulTLS(config.Consul{Address: addr, TLS: tc.tls})
			var ee *exitError
			if err == nil || !strings.Contains(err.Error(), "consul.tls of the agent at "+addr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %s and %q, got %v", addr, tc.want, err)
			}
			if !errors.As(err, &ee) || ee.code != exitUsage {
				t.Errorf("error %v: want a usage error (exit %d)", err, exitUsage)
			}
			if _, err := consulClient(config.Config{Consul: config.Consul{Address: addr, TLS: tc.tls}}); err == nil {
				t.Errorf("consulClient built a client with unusable consul.tls")
			}
		})
	}
}

// TestConsulTLSPathsRelativeToConfig: consul.tls files are named relative
// to the configuration file, as every other file is.
func TestConsulTLSPathsRelativeToConfig(t *testing.T) {
	body := strings.Replace(goodYAML, "  address: 127.0.0.1:8500\n",
		"  address: 127.0.0.1:8501\n  tls:\n    ca_file: tls/ca.crt\n    cert_file: tls/dbha.crt\n    key_file: tls/dbha.key\n    server_name: server.dc1.consul\n", 1)
	path := writeConfig(t, body)
	dir := filepath.Dir(path)
	_, files := consulTestCerts(t, filepath.Join(dir, "tls"))
	cfg, err := loadConfig(path, []string{"PG_PW=x", "REPL_PW=y"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Consul.TLS; got.CAFile != files.CAFile || got.CertFile != files.CertFile || got.KeyFile != files.KeyFile {
		t.Errorf("consul.tls = %+v, want the files under %s", got, dir)
	}
	tc, err := consulTLS(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != "server.dc1.consul" {
		t.Errorf("server name %q, want server_name's", tc.ServerName)
	}
}
