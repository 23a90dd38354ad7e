package backup

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
)

// With a key, a repository writes files encrypted and reads them back;
// it reads a file written in the clear (a backup from before encryption
// was turned on) as it is; without the key, or with another, an encrypted
// file is refused with ErrNoKey.
func TestRepositoryEncryption(t *testing.T) {
	root := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "k")
	if _, err := NewKey(keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sealed, plain := NewRepository(DirObjects(root), key), Dir(root)
	write := func(r Repository, id, body string) {
		w, err := r.create(t.Context(), "c", id, "f")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(r Repository, id string) (string, error) {
		rc, err := r.open(t.Context(), "c", id, "f")
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	write(sealed, "new", "secret rows")
	write(plain, "old", "old rows")
	raw, err := os.ReadFile(filepath.Join(EntryDir(root, "c", "new"), "f"))
	if err != nil || !bytes.HasPrefix(raw, ageHeader) || bytes.Contains(raw, []byte("secret rows")) {
		t.Fatalf("the file on disk is not encrypted: %q, %v", raw, err)
	}
	if got, err := read(sealed, "new"); err != nil || got != "secret rows" {
		t.Errorf("read back: %q, %v", got, err)
	}
	if got, err := read(sealed, "old"); err != nil || got != "old rows" {
		t.Errorf("a file written in the clear: %q, %v", got, err)
	}
	other, _ := age.GenerateX25519Identity()
	for name, r := range map[string]Repository{"no key": plain, "another key": NewRepository(DirObjects(root), other)} {
		if _, err := read(r, "new"); !errors.Is(err, ErrNoKey) {
			t.Errorf("%s: %v, want ErrNoKey", name, err)
		}
	}
	// A key file others may read is refused.
	os.Chmod(keyFile, 0o644)
	if _, err := ReadKey(keyFile); err == nil {
		t.Error("a key file readable by others was accepted")
	}
}

// An aborted write leaves nothing, and a claimed place cannot be claimed
// again.
func TestDirObjects(t *testing.T) {
	o := DirObjects(t.TempDir())
	w, err := o.Create(t.Context(), "c/b1/f")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "half")
	w.Abort()
	if keys, err := o.List(t.Context(), "c/"); err != nil || len(keys) != 1 || keys[0] != "c/b1/" {
		t.Fatalf("after an aborted write: %v, %v (want only the empty place)", keys, err)
	}
	if err := o.Claim(t.Context(), "c/b2/"); err != nil {
		t.Fatal(err)
	}
	if err := o.Claim(t.Context(), "c/b2/"); !errors.Is(err, ErrIDTaken) {
		t.Fatalf("second claim: %v", err)
	}
	if keys, err := o.List(t.Context(), "c/b2/"); err != nil || len(keys) != 1 || keys[0] != "c/b2/.claim" {
		t.Fatalf("a claimed place: %v, %v (want its marker alone)", keys, err)
	}
	// The catalog passes over a place that is only claimed, and reports
	// the empty one.
	entries, err := NewRepository(o, nil).entries(t.Context(), "c")
	if len(entries) != 0 || err == nil || !strings.Contains(err.Error(), "b1") || strings.Contains(err.Error(), "b2") {
		t.Fatalf("catalog: %v, %v (want b1 reported, b2 passed over)", entries, err)
	}
	if err := o.Remove(t.Context(), "c/b2/"); err != nil {
		t.Fatal(err)
	}
	if keys, err := o.List(t.Context(), "c/"); err != nil || len(keys) != 1 {
		t.Fatalf("after removing a place: %v, %v", keys, err)
	}
	// A file's directories inside its place go with their last file; the
	// place itself stays while it holds anything.
	for _, k := range []string{"c/b3/data/a/f1", "c/b3/data/f2", "c/b3/backup.json"} {
		w, err := o.Create(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"c/b3/data/a/f1", "c/b3/data/f2"} {
		if err := o.Remove(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if keys, err := o.List(t.Context(), "c/b3/"); err != nil || !slices.Equal(keys, []string{"c/b3/backup.json"}) {
		t.Fatalf("after removing a place's files: %v, %v (want its entry alone)", keys, err)
	}
	if _, err := os.Stat(filepath.Join(o.(dirObjects).root, "c/b3/data")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("data/ is left: %v", err)
	}
}
