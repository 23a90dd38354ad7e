package main

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/labca"
)

// TestLoadConfigHTTPTLS: http.tls's files are read relative to the
// configuration file, from the file and from DBHA_HTTP_TLS_* variables
// alike, and the endpoint is then HTTPS with mutual TLS.
func TestLoadConfigHTTPTLS(t *testing.T) {
	body := goodYAML + `http:
  listen: 127.0.0.1:8443
  token_env: API_TOKEN
  tls:
    cert_file: tls/api.crt
    key_file: tls/api.key
`
	path := writeConfig(t, body)
	dir := filepath.Dir(path)
	ca, err := labca.New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue(labca.Leaf{Name: "api", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := pair.Write(filepath.Join(dir, "tls/api.crt"), filepath.Join(dir, "tls/api.key")); err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(filepath.Join(dir, "tls/clients.crt")); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path, []string{"PG_PW=x", "DBHA_HTTP_TLS_CLIENT_CA_FILE=tls/clients.crt"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.HTTPTLS{CertFile: filepath.Join(dir, "tls/api.crt"), KeyFile: filepath.Join(dir, "tls/api.key"), ClientCAFile: filepath.Join(dir, "tls/clients.crt")}
	if cfg.HTTP.TLS != want {
		t.Fatalf("http.tls = %+v, want %+v", cfg.HTTP.TLS, want)
	}
	ep, err := httpEndpoint(cfg.HTTP, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr != "127.0.0.1:8443" || ep.TLS == nil || ep.TLS.ClientAuth != tls.RequireAnyClientCert || ep.TLS.VerifyConnection == nil {
		t.Errorf("endpoint %+v: want HTTPS with mutual TLS", ep)
	}
}

// TestHTTPEndpoint: no http.tls, plain HTTP; an http.tls whose files do
// not load stops dbha run with a usage error naming it, never plain HTTP.
func TestHTTPEndpoint(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ep, err := httpEndpoint(config.HTTP{Listen: "127.0.0.1:7070"}, log)
	if err != nil || ep.TLS != nil || ep.Addr != "127.0.0.1:7070" {
		t.Errorf("without http.tls: %+v, %v; want plain HTTP", ep, err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("not PEM\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ep, err = httpEndpoint(config.HTTP{Listen: "127.0.0.1:7070", TLS: config.HTTPTLS{CertFile: cert, KeyFile: key}}, log)
	var exit *exitError
	if err == nil || !errors.As(err, &exit) || exit.code != exitUsage || !strings.Contains(err.Error(), "http.tls: cert_file "+cert) || ep.TLS != nil {
		t.Errorf("unreadable certificate: %+v, %v; want a usage error naming http.tls and the file", ep, err)
	}
}
