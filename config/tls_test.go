package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

func TestValidateTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte("PEM\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Validate does not parse the files: tlsconfig does.
	ca, cert, key := write("ca.crt", 0o644), write("dbha.crt", 0o644), write("dbha.key", 0o600)
	readable := write("readable.key", 0o644)
	missing := filepath.Join(dir, "missing.crt")
	full := ClusterTLS{Mode: tlsconfig.VerifyFull, CAFile: ca, CertFile: cert, KeyFile: key}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; empty means valid
	}{
		{"no tls", func(*Config) {}, nil},
		{"verify-full with a client certificate", func(c *Config) { c.Clusters[0].TLS = full }, nil},
		{"verify-ca", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.VerifyCA, CAFile: ca} }, nil},
		{"require without a CA file, PostgreSQL", func(c *Config) {
			c.Clusters[0].Engine = topology.Postgres
			c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Require}
		}, nil},
		{"require without a CA file, MariaDB", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Require} },
			[]string{"clusters[0].tls.ca_file: must be set for MariaDB/MySQL: the client tools dbha runs"}},
		{"disable spelled out", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Disable} }, nil},
		{"unknown mode", func(c *Config) { c.Clusters[0].TLS.Mode = "strict" },
			[]string{`clusters[0].tls.mode: unknown TLS mode "strict": use disable, require, verify-ca or verify-full`}},
		{"prefer", func(c *Config) { c.Clusters[0].TLS.Mode = "prefer" },
			[]string{`clusters[0].tls.mode: unknown TLS mode "prefer": it falls back to clear text`}},
		{"verify-full without a CA file", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.VerifyFull} },
			[]string{"clusters[0].tls.ca_file: must be set with mode verify-full"}},
		{"verify-ca without a CA file", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.VerifyCA} },
			[]string{"clusters[0].tls.ca_file: must be set with mode verify-ca"}},
		{"files without a mode", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{CAFile: ca} },
			[]string{"clusters[0].tls.mode: is disable (the default: clear text) while files are set"}},
		{"a certificate without its key", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Require, CertFile: cert} },
			[]string{"clusters[0].tls: set cert_file and key_file together"}},
		{"a missing CA file", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.VerifyCA, CAFile: missing} },
			[]string{"clusters[0].tls.ca_file: " + missing + " does not exist"}},
		{"a directory for a file", func(c *Config) { c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.VerifyCA, CAFile: dir} },
			[]string{"clusters[0].tls.ca_file: " + dir + " is a directory"}},
		{"a key readable by others", func(c *Config) {
			c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Require, CertFile: cert, KeyFile: readable}
		},
			[]string{"clusters[0].tls.key_file: " + readable + ": private key file is readable by group or others (mode -rw-r--r--): chmod 600 it"}},
		{"a missing key", func(c *Config) {
			c.Clusters[0].TLS = ClusterTLS{Mode: tlsconfig.Require, CertFile: cert, KeyFile: missing}
		},
			[]string{"clusters[0].tls.key_file: " + missing + " does not exist"}},

		{"consul", func(c *Config) {
			c.Consul.TLS = ConsulTLS{CAFile: ca, CertFile: cert, KeyFile: key, ServerName: "server.dc1.consul"}
		}, nil},
		{"consul without a CA file", func(c *Config) { c.Consul.TLS = ConsulTLS{ServerName: "server.dc1.consul"} },
			[]string{"consul.tls.ca_file: must be set"}},
		{"consul with a key only", func(c *Config) { c.Consul.TLS = ConsulTLS{CAFile: ca, KeyFile: key} },
			[]string{"consul.tls: set cert_file and key_file together"}},
		{"consul with a readable key", func(c *Config) { c.Consul.TLS = ConsulTLS{CAFile: ca, CertFile: cert, KeyFile: readable} },
			[]string{"consul.tls.key_file: " + readable + ": private key file is readable"}},

		{"https", func(c *Config) {
			c.HTTP = HTTP{Listen: "127.0.0.1:8443", TokenEnv: "T", TLS: HTTPTLS{CertFile: cert, KeyFile: key}}
		}, nil},
		{"https with mutual TLS", func(c *Config) {
			c.HTTP = HTTP{Listen: "127.0.0.1:8443", TokenEnv: "T", TLS: HTTPTLS{CertFile: cert, KeyFile: key, ClientCAFile: ca}}
		}, nil},
		{"https without listen", func(c *Config) { c.HTTP.TLS = HTTPTLS{CertFile: cert, KeyFile: key} },
			[]string{"http.tls: is set without http.listen"}},
		{"a client CA without a certificate", func(c *Config) {
			c.HTTP = HTTP{Listen: "127.0.0.1:8443", TokenEnv: "T", TLS: HTTPTLS{ClientCAFile: ca}}
		}, []string{"http.tls: set cert_file and key_file: the server's certificate and key"}},
		{"https with a missing client CA", func(c *Config) {
			c.HTTP = HTTP{Listen: "127.0.0.1:8443", TokenEnv: "T", TLS: HTTPTLS{CertFile: cert, KeyFile: key, ClientCAFile: missing}}
		}, []string{"http.tls.client_ca_file: " + missing + " does not exist"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Clusters = []Cluster{validCluster()}
			tc.mutate(&cfg)
			err := Validate(cfg, "dbha.yaml")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got nil", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), "dbha.yaml: "+w) {
					t.Errorf("error %q does not contain %q", err, "dbha.yaml: "+w)
				}
			}
		})
	}
}

func TestTLSDefaults(t *testing.T) {
	cfg := WithDefaults(Config{Clusters: []Cluster{validCluster()}})
	if got := cfg.Clusters[0].TLS; got.Mode != tlsconfig.Disable || got.IsEnabled() {
		t.Errorf("default cluster TLS = %+v: want mode disable, clear text as before", got)
	}
	if cfg.Consul.TLS.IsEnabled() || cfg.HTTP.TLS.IsEnabled() {
		t.Error("TLS to Consul or for the API is on by default")
	}
	cases := []struct {
		c    Consul
		want string
	}{
		{Consul{Address: "consul.internal:8501"}, "consul.internal"},
		{Consul{Address: "[::1]:8501"}, "::1"},
		{Consul{Address: "127.0.0.1:8501", TLS: ConsulTLS{ServerName: "server.dc1.consul"}}, "server.dc1.consul"},
	}
	for _, tc := range cases {
		if got := tc.c.TLSServerName(); got != tc.want {
			t.Errorf("TLSServerName of %+v = %q, want %q", tc.c, got, tc.want)
		}
	}
}
