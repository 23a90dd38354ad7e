package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/tlsconfig"
)

// A TLS lab (Options.TLS) has a private CA in DIR/tls (NewCerts) and its
// Consul agents serve their HTTP API over HTTPS only, to clients that
// present a certificate of that CA: dbha (dbha.yaml's consul.tls) and
// every helper here that talks to Consul. Consul's DNS stays plain: DNS
// has no TLS.
//
//	DIR/tls/ca.crt                the lab's CA (its key stays in the memory of the process that made the lab)
//	DIR/tls/consul.crt, .key      the agents' certificate: ConsulServerName, localhost, 127.0.0.1, each agent's address
//	DIR/tls/dbha.crt, .key        dbha's client certificate (common name dbha), also the helpers'
//	DIR/<consul node>/tls.hcl     the agent's tls block (-config-file)

// ConsulServerName is the name a TLS lab's dbha.yaml gives as
// consul.tls.server_name, and which the agents' certificate holds beside
// their addresses: Consul's convention for servers of datacenter dc1.
const ConsulServerName = "server.dc1.consul"

// hostConsulHTTPSPort is the HTTPS port of a TLS hosts lab's Consul servers:
// Consul's usual one.
const hostConsulHTTPSPort = 8501

// certsDir is DIR/tls.
func (l *Lab) certsDir() string { return filepath.Join(l.Dir, "tls") }

// ConsulTLSFiles are the files a client of a TLS lab's Consul is given:
// the CA the agents' certificate chains to, and dbha's client certificate.
// Zero without TLS.
func (l *Lab) ConsulTLSFiles() tlsconfig.Files {
	if !l.TLS {
		return tlsconfig.Files{}
	}
	d := l.certsDir()
	return tlsconfig.Files{CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "dbha.crt"), Key: filepath.Join(d, "dbha.key")}
}

// consulServerFiles are the agents' certificate and key.
func (l *Lab) consulServerFiles() tlsconfig.Files {
	d := l.certsDir()
	return tlsconfig.Files{CA: filepath.Join(d, "ca.crt"), Cert: filepath.Join(d, "consul.crt"), Key: filepath.Join(d, "consul.key")}
}

// ConsulTLS is the client side of a TLS lab's Consul API, as dbha.yaml
// gives it to dbha: verify-full against the lab's CA and ConsulServerName,
// with dbha's client certificate. nil without TLS.
func (l *Lab) ConsulTLS() (*tls.Config, error) {
	if !l.TLS {
		return nil, nil
	}
	return tlsconfig.Client(tlsconfig.VerifyFull, l.ConsulTLSFiles(), ConsulServerName)
}

// ConsulScheme is the scheme of the lab's Consul API: https in a TLS lab,
// http otherwise.
func (l *Lab) ConsulScheme() string {
	if l.TLS {
		return "https"
	}
	return "http"
}

// ConsulClient is a dbha client of the lab's Consul agent (the first
// server's in a hosts lab), over HTTPS in a TLS lab.
func (l *Lab) ConsulClient() (*consul.Client, error) { return l.ConsulClientAt(l.ConsulHTTP) }

// ConsulClientAt is ConsulClient for an agent, or a proxy of one, at addr.
func (l *Lab) ConsulClientAt(addr string) (*consul.Client, error) {
	tc, err := l.ConsulTLS()
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return consul.NewTLS(addr, "", tc)
}

// ConsulAPI is a client of Consul's own library for the lab's agent, for
// what dbha's client does not offer (listing every key).
func (l *Lab) ConsulAPI() (*api.Client, error) {
	tc, err := l.ConsulTLS()
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", l.ConsulHTTP, err)
	}
	cfg := &api.Config{Address: l.ConsulHTTP, Scheme: l.ConsulScheme()}
	if tc != nil {
		cfg.Transport = &http.Transport{TLSClientConfig: tc}
	}
	return api.NewClient(cfg)
}

// consulHTTP is a plain HTTP client of the lab's Consul API (TLS in a TLS
// lab) that keeps no connection open, for the readiness polls.
func (l *Lab) consulHTTP() (*http.Client, error) {
	tc, err := l.ConsulTLS()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}, nil
}

// makeConsulTLS creates a TLS lab's CA, the agents' and dbha's
// certificates, and each agent's tls.hcl. It runs once, when the lab is
// created; the CA is kept in l.certs for tests that issue more (a rotation,
// another name).
func (l *Lab) makeConsulTLS() error {
	if !l.TLS {
		return nil
	}
	certs, err := NewCerts(l.certsDir(), "dbha lab CA")
	if err != nil {
		return err
	}
	hosts := []string{ConsulServerName, "localhost", labHost}
	for _, n := range l.consulNodes() {
		if n.Host != labHost {
			hosts = append(hosts, n.Host)
		}
	}
	if _, err := certs.Server("consul", hosts...); err != nil {
		return fmt.Errorf("lab certificates: %w", err)
	}
	if _, err := certs.Client("dbha"); err != nil {
		return fmt.Errorf("lab certificates: %w", err)
	}
	l.certs = certs
	for _, n := range l.consulNodes() {
		if err := writeFileAtomic(consulTLSFile(n), []byte(l.consulTLSHCL()), 0o600); err != nil {
			return fmt.Errorf("%s: write its TLS configuration: %w", n.Name, err)
		}
	}
	return nil
}

// consulTLSFile is DIR/<consul node>/tls.hcl.
func consulTLSFile(n Node) string { return filepath.Join(filepath.Dir(n.DataDir), "tls.hcl") }

// consulTLSHCL is an agent's tls block. verify_incoming makes the HTTPS
// API require a client certificate of the lab's CA. Internal RPC is TLS
// too (verify_outgoing: a server checks the chain of the one it calls),
// but does not ask the caller for a client certificate: the agents'
// certificate is a server certificate (labca issues one usage or the
// other), which Go's TLS refuses as a client's.
func (l *Lab) consulTLSHCL() string {
	f := l.consulServerFiles()
	var b strings.Builder
	b.WriteString("# Written by dbha lab: the HTTP API over HTTPS only, for clients of the lab's CA.\n")
	b.WriteString("tls {\n  defaults {\n")
	fmt.Fprintf(&b, "    ca_file = %s\n    cert_file = %s\n    key_file = %s\n", strconv.Quote(f.CA), strconv.Quote(f.Cert), strconv.Quote(f.Key))
	b.WriteString("    verify_incoming = true\n    verify_outgoing = true\n  }\n")
	b.WriteString("  internal_rpc {\n    verify_incoming = false\n  }\n}\n")
	return b.String()
}

// consulAPIArgs are an agent's flags for its HTTP API on port: plain HTTP,
// or in a TLS lab HTTPS only (the HTTP port off) with the tls block.
func (l *Lab) consulAPIArgs(n Node, port int) []string {
	if !l.TLS {
		return []string{"-http-port=" + strconv.Itoa(port), "-https-port=-1"}
	}
	return []string{"-http-port=-1", "-https-port=" + strconv.Itoa(port), "-config-file=" + consulTLSFile(n)}
}

// consulTLSConfigText is dbha.yaml's consul.tls block, "" without TLS.
func (l *Lab) consulTLSConfigText() string {
	if !l.TLS {
		return ""
	}
	f := l.ConsulTLSFiles()
	return fmt.Sprintf("  tls:\n    ca_file: %s\n    cert_file: %s\n    key_file: %s\n    server_name: %s\n",
		yamlScalar(f.CA), yamlScalar(f.Cert), yamlScalar(f.Key), yamlScalar(ConsulServerName))
}

// getConsul is a GET of the lab's Consul API at addr that succeeds only
// with 200 OK; the caller closes the body.
func (l *Lab) getConsul(ctx context.Context, addr, path string) (*http.Response, error) {
	hc, err := l.consulHTTP()
	if err != nil {
		return nil, err
	}
	return getOKWith(ctx, hc, l.ConsulScheme()+"://"+addr+path)
}
