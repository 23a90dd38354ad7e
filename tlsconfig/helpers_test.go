package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dbha/dbha/labca"
)

// pki is a directory of certificates from two CAs: ours (caFile) and
// another.
type pki struct {
	dir    string
	ca     *labca.CA
	other  *labca.CA
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	if p.ca, err = labca.New("test CA"); err != nil {
		t.Fatal(err)
	}
	if p.other, err = labca.New("another CA"); err != nil {
		t.Fatal(err)
	}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	if err := p.ca.Write(p.caFile); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue writes dir/name.crt and dir/name.key, issued by ca, and returns
// their paths (no CA file).
func (p *pki) issue(t *testing.T, ca *labca.CA, name string, l labca.Leaf) Files {
	t.Helper()
	if l.Name == "" {
		l.Name = name
	}
	pair, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	f := Files{Cert: filepath.Join(p.dir, name+".crt"), Key: filepath.Join(p.dir, name+".key")}
	if err := pair.Write(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	return f
}

func (p *pki) server(t *testing.T, ca *labca.CA, name string, hosts ...string) Files {
	t.Helper()
	return p.issue(t, ca, name, labca.Leaf{Hosts: hosts})
}

func (p *pki) client(t *testing.T, ca *labca.CA, name string) Files {
	t.Helper()
	return p.issue(t, ca, name, labca.Leaf{Client: true})
}

// staticServer serves f's certificate as it is, expired or not, without
// any of this package's checks: the other side of a client under test.
func staticServer(t *testing.T, f Files) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

// result is what both sides of one connection saw.
type result struct {
	clientErr, serverErr error
	serverCert           *x509.Certificate // presented to the client
	clientCert           *x509.Certificate // presented to the server; nil if none
	version              uint16
}

// handshake connects a client to a server over loopback TCP and has the
// server write two bytes that the client reads: in TLS 1.3 a server
// refuses a client's certificate after the client's handshake returned,
// and the client learns it on its first read.
func handshake(t *testing.T, server, client *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		err  error
		peer *x509.Certificate
	}
	done := make(chan side, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		conn := tls.Server(raw, server)
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var s side
		if s.err = conn.Handshake(); s.err == nil {
			if peers := conn.ConnectionState().PeerCertificates; len(peers) > 0 {
				s.peer = peers[0]
			}
			_, s.err = conn.Write([]byte("ok"))
		}
		done <- s
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, client)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var r result
	if r.clientErr = conn.Handshake(); r.clientErr == nil {
		st := conn.ConnectionState()
		r.serverCert, r.version = st.PeerCertificates[0], st.Version
		_, r.clientErr = io.ReadFull(conn, make([]byte, 2))
	}
	if r.clientErr != nil {
		conn.Close() // a server waiting for our certificate gives up
	}
	s := <-done
	r.serverErr, r.clientCert = s.err, s.peer
	return r
}

func mustClient(t *testing.T, mode Mode, f Files, name string) *tls.Config {
	t.Helper()
	cfg, err := Client(mode, f, name)
	if err != nil {
		t.Fatalf("Client(%s): %v", mode, err)
	}
	return cfg
}

func mustServer(t *testing.T, f Files) *tls.Config {
	t.Helper()
	cfg, err := Server(f)
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	return cfg
}

func chmod(t *testing.T, file string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(file, mode); err != nil {
		t.Fatal(err)
	}
}
