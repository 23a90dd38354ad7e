package mysql

import (
	"os"
	"strings"
	"testing"
)

// A password in the option file the MariaDB tools read cannot end its
// value and start another option, and the file is its owner's alone.
func TestClientOptionFileEscapes(t *testing.T) {
	path, cleanup, err := ClientOptionFile("admin", "x\"\nhost=evil\\", "198.18.0.12", "3306")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 || lines[2] != `password="x\"\nhost=evil\\"` {
		t.Fatalf("option file:\n%s", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("option file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
