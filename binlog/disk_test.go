package binlog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDirBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, make([]byte, n), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 100)
	write("wal/b", 30)
	write("wal/deeper/c", 7)
	if err := os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  string
		want int64
	}{
		{"regular files at every depth, symlinks not followed", dir, 137},
		{"a subdirectory", filepath.Join(dir, "wal"), 37},
		{"an absent directory", filepath.Join(dir, "none"), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if n, err := DirBytes(tc.dir); err != nil || n != tc.want {
				t.Errorf("DirBytes = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}
