package integration

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// In a TLS lab every database server has a certificate of the lab's CA for
// its address, localhost and its cluster's Consul service names, and
// takes remote connections over TLS only: MariaDB's accounts REQUIRE SSL,
// PostgreSQL's pg_hba.conf has hostssl lines only. The replicas' links are
// encrypted and verified (MASTER_SSL..., primary_conninfo sslmode
// verify-full) against the CA copy the servers can read (ServerCAFile),
// and dbha.yaml gives each cluster tls mode verify-full.

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
	hosts := []string{n.Host, "localhost"}
	if cluster := clusterOf(n); cluster != "" {
		hosts = append(hosts, cluster+"-writer.service.consul", cluster+"-reader.service.consul")
		if v := l.VIPAddr(cluster); v != "" {
			hosts = append(hosts, v)
		}
	}
	p, err := l.certs.ca.Issue(labca.Leaf{Name: n.Name, Hosts: hosts})
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
	// The copy every server reads for its replication link: a CA
	// certificate is public.
	if err := os.WriteFile(l.ServerCAFile(), ca, 0o644); err != nil {
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

// ServerCAFile is the lab's CA as the database servers read it (the
// clusters' replica_ca_file): DIR/tls is root's alone.
func (l *Lab) ServerCAFile() string { return filepath.Join(l.Dir, "server-ca.crt") }

// clusterTLS is how the lab's own clients (the tests' admin sessions, the
// clusters' tls) reach its database servers: verify-full against the
// lab's CA; nil without TLS.
func (l *Lab) clusterTLS() *tlsconfig.Settings {
	if !l.TLS {
		return nil
	}
	return &tlsconfig.Settings{Mode: tlsconfig.VerifyFull, Files: tlsconfig.Files{CA: filepath.Join(l.certsDir(), "ca.crt")}, ReplicaCA: l.ServerCAFile()}
}

// clusterTLSConfigText is a cluster's tls section in dbha.yaml.
func (l *Lab) clusterTLSConfigText() string {
	t := l.clusterTLS()
	if t == nil {
		return ""
	}
	return fmt.Sprintf("    tls:\n      mode: %s\n      ca_file: %s\n      replica_ca_file: %s\n",
		t.Mode, yamlScalar(t.Files.CA), yamlScalar(t.ReplicaCA))
}

// requireSSL ends a TLS lab's CREATE USER.
func (l *Lab) requireSSL() string {
	if !l.TLS {
		return ""
	}
	return " REQUIRE SSL"
}

// masterSSL ends a TLS lab's CHANGE MASTER, as dbha's own does.
func (l *Lab) masterSSL() string {
	if !l.TLS {
		return ""
	}
	return fmt.Sprintf(", MASTER_SSL=1, MASTER_SSL_CA='%s', MASTER_SSL_VERIFY_SERVER_CERT=1", l.ServerCAFile())
}

// conninfoSSL ends a TLS lab standby's primary_conninfo, as dbha's own does.
func (l *Lab) conninfoSSL() string {
	if !l.TLS {
		return ""
	}
	return " sslmode=verify-full sslrootcert=" + l.ServerCAFile()
}

// clusterOf is the cluster a database node belongs to ("" for others).
func clusterOf(n Node) string {
	switch n.Kind {
	case KindMariaDB:
		return mariadbCluster
	case KindPostgres:
		return postgresCluster
	}
	return ""
}
