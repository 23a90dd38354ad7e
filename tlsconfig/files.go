package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of one side of a connection. CA is the CA the
// peer's certificate must chain to: the server's for a client, the
// clients' (mutual TLS) for a server. Cert and Key are our own certificate
// (with any intermediates after it) and its private key; they go together.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// Errors callers may branch on.
var (
	// ErrKeyReadable: a private key file can be read by group or others.
	ErrKeyReadable = errors.New("private key file is readable by group or others")
	// ErrCertValidity: our own certificate has expired or is not valid yet.
	ErrCertValidity = errors.New("certificate is outside its validity period")
)

// file is a path with the setting that names it, so that errors say both
// (settings are named as in dbha's configuration: ca_file, cert_file...).
type file struct {
	setting string
	path    string
}

func (f file) String() string { return f.setting + " " + f.path }

// CheckKeyFile refuses a private key file that group or others may read,
// as ssh and PostgreSQL do: chmod 600 it. It does not read the file.
func CheckKeyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s: %w (mode %v): chmod 600 it", path, ErrKeyReadable, perm)
	}
	return nil
}

// source is what a set of files held when last read: the parsed value, or
// the error reading or parsing them gave. get stats the files on every
// call and reads them again when one changed, so that a rotation shows at
// the next handshake; otherwise a call costs a stat per file. It is safe
// for concurrent use.
type source[T any] struct {
	files []file
	load  func() (T, error)

	mu     sync.Mutex
	stamps []os.FileInfo // as stat'ed before the last load; nil: load again
	value  T
	err    error
}

// newSource loads the files once, and returns the error that gave.
func newSource[T any](load func() (T, error), files ...file) (*source[T], error) {
	s := &source[T]{files: files, load: load}
	_, err := s.get()
	return s, err
}

// get returns what the files hold now. An error is returned until the
// files change again: the last good value is never served in its place.
func (s *source[T]) get() (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamps := make([]os.FileInfo, len(s.files))
	for i, f := range s.files {
		st, err := os.Stat(f.path)
		if err != nil {
			var zero T
			s.stamps = nil
			return zero, fmt.Errorf("%s: %w", f.setting, err)
		}
		stamps[i] = st
	}
	if !sameStamps(s.stamps, stamps) {
		// Stamps taken before the read: a file that changes while it is
		// read is read again next time.
		s.value, s.err = s.load()
		s.stamps = stamps
	}
	return s.value, s.err
}

// sameStamps reports whether no file changed: same inode (a rename over
// it makes another), size, mode (a chmod matters to a key) and
// modification time.
func sameStamps(old, cur []os.FileInfo) bool {
	if len(old) != len(cur) {
		return false
	}
	for i := range old {
		a, b := old[i], cur[i]
		if !os.SameFile(a, b) || a.Size() != b.Size() || a.Mode() != b.Mode() || !a.ModTime().Equal(b.ModTime()) {
			return false
		}
	}
	return true
}

// loadPool reads a CA file: one or more PEM certificates.
func loadPool(f file) (*x509.CertPool, error) {
	pem, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.setting, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: holds no PEM certificate", f)
	}
	return pool, nil
}

// loadPair reads our certificate and its key, refusing a key others may
// read.
func loadPair(cert, key file) (*tls.Certificate, error) {
	if err := CheckKeyFile(key.path); err != nil {
		return nil, fmt.Errorf("%s: %w", key.setting, err)
	}
	pair, err := tls.LoadX509KeyPair(cert.path, key.path)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", cert, key, err)
	}
	if pair.Leaf == nil { // set by LoadX509KeyPair unless GODEBUG x509keypairleaf=0
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", cert, err)
		}
	}
	return &pair, nil
}

// keyPair is our certificate and key, re-read when they change.
type keyPair struct {
	cert file
	src  *source[*tls.Certificate]
}

func newKeyPair(certPath, keyPath string) (*keyPair, error) {
	cert, key := file{"cert_file", certPath}, file{"key_file", keyPath}
	src, err := newSource(func() (*tls.Certificate, error) { return loadPair(cert, key) }, cert, key)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{cert: cert, src: src}
	_, err = kp.current(time.Now())
	return kp, err
}

// current returns the pair the files hold, if its certificate is valid at
// now: a peer would refuse it anyway, with a vaguer error.
func (kp *keyPair) current(now time.Time) (*tls.Certificate, error) {
	pair, err := kp.src.get()
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("%s: %w: it expired at %s (NotAfter)", kp.cert, ErrCertValidity, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("%s: %w: it is not valid before %s (NotBefore)", kp.cert, ErrCertValidity, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return pair, nil
}
