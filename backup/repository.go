package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"filippo.io/age"
)

// Objects is where a repository keeps its files: named by slash-separated
// keys ("<cluster>/<id>/<file>"), written whole or not at all.
type Objects interface {
	// Create starts writing key; nothing is visible under key until the
	// writer's Close succeeds, and Abort leaves nothing.
	Create(ctx context.Context, key string) (ObjectWriter, error)
	// Open reads key; a missing key is an fs.ErrNotExist.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// List gives every key under prefix (which ends in "/"), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Exists reports whether key is there.
	Exists(ctx context.Context, key string) (bool, error)
	// Remove deletes every key under prefix.
	Remove(ctx context.Context, prefix string) error
	// Claim makes prefix (a backup's place) this run's, or fails with
	// ErrIDTaken when something is there already.
	Claim(ctx context.Context, prefix string) error
	String() string
}

// ObjectWriter is one object being written.
type ObjectWriter interface {
	io.Writer
	// Close makes the object visible, whole.
	Close() error
	// Abort drops what was written.
	Abort()
}

// Repository holds a cluster's backups: each backup's files and its
// catalog entry under <cluster>/<id>/, in a local directory or an
// S3-compatible bucket. With a key, every backup file is encrypted with
// age before it leaves dbha (the catalog entries, which hold positions and
// checksums but no data, are not); a file is decrypted when read if it is
// encrypted, whatever the repository's key, so one repository can hold
// backups taken before and after encryption was turned on.
type Repository struct {
	objects Objects
	key     *age.X25519Identity
}

// NewRepository is a repository on objects; key, when not nil, encrypts
// what is written and decrypts what is read.
func NewRepository(objects Objects, key *age.X25519Identity) Repository {
	return Repository{objects: objects, key: key}
}

// Dir is an unencrypted repository in a local directory.
func Dir(dir string) Repository { return Repository{objects: dirObjects{dir}} }

// DirObjects keeps objects as files under root.
func DirObjects(root string) Objects { return dirObjects{root} }

// ReadKey reads an age X25519 identity (the one line age-keygen or `dbha
// backup new-key` writes, comments allowed) from a file only its owner may
// read.
func ReadKey(file string) (*age.X25519Identity, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("backup key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("backup key %s can be read by others (mode %v): chmod 600 it", file, st.Mode().Perm())
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("backup key: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("backup key %s: %w", file, err)
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("backup key %s holds %d identities; want one", file, len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("backup key %s is not an X25519 identity (AGE-SECRET-KEY-1...)", file)
	}
	return id, nil
}

// NewKey writes a new age X25519 identity into file (mode 0600), which
// must not exist, and returns its public recipient.
func NewKey(file string) (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("backup key: %w", err)
	}
	_, err = fmt.Fprintf(f, "# dbha backup key: keep a copy apart from the backups; without it they cannot be read\n# public key: %s\n%s\n", id.Recipient(), id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return "", fmt.Errorf("backup key: %w", err)
	}
	return id.Recipient().String(), nil
}

func (r Repository) String() string {
	if r.objects == nil {
		return "no repository"
	}
	if r.key != nil {
		return r.objects.String() + " (encrypted with age)"
	}
	return r.objects.String()
}

// Encrypted reports whether the repository encrypts what it writes.
func (r Repository) Encrypted() bool { return r.key != nil }

// localDir is where a backup's files are on this host when the repository
// is an unencrypted local directory, so that a tool may write them in
// place.
func (r Repository) localDir(cluster, id string) (string, bool) {
	d, ok := r.objects.(dirObjects)
	if !ok || r.key != nil {
		return "", false
	}
	return EntryDir(d.root, cluster, id), true
}

func entryKey(cluster, id string) string      { return cluster + "/" + id + "/" }
func fileKey(cluster, id, name string) string { return entryKey(cluster, id) + name }

// create writes one file of a backup, encrypted when the repository has a
// key.
func (r Repository) create(ctx context.Context, cluster, id, name string) (ObjectWriter, error) {
	return r.createKey(ctx, fileKey(cluster, id, name))
}

// createKey writes the object key, encrypted when the repository has a
// key.
func (r Repository) createKey(ctx context.Context, key string) (ObjectWriter, error) {
	w, err := r.objects.Create(ctx, key)
	if err != nil || r.key == nil {
		return w, err
	}
	enc, err := age.Encrypt(w, r.key.Recipient())
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("encrypt %s: %w", key, err)
	}
	return sealedWriter{enc: enc, w: w}, nil
}

type sealedWriter struct {
	enc io.WriteCloser
	w   ObjectWriter
}

func (s sealedWriter) Write(p []byte) (int, error) { return s.enc.Write(p) }

func (s sealedWriter) Close() error {
	if err := s.enc.Close(); err != nil {
		s.w.Abort()
		return err
	}
	return s.w.Close()
}

func (s sealedWriter) Abort() { s.w.Abort() }

// ageHeader starts every age file.
var ageHeader = []byte("age-encryption.org/v1\n")

// ErrNoKey: a backup file is encrypted and the repository has no key, or
// not the key it was encrypted for.
var ErrNoKey = errors.New("the backup is encrypted for a key this repository does not have")

// open reads one file of a backup, decrypted when it is encrypted.
func (r Repository) open(ctx context.Context, cluster, id, name string) (io.ReadCloser, error) {
	return r.openKey(ctx, fileKey(cluster, id, name))
}

// openKey reads the object key, decrypted when it is encrypted.
func (r Repository) openKey(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := r.objects.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(ageHeader))
	if !bytes.Equal(head, ageHeader) {
		return readCloser{br, rc}, nil
	}
	if r.key == nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w: set backup.encryption_key_file", name, ErrNoKey)
	}
	plain, err := age.Decrypt(br, r.key)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w: %v", name, ErrNoKey, err)
	}
	return readCloser{plain, rc}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// saveEntry writes a backup's catalog entry, replacing the one there.
func (r Repository) saveEntry(ctx context.Context, e Entry) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	w, err := r.objects.Create(ctx, fileKey(e.Cluster, e.ID, entryFile))
	if err != nil {
		return fmt.Errorf("catalog %s: %w", e.ID, err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		w.Abort()
		return fmt.Errorf("catalog %s: %w", e.ID, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("catalog %s: %w", e.ID, err)
	}
	return nil
}

// entries reads a cluster's catalog. A backup's place without a readable
// entry is reported, not skipped silently: its files are no backup dbha
// knows.
func (r Repository) entries(ctx context.Context, cluster string) ([]Entry, error) {
	keys, err := r.objects.List(ctx, cluster+"/")
	if err != nil {
		return nil, fmt.Errorf("read the catalog of %s in %s: %w", cluster, r, err)
	}
	var ids []string
	names := map[string][]string{} // what is listed under each backup's place
	for _, k := range keys {
		id, name, ok := strings.Cut(strings.TrimPrefix(k, cluster+"/"), "/")
		if !ok || strings.HasPrefix(id, ".") {
			continue // not a backup's place: one being claimed or removed
		}
		if len(ids) == 0 || ids[len(ids)-1] != id {
			ids = append(ids, id)
		}
		names[id] = append(names[id], name)
	}
	var out []Entry
	var errs []error
	for _, id := range ids {
		e, err := r.readEntry(ctx, cluster, id)
		if errors.Is(err, fs.ErrNotExist) && inPassing(names[id]) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("backup %s: %w", id, err))
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.Started.Compare(b.Started) })
	return out, errors.Join(errs...)
}

// inPassing: a backup's place whose entry went missing was listed with
// it (a prune deleted it since), or with nothing but its claim (a run
// that has not written its entry yet). Files without an entry are not.
func inPassing(names []string) bool {
	return slices.Contains(names, entryFile) || !slices.ContainsFunc(names, func(n string) bool { return n != claimName })
}

func (r Repository) readEntry(ctx context.Context, cluster, id string) (Entry, error) {
	rc, err := r.objects.Open(ctx, fileKey(cluster, id, entryFile))
	if err != nil {
		return Entry{}, err
	}
	defer rc.Close()
	var e Entry
	if err := json.NewDecoder(rc).Decode(&e); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// dirObjects keeps objects as files under root.
type dirObjects struct{ root string }

func (d dirObjects) String() string { return d.root }

func (d dirObjects) path(key string) string { return d.root + "/" + key }

func (d dirObjects) Create(_ context.Context, key string) (ObjectWriter, error) {
	p := d.path(key)
	if err := os.MkdirAll(path.Dir(p), 0o750); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(path.Dir(p), "."+path.Base(p)+".partial-*")
	if err != nil {
		return nil, err
	}
	return &dirWriter{f: f, to: p}, nil
}

// dirWriter writes a temporary file beside the object and renames it into
// place once synced.
type dirWriter struct {
	f  *os.File
	to string
}

func (w *dirWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *dirWriter) Close() error {
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(w.f.Name(), 0o640)
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.to)
	}
	if err != nil {
		os.Remove(w.f.Name())
	}
	return err
}

func (w *dirWriter) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

func (d dirObjects) Open(_ context.Context, key string) (io.ReadCloser, error) {
	return os.Open(d.path(key))
}

func (d dirObjects) Exists(_ context.Context, key string) (bool, error) {
	_, err := os.Stat(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (d dirObjects) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	err := fs.WalkDir(os.DirFS(d.root), strings.TrimSuffix(prefix, "/"), func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == strings.TrimSuffix(prefix, "/") {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if !de.IsDir() {
			out = append(out, p) // partial files (".name.partial-*") too: a dead run's are removed by name
		} else if p != strings.TrimSuffix(prefix, "/") && strings.Count(strings.TrimPrefix(p, prefix), "/") == 0 {
			// An empty directory (never a claimed place: a claim has its
			// marker) is listed, so that a stray one is seen.
			if in, err := os.ReadDir(d.path(p)); err == nil && len(in) == 0 {
				out = append(out, p+"/")
			}
		}
		return nil
	})
	slices.Sort(out)
	return slices.Compact(out), err
}

// Remove renames what it removes out of sight first (a hidden name beside
// it), so that a catalog read meanwhile never finds half a backup.
// The directories a file had inside its backup's place (pg_basebackup's
// data/) go with their last file.
func (d dirObjects) Remove(_ context.Context, prefix string) error {
	key := strings.TrimSuffix(prefix, "/")
	p := d.path(key)
	gone := path.Join(path.Dir(p), fmt.Sprintf(".removing-%s-%x", path.Base(p), rand.Uint64()))
	if err := os.Rename(p, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	for dir := path.Dir(key); strings.Count(dir, "/") >= 2; dir = path.Dir(dir) { // below cluster/id/
		if os.Remove(d.path(dir)) != nil {
			break // not empty
		}
	}
	return nil
}

// Claim makes the place with its claim marker in it at once (a hidden
// directory renamed into place): an empty directory is never a claimed
// place, so a catalog read tells a stray one from a run's.
func (d dirObjects) Claim(_ context.Context, prefix string) error {
	dir := d.path(strings.TrimSuffix(prefix, "/"))
	if err := os.MkdirAll(path.Dir(dir), 0o750); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(path.Dir(dir), "."+path.Base(dir)+".claiming-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone by rename unless the place was taken
	if err := os.Chmod(tmp, 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(path.Join(tmp, claimName), nil, 0o640); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return ErrIDTaken
	}
	err = os.Rename(tmp, dir)
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return ErrIDTaken
	}
	return err
}
