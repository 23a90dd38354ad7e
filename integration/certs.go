package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
)

// Certs is a lab's private CA and the certificates it issued, as PEM files
// in one directory (0700; every file 0600): ca.crt, and <name>.crt with
// <name>.key for each certificate. The lab's servers and dbha read them;
// the tests of verification issue the bad ones (another name, another CA:
// a second Certs, expired) here too.
type Certs struct {
	Dir string
	ca  *labca.CA
}

// NewCerts makes a CA named name and writes its certificate to dir/ca.crt,
// creating dir.
func NewCerts(dir, name string) (*Certs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab certificates: %w", err)
	}
	ca, err := labca.New(name)
	if err != nil {
		return nil, err
	}
	c := &Certs{Dir: dir, ca: ca}
	if err := ca.Write(c.CAFile()); err != nil {
		return nil, err
	}
	return c, nil
}

// CAFile is the CA's certificate, what a ca_file names.
func (c *Certs) CAFile() string { return filepath.Join(c.Dir, "ca.crt") }

// Server issues a server certificate valid for hosts (DNS names and IP
// addresses) as name.crt and name.key.
func (c *Certs) Server(name string, hosts ...string) (tlsconfig.Files, error) {
	return c.Issue(name, labca.Leaf{Name: name, Hosts: hosts})
}

// Client issues a client certificate for the user name (its common name,
// which servers that map certificates to accounts read).
func (c *Certs) Client(name string) (tlsconfig.Files, error) {
	return c.Issue(name, labca.Leaf{Name: name, Client: true})
}

// Expired issues a server certificate for hosts that expired a day ago.
func (c *Certs) Expired(name string, hosts ...string) (tlsconfig.Files, error) {
	now := time.Now()
	return c.Issue(name, labca.Leaf{Name: name, Hosts: hosts, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
}

// Issue writes the certificate l describes as name.crt and name.key
// (replacing them if they exist: a rotation) and returns the files with
// the CA's.
func (c *Certs) Issue(name string, l labca.Leaf) (tlsconfig.Files, error) {
	p, err := c.ca.Issue(l)
	if err != nil {
		return tlsconfig.Files{}, err
	}
	f := tlsconfig.Files{CA: c.CAFile(), Cert: filepath.Join(c.Dir, name+".crt"), Key: filepath.Join(c.Dir, name+".key")}
	if err := p.Write(f.Cert, f.Key); err != nil {
		return tlsconfig.Files{}, err
	}
	return f, nil
}
