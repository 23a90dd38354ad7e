package integration

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/tlsconfig"
)

// TestCerts needs no server: the lab's certificates are files 0600 in a
// directory 0700, and a client in verify-full reaches a server with the
// lab's server certificate by name and by address, and refuses one for
// another name, one of another CA and an expired one.
func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	certs, err := NewCerts(dir, "dbha lab CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := certs.Server("server", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	client, err := certs.Client("dbha")
	if err != nil {
		t.Fatal(err)
	}
	wrongName, err := certs.Server("wrong-name", "wrong.example")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := certs.Expired("expired", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCerts(filepath.Join(dir, "other"), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := other.Server("server", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}

	checkMode(t, dir, 0o700)
	for _, f := range []string{certs.CAFile(), server.Cert, server.Key, client.Cert, client.Key} {
		checkMode(t, f, 0o600)
	}

	cases := []struct {
		name   string
		server tlsconfig.Files
		to     string
		want   string // substring of the client's error; "" means connected
	}{
		{"by name", server, "localhost", ""},
		{"by address", server, "127.0.0.1", ""},
		{"another name", wrongName, "localhost", "not valid for the name"},
		{"another CA", otherCA, "localhost", "not signed by a CA in ca_file"},
		{"expired", expired, "localhost", "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tc.server.Cert, tc.server.Key)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := tlsconfig.Client(tlsconfig.VerifyFull, client, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			err = dialTLS(t, &tls.Config{Certificates: []tls.Certificate{pair}}, cfg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// dialTLS makes one TLS connection over loopback and returns the client's
// error.
func dialTLS(t *testing.T, server, client *tls.Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		conn := tls.Server(raw, server)
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if conn.Handshake() == nil {
			conn.Write([]byte("ok"))
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(conn, make([]byte, 2))
	return err
}
