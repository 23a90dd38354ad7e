package tlsconfig

import (
	"strings"
	"testing"
)

func TestSettingsFor(t *testing.T) {
	var off *Settings
	if c, err := off.For("db1:3306"); c != nil || err != nil || off.Enabled() {
		t.Errorf("nil settings: %v, %v; want clear text", c, err)
	}
	if c, err := NewSettings(Disable, Files{}).For("db1:3306"); c != nil || err != nil {
		t.Errorf("disable: %v, %v; want clear text", c, err)
	}
	p := newPKI(t)
	srv := p.server(t, p.ca, "db1", "db1.lab", "127.0.0.1")
	s := NewSettings(VerifyFull, Files{CA: p.caFile})
	// verify-full checks the host of the address, without its port; the
	// configs are kept per host.
	good, err := s.For("127.0.0.1:3306")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.For("127.0.0.1:3307"); again != good {
		t.Error("a second port of the same host got a config of its own")
	}
	if r := handshake(t, mustServer(t, srv), good); r.clientErr != nil {
		t.Errorf("verify-full to 127.0.0.1: %v", r.clientErr)
	}
	wrong, err := s.For("db2.lab:3306")
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, mustServer(t, srv), wrong); r.clientErr == nil || !strings.Contains(r.clientErr.Error(), `not valid for the name "db2.lab"`) {
		t.Errorf("verify-full to db2.lab with db1's certificate: %v", r.clientErr)
	}
	if _, err := NewSettings(VerifyCA, Files{}).For("db1:1"); err == nil || !strings.Contains(err.Error(), "TLS to db1:1") {
		t.Errorf("verify-ca without a CA: %v; want an error naming the instance", err)
	}
	if got := (&Settings{Mode: Require, Files: Files{CA: "/a"}, ReplicaCA: "/b"}).ReplicaCAFile(); got != "/b" {
		t.Errorf("replica CA %q, want /b", got)
	}
	if got := NewSettings(Require, Files{CA: "/a"}).ReplicaCAFile(); got != "/a" {
		t.Errorf("replica CA %q, want the CA file /a", got)
	}
}
