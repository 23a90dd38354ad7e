package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/tlsconfig"
)

// TestAPIOverTLS runs `dbha run` with http.tls (set by DBHA_HTTP_TLS_*
// variables, certificates from the lab's kind of CA) and mutual TLS: the
// API answers over HTTPS a client with a certificate of the client CA and
// the token; a client without a certificate, and one with a certificate
// of another CA, are refused; plain HTTP is served nothing; the console's
// sign-in page is there and its session cookie is Secure; the server's
// certificate renamed into place is presented to the next client without
// a restart.
func TestAPIOverTLS(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	dir := t.TempDir()
	certs, err := NewCerts(filepath.Join(dir, "certs"), "dbha API test CA")
	if err != nil {
		t.Fatal(err)
	}
	others, err := NewCerts(filepath.Join(dir, "other"), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := certs.Server("api", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	operator, err := certs.Client("operator")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := others.Client("stranger")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "api.token")
	if err := os.WriteFile(token, []byte("tls-api-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	run := startDbhaRun(t, bin, l, "tls-api", "DBHA_HTTP_LISTEN="+listen, "DBHA_HTTP_TOKEN_FILE="+token,
		"DBHA_HTTP_TLS_CERT_FILE="+server.Cert, "DBHA_HTTP_TLS_KEY_FILE="+server.Key, "DBHA_HTTP_TLS_CLIENT_CA_FILE="+certs.CAFile())

	roots := x509.NewCertPool()
	pem, err := os.ReadFile(certs.CAFile())
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("read the CA: %v", err)
	}
	// Each client makes a connection of its own per request: a new
	// handshake every time.
	client := func(f *tlsconfig.Files) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if f != nil {
			c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Timeout: 10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	withCert := client(&operator)
	base := "https://" + listen

	var clusters int
	waitUntil(t, time.Minute, "the API over HTTPS with both clusters watched", func() error {
		resp, body, err := request(withCert, http.MethodGet, base+"/api/v1/clusters", "tls-api-token", nil)
		if err != nil {
			return err
		}
		var doc struct {
			Clusters []struct {
				Cycles int64 `json:"cycles"`
			} `json:"clusters"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
			return fmt.Errorf("%d %q", resp.StatusCode, body)
		}
		clusters = len(doc.Clusters)
		for _, c := range doc.Clusters {
			if c.Cycles == 0 {
				return fmt.Errorf("a cluster not probed yet: %s", body)
			}
		}
		if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			return fmt.Errorf("not HTTP/2 over TLS: %+v", resp.TLS)
		}
		return nil
	})
	if clusters != 2 {
		t.Errorf("%d clusters in the API, want 2", clusters)
	}
	if resp, _, err := request(withCert, http.MethodGet, base+"/api/v1/clusters", "", nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the API over HTTPS without the token: %v, want 401", err)
	}

	for _, c := range []struct {
		name   string
		client *http.Client
		log    string // why dbha run's log says it refused the handshake
	}{
		{"no client certificate", client(nil), "client didn't provide a certificate"},
		{"a client certificate of another CA", client(&stranger), "x509: certificate signed by unknown authority"},
	} {
		if resp, body, err := request(c.client, http.MethodGet, base+"/healthz", "", nil); err == nil {
			t.Errorf("%s: served %d %q", c.name, resp.StatusCode, body)
		} else {
			t.Logf("%s: refused: %v", c.name, err)
		}
		waitUntil(t, 10*time.Second, "dbha run's log to say it refused "+c.name, func() error {
			for _, line := range strings.Split(run.log(), "\n") {
				if strings.Contains(line, "TLS handshake error") && strings.Contains(line, c.log) {
					return nil
				}
			}
			return errors.New("no such line")
		})
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	resp, body, err := request(plain, http.MethodGet, "http://"+listen+"/api/v1/clusters", "tls-api-token", nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Client sent an HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP: %v %v %q, want Go's 400 for HTTP to an HTTPS server", resp, err, body)
	}

	resp, body, err = request(withCert, http.MethodGet, base+"/console/login", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("the console's sign-in page over HTTPS: %v %v\n%s", resp, err, body)
	}
	resp, _, err = request(withCert, http.MethodPost, base+"/console/login", "", url.Values{"token": {"tls-api-token"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console sign-in: %v %v", resp, err)
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.Contains(ck, "; Secure") || !strings.Contains(ck, "HttpOnly") {
		t.Errorf("the console's session cookie over HTTPS: %q, want Secure and HttpOnly", ck)
	}

	// Rotation: a new certificate renamed over the old one.
	first := peerSerial(t, withCert, base)
	if _, err := certs.Server("api", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if second := peerSerial(t, withCert, base); second == first {
		t.Errorf("after the rotation the server still presents serial %s", first)
	}
}

// request sends one request, a form's when form is not nil, with token as
// bearer ("" for none), and returns the response with its body read.
func request(c *http.Client, method, u, token string, form url.Values) (*http.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// peerSerial is the serial number of the certificate the server presents
// to a new connection.
func peerSerial(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, _, err := request(c, http.MethodGet, base+"/healthz", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("/healthz over HTTPS: %v %v", resp, err)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Text(16)
}
