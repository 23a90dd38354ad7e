package config

import (
	"errors"
	"io/fs"
	"net"
	"os"

	"github.com/dbha/dbha/tlsconfig"
)

// ClusterTLS is how dbha connects to a cluster's instances: every
// connection it makes to them (probes, replication control, the change
// stream, the tools it runs) and the replication settings it writes into
// replicas. tlsconfig.Client turns it into a *tls.Config.
type ClusterTLS struct {
	// Mode has PostgreSQL's sslmode meanings, for every engine: disable
	// (the default: clear text, as dbha has always connected), require
	// (encrypted; verified against ca_file as in verify-ca when it is
	// set), verify-ca (the chain verified against ca_file) or verify-full
	// (the chain and the instance's host name or IP address).
	Mode tlsconfig.Mode `mapstructure:"mode" yaml:"mode,omitempty" json:"mode,omitempty"`
	// CAFile holds the CA certificates the servers' certificates must
	// chain to; verify-ca and verify-full need it.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// CertFile and KeyFile are dbha's client certificate and its key
	// (mode 0600), for servers that require one; optional, together.
	CertFile string `mapstructure:"cert_file" yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// ReplicaCAFile is the CA file's path on the database servers' hosts:
	// the replication settings dbha writes into replicas (CHANGE MASTER
	// ... MASTER_SSL_CA, primary_conninfo's sslrootcert) name it, so that a
	// promoted replica's followers stay encrypted and verified. Default:
	// ca_file (the same path on every host). Not checked here: it is a
	// path on other machines.
	ReplicaCAFile string `mapstructure:"replica_ca_file" yaml:"replica_ca_file,omitempty" json:"replica_ca_file,omitempty"`
}

// Files returns the files for tlsconfig.Client.
func (t ClusterTLS) Files() tlsconfig.Files {
	return tlsconfig.Files{CA: t.CAFile, Cert: t.CertFile, Key: t.KeyFile}
}

// IsEnabled reports whether connections to the cluster are encrypted.
func (t ClusterTLS) IsEnabled() bool { return t.Mode != "" && t.Mode != tlsconfig.Disable }

// Settings are what every connection to the cluster is given: nil when
// disabled (clear text).
func (t ClusterTLS) Settings() *tlsconfig.Settings {
	if !t.IsEnabled() {
		return nil
	}
	s := tlsconfig.NewSettings(t.Mode, t.Files())
	s.ReplicaCA = t.ReplicaCAFile
	return s
}

// ConsulTLS is how dbha reaches the Consul agent over HTTPS. Any key set
// turns TLS on; the agent's certificate is then always verified against
// CAFile and ServerName (verify-full).
type ConsulTLS struct {
	CAFile   string `mapstructure:"ca_file" yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	CertFile string `mapstructure:"cert_file" yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// ServerName is the name the agent's certificate must be valid for;
	// default the host of consul.address (see Consul.TLSServerName).
	ServerName string `mapstructure:"server_name" yaml:"server_name,omitempty" json:"server_name,omitempty"`
}

// IsEnabled reports whether dbha speaks HTTPS to Consul.
func (t ConsulTLS) IsEnabled() bool { return t != ConsulTLS{} }

// Files returns the files for tlsconfig.Client.
func (t ConsulTLS) Files() tlsconfig.Files {
	return tlsconfig.Files{CA: t.CAFile, Cert: t.CertFile, Key: t.KeyFile}
}

// TLSServerName is the name Consul's certificate is checked against:
// consul.tls.server_name, else the host of consul.address.
func (c Consul) TLSServerName() string {
	if c.TLS.ServerName != "" {
		return c.TLS.ServerName
	}
	host, _, err := net.SplitHostPort(c.Address)
	if err != nil {
		return c.Address
	}
	return host
}

// HTTPTLS makes dbha's API and console HTTPS. CertFile and KeyFile turn it
// on; ClientCAFile adds mutual TLS: clients must present a certificate
// that chains to it.
type HTTPTLS struct {
	CertFile     string `mapstructure:"cert_file" yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile      string `mapstructure:"key_file" yaml:"key_file,omitempty" json:"key_file,omitempty"`
	ClientCAFile string `mapstructure:"client_ca_file" yaml:"client_ca_file,omitempty" json:"client_ca_file,omitempty"`
}

// IsEnabled reports whether the API is served over HTTPS.
func (t HTTPTLS) IsEnabled() bool { return t != HTTPTLS{} }

// Files returns the files for tlsconfig.Server.
func (t HTTPTLS) Files() tlsconfig.Files {
	return tlsconfig.Files{CA: t.ClientCAFile, Cert: t.CertFile, Key: t.KeyFile}
}

// validateClusterTLS: a known mode, a CA file where the mode verifies,
// files that exist, no file set beside mode disable (a configuration that
// looks encrypted must be), key files only their owner may read.
func validateClusterTLS(t ClusterTLS, key string, bad func(key, format string, args ...any)) {
	mode, err := tlsconfig.ParseMode(string(t.Mode))
	switch {
	case err != nil:
		bad(key+".mode", "%v", err)
	case mode.NeedsCA() && t.CAFile == "":
		bad(key+".ca_file", "must be set with mode %s: the servers' certificates are verified against it", mode)
	case mode == tlsconfig.Disable && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""):
		bad(key+".mode", "is disable (the default: clear text) while files are set: set require, verify-ca or verify-full, or remove the files")
	}
	validateFile(key+".ca_file", t.CAFile, bad)
	validateKeyPair(key, t.CertFile, t.KeyFile, bad)
}

func validateConsulTLS(t ConsulTLS, bad func(key, format string, args ...any)) {
	if !t.IsEnabled() {
		return
	}
	if t.CAFile == "" {
		bad("consul.tls.ca_file", "must be set: dbha verifies the agent's certificate against it")
	}
	validateFile("consul.tls.ca_file", t.CAFile, bad)
	validateKeyPair("consul.tls", t.CertFile, t.KeyFile, bad)
}

func validateHTTPTLS(h HTTP, bad func(key, format string, args ...any)) {
	t := h.TLS
	if !t.IsEnabled() {
		return
	}
	if h.Listen == "" {
		bad("http.tls", "is set without http.listen")
	}
	if t.CertFile == "" && t.KeyFile == "" {
		bad("http.tls", "set cert_file and key_file: the server's certificate and key")
	}
	validateKeyPair("http.tls", t.CertFile, t.KeyFile, bad)
	validateFile("http.tls.client_ca_file", t.ClientCAFile, bad)
}

// validateKeyPair checks a certificate and its key under key: both or
// neither, existing, the key its owner's only.
func validateKeyPair(key, cert, priv string, bad func(key, format string, args ...any)) {
	if (cert == "") != (priv == "") {
		bad(key, "set cert_file and key_file together")
	}
	validateFile(key+".cert_file", cert, bad)
	if validateFile(key+".key_file", priv, bad) {
		if err := tlsconfig.CheckKeyFile(priv); err != nil {
			bad(key+".key_file", "%v", err)
		}
	}
}

// validateFile reports a path that is set but names no file, and whether
// it names one. Validate checks only that the file is there: tlsconfig
// reads and parses it when a connection's config is built.
func validateFile(key, path string, bad func(key, format string, args ...any)) bool {
	if path == "" {
		return false
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		bad(key, "%s does not exist", path)
	case err != nil:
		bad(key, "%v", err)
	case st.IsDir():
		bad(key, "%s is a directory, not a file", path)
	default:
		return true
	}
	return false
}
