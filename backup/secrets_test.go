package backup

import (
	"os"
	"testing"
)

// The password file pg_basebackup reads names one host, port and user,
// escapes what libpq would split on, is readable by its owner only, and
// refuses what the format cannot hold.
func TestPassFile(t *testing.T) {
	path, cleanup, err := passFile("198.18.0.22", "5432", "dbha", `pa:ss\word`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `198.18.0.22:5432:*:dbha:pa\:ss\\word`+"\n"; got != want {
		t.Errorf("password file %q, want %q", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	cleanup()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the password file outlived its cleanup: %v", err)
	}
	if _, _, err := passFile("h", "5432", "dbha", "pass\nword"); err == nil {
		t.Error("a password with a line break was written")
	}
}
