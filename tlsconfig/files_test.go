package tlsconfig

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckKeyFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true},
		{0o640, false}, {0o604, false}, {0o644, false}, {0o660, false},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			f := filepath.Join(dir, tc.mode.String())
			if err := os.WriteFile(f, []byte("key"), 0o600); err != nil {
				t.Fatal(err)
			}
			chmod(t, f, tc.mode)
			err := CheckKeyFile(f)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrKeyReadable)) {
				t.Fatalf("CheckKeyFile(%v) = %v", tc.mode, err)
			}
		})
	}
	if err := CheckKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestSourceReloadsOnChange: a source reads its file again only when it
// changed, fails while the file is gone and recovers when it returns.
func TestSourceReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	f := file{"ca_file", filepath.Join(dir, "ca.crt")}
	write := func(s string) {
		t.Helper()
		tmp := f.path + ".new"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	loads := 0
	src, err := newSource(func() (string, error) {
		loads++
		b, err := os.ReadFile(f.path)
		return string(b), err
	}, f)
	if err != nil {
		t.Fatal(err)
	}
	get := func(want string, wantLoads int) {
		t.Helper()
		got, err := src.get()
		if err != nil || got != want || loads != wantLoads {
			t.Fatalf("get = %q, %v after %d loads; want %q after %d", got, err, loads, want, wantLoads)
		}
	}
	get("one", 1)
	get("one", 1)
	write("one") // the same bytes in a new file: read again
	get("one", 2)
	write("two")
	get("two", 3)
	chmod(t, f.path, 0o644)
	get("two", 4)
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	if _, err := src.get(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("with the file gone: %v", err)
	}
	write("three")
	get("three", 5)
}
