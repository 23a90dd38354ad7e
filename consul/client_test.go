package consul

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// TestNewTLS: a client made with NewTLS speaks HTTPS with the config it is
// given (the agent's certificate verified, its own presented); a plain
// client does not reach an HTTPS agent. The agent is an HTTPS server that
// answers the one KV read Ping makes, as Consul does for a missing key.
func TestNewTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := labca.New("consul CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.Write(caFile); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, l labca.Leaf) tlsconfig.Files {
		p, err := ca.Issue(l)
		if err != nil {
			t.Fatal(err)
		}
		f := tlsconfig.Files{CA: caFile, Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
		if err := p.Write(f.Cert, f.Key); err != nil {
			t.Fatal(err)
		}
		return f
	}
	serverTLS, err := tlsconfig.Server(issue("agent", labca.Leaf{Name: "agent", Hosts: []string{"server.dc1.consul", "127.0.0.1"}}))
	if err != nil {
		t.Fatal(err)
	}
	sawClient := make(chan string, 10)
	agent := &http.Server{TLSConfig: serverTLS, ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawClient <- r.TLS.PeerCertificates[0].Subject.CommonName
		http.NotFound(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go agent.ServeTLS(ln, "", "")
	defer agent.Close()
	addr := ln.Addr().String()

	clientFiles := issue("dbha", labca.Leaf{Name: "dbha", Client: true})
	for _, name := range []string{"server.dc1.consul", "127.0.0.1"} {
		tc, err := tlsconfig.Client(tlsconfig.VerifyFull, clientFiles, name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewTLS(addr, "", tc)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(context.Background()); err != nil {
			t.Fatalf("ping over HTTPS, server name %s: %v", name, err)
		}
		if got := <-sawClient; got != "dbha" {
			t.Errorf("the agent saw client %q", got)
		}
	}

	tc, err := tlsconfig.Client(tlsconfig.VerifyFull, clientFiles, "other.dc1.consul")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewTLS(addr, "", tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), `not valid for the name "other.dc1.consul"`) {
		t.Errorf("an agent certificate for another name: %v", err)
	}

	plain, err := New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Ping(context.Background()); err == nil {
		t.Error("a plain HTTP client reached the HTTPS agent")
	}
}
