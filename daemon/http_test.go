package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// testPKI is a CA and another one, and the files they issued, in a
// directory of the test's.
type testPKI struct {
	dir       string
	ca, other *labca.CA
	caFile    string
	pool      *x509.CertPool // trusts ca: the clients' roots
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	var err error
	if p.ca, err = labca.New("dbha test CA"); err != nil {
		t.Fatal(err)
	}
	if p.other, err = labca.New("another CA"); err != nil {
		t.Fatal(err)
	}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	if err := p.ca.Write(p.caFile); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca.Cert)
	return p
}

// issue writes name.crt and name.key (renamed into place over any there:
// a rotation) and returns the pair.
func (p *testPKI) issue(t *testing.T, ca *labca.CA, name string, l labca.Leaf) (tlsconfig.Files, *x509.Certificate) {
	t.Helper()
	l.Name = name
	pair, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	f := tlsconfig.Files{Cert: filepath.Join(p.dir, name+".crt"), Key: filepath.Join(p.dir, name+".key")}
	if err := pair.Write(f.Cert, f.Key); err != nil {
		t.Fatal(err)
	}
	return f, pair.Cert
}

// clientCert is a client certificate of ca, for a tls.Config.
func (p *testPKI) clientCert(t *testing.T, ca *labca.CA, name string) []tls.Certificate {
	t.Helper()
	f, _ := p.issue(t, ca, name, labca.Leaf{Client: true})
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}

// serveTest runs Serve on a free loopback port until the test ends and
// returns the address. The handler answers "served <proto>" and says
// whether the request came over TLS.
func serveTest(t *testing.T, tc *tls.Config, log *slog.Logger) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "served "+r.Proto)
		if r.TLS != nil {
			io.WriteString(w, " over TLS")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Endpoint{Addr: "127.0.0.1:0", TLS: tc, Log: log}, h, func(a net.Addr) { addrs <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-addrs:
		return a.String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return ""
}

// fetch GETs url on a connection of its own (a new handshake every time)
// and returns the response's status, body and TLS state.
func fetch(t *testing.T, url string, tc *tls.Config) (int, string, *tls.ConnectionState, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.TLS, err
}

// TestServeMutualTLS: with a client CA the endpoint serves HTTPS (HTTP/2
// kept) to a client with a certificate of that CA; it refuses in the
// handshake a client without a certificate and one of another CA, saying
// why in its log; a plain HTTP request is served nothing.
func TestServeMutualTLS(t *testing.T) {
	p := newTestPKI(t)
	sf, _ := p.issue(t, p.ca, "server", labca.Leaf{Hosts: []string{"127.0.0.1"}})
	sf.CA = p.caFile
	tc, err := tlsconfig.Server(sf)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	addr := serveTest(t, tc, slog.New(slog.NewJSONHandler(&logs, nil)))
	good := p.clientCert(t, p.ca, "operator")
	stranger := p.clientCert(t, p.other, "stranger")

	code, body, st, err := fetch(t, "https://"+addr+"/", &tls.Config{RootCAs: p.pool, Certificates: good})
	if err != nil || code != http.StatusOK || body != "served HTTP/2.0 over TLS" || st == nil || st.NegotiatedProtocol != "h2" {
		t.Fatalf("a client with a certificate of the client CA: %d %q %v (ALPN %v)", code, body, err, st)
	}

	cases := []struct {
		name  string
		certs []tls.Certificate
		log   string // what the server's log says of it
	}{
		{"no client certificate", nil, "client didn't provide a certificate"},
		{"a client certificate of another CA", stranger, "against client_ca_file " + p.caFile + ": x509: certificate signed by unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _, err := fetch(t, "https://"+addr+"/", &tls.Config{RootCAs: p.pool, Certificates: c.certs})
			if err == nil {
				t.Fatalf("served: %d %q", code, body)
			}
			// Under TLS 1.3 the client may see the server's alert or
			// only the connection closed under its request: the
			// server's log says where and why it refused.
			t.Log(err)
			waitFor(t, func() bool { // the server logs after the client has its answer
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "TLS handshake error") && strings.Contains(line, c.log) {
						return true
					}
				}
				return false
			})
		})
	}

	t.Run("plain HTTP", func(t *testing.T) {
		// Go's TLS server answers a plain HTTP request with a 400 of its
		// own, before any handler.
		code, body, _, err := fetch(t, "http://"+addr+"/", nil)
		if err != nil || code != http.StatusBadRequest || !strings.Contains(body, "Client sent an HTTP request to an HTTPS server") {
			t.Fatalf("a plain HTTP request: %d %q %v, want Go's 400 for HTTP to an HTTPS server", code, body, err)
		}
	})
}

// TestServeTLSRotation: without a client CA any client that trusts the
// server's CA is served; the server's certificate renamed into place is
// presented by the next connection, without a restart; a plain endpoint
// still serves HTTP.
func TestServeTLSRotation(t *testing.T) {
	p := newTestPKI(t)
	sf, first := p.issue(t, p.ca, "server", labca.Leaf{Hosts: []string{"127.0.0.1"}})
	tc, err := tlsconfig.Server(sf)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	addr := serveTest(t, tc, slog.New(slog.NewJSONHandler(&logs, nil)))
	client := &tls.Config{RootCAs: p.pool}
	serial := func() *big.Int {
		t.Helper()
		code, body, st, err := fetch(t, "https://"+addr+"/", client)
		if err != nil || code != http.StatusOK || !strings.HasSuffix(body, "over TLS") {
			t.Fatalf("https: %d %q %v", code, body, err)
		}
		return st.PeerCertificates[0].SerialNumber
	}
	if got := serial(); got.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("the server presented serial %x, want %x", got, first.SerialNumber)
	}
	_, second := p.issue(t, p.ca, "server", labca.Leaf{Hosts: []string{"127.0.0.1"}})
	if got := serial(); got.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after the rotation the server presented serial %x, want the new %x (the old was %x)", got, second.SerialNumber, first.SerialNumber)
	}

	// A key others may read is refused at the next handshake too.
	if err := os.Chmod(sf.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := fetch(t, "https://"+addr+"/", client); err == nil {
		t.Error("served with a key file readable by others")
	}
	waitFor(t, func() bool {
		return strings.Contains(logs.String(), "key_file: "+sf.Key+": private key file is readable")
	})

	plain := serveTest(t, nil, nil)
	if code, body, st, err := fetch(t, "http://"+plain+"/", nil); err != nil || code != http.StatusOK || body != "served HTTP/1.1" || st != nil {
		t.Errorf("plain endpoint: %d %q %v", code, body, err)
	}
}
