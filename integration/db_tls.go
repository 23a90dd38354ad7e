package integration

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// In a TLS lab every database server has a certificate of the lab's CA for
// its address and offers TLS: MariaDB with ssl_cert (have_ssl YES),
// PostgreSQL with ssl = on. Clear text stays allowed for now: the lab's
// dbha.yaml does not ask for TLS to the clusters until every connection
// dbha makes to them uses it (issue 17); TestDatabaseTLS checks the ones
// that do, from the servers' side.

// serverTLS is a database node's certificate, key and the lab's CA, in
// DIR/<node>/tls: outside the data directory, so that pg_basebackup does
// not copy a primary's certificate into a standby, and kept by a rejoin.
func serverTLS(n Node) tlsconfig.Files {
	dir := filepath.Join(filepath.Dir(n.DataDir), "tls")
	return tlsconfig.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key")}
}

// issueServerTLS writes n's certificate (valid for its host and
// localhost), its key (0600) and the CA, owned by the lab user; once: a
// node that has them keeps them. Only the process that creates the lab
// holds the CA.
func (l *Lab) issueServerTLS(n Node) error {
	if !l.TLS {
		return nil
	}
	f := serverTLS(n)
	if _, err := os.Stat(f.Key); err == nil {
		return nil
	}
	if l.certs == nil {
		return fmt.Errorf("%s: no certificate in %s, and this process does not hold the lab's CA to issue one", n.Name, filepath.Dir(f.Key))
	}
	dir := filepath.Dir(f.Key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := l.certs.ca.Issue(labca.Leaf{Name: n.Name, Hosts: []string{n.Host, "localhost"}})
	if err != nil {
		return fmt.Errorf("%s: certificate: %w", n.Name, err)
	}
	if err := p.Write(f.Cert, f.Key); err != nil {
		return err
	}
	ca, err := os.ReadFile(l.certs.CAFile())
	if err != nil {
		return err
	}
	if err := os.WriteFile(f.CA, ca, 0o600); err != nil {
		return err
	}
	for _, path := range []string{dir, f.CA, f.Cert, f.Key} {
		if err := l.chownLab(path); err != nil {
			return err
		}
	}
	return nil
}

// mariadbTLSSettings are a TLS lab node's my.cnf lines.
func (l *Lab) mariadbTLSSettings(n Node) string {
	if !l.TLS {
		return ""
	}
	f := serverTLS(n)
	return fmt.Sprintf("ssl_ca=%s\nssl_cert=%s\nssl_key=%s\n", f.CA, f.Cert, f.Key)
}

// postgresTLSSettings are a TLS lab node's lab-node.conf lines.
func (l *Lab) postgresTLSSettings(n Node) string {
	if !l.TLS {
		return ""
	}
	f := serverTLS(n)
	return fmt.Sprintf("ssl = on\nssl_ca_file = '%s'\nssl_cert_file = '%s'\nssl_key_file = '%s'\n", f.CA, f.Cert, f.Key)
}
