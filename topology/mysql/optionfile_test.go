package mysql

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dbha/dbha/tlsconfig"
)

// A password in the option file the MariaDB tools read cannot end its
// value and start another option, and the file is its owner's alone.
func TestClientOptionFileEscapes(t *testing.T) {
	path, cleanup, err := ClientOptionFile("admin", "x\"\nhost=evil\\", "198.18.0.12", "3306", ToolTLS{})
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

// The tools verify the server whenever TLS is on: without it the client
// of MariaDB 10.x falls back to clear text.
func TestToolTLS(t *testing.T) {
	opts := string(ClientOptions("u", "p", "h", "1", ToolTLS{CA: "/ca.crt", Cert: "/c.crt", Key: "/c.key"}))
	for _, want := range []string{"\nssl-ca=\"/ca.crt\"\nssl-verify-server-cert\n", "ssl-cert=\"/c.crt\"\nssl-key=\"/c.key\"\n"} {
		if !strings.Contains(opts, want) {
			t.Errorf("options %q lack %q", opts, want)
		}
	}
	if opts := string(ClientOptions("u", "p", "h", "1", ToolTLS{})); strings.Contains(opts, "ssl") {
		t.Errorf("clear text options mention TLS: %q", opts)
	}
	if _, err := toolTLS(tlsconfig.NewSettings(tlsconfig.Require, tlsconfig.Files{})); !errors.Is(err, ErrToolTLS) {
		t.Errorf("require without a CA: %v, want ErrToolTLS", err)
	}
	got, err := ServerHostToolTLS(&tlsconfig.Settings{Mode: tlsconfig.VerifyFull, Files: tlsconfig.Files{CA: "/here", Cert: "/c", Key: "/k"}, ReplicaCA: "/there"})
	if err != nil || got != (ToolTLS{CA: "/there"}) {
		t.Errorf("on a server's host: %+v, %v; want its CA path and no client certificate", got, err)
	}
	if got, err := toolTLS(nil); err != nil || got != (ToolTLS{}) {
		t.Errorf("disabled: %+v, %v", got, err)
	}
}
