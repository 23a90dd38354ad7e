package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// TestMySQLControllerRefuses: a MySQL controller sends no MariaDB SQL; every
// change says it is not implemented. A MariaDB controller does try (and
// here fails to connect).
func TestMySQLControllerRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	const addr, source = "127.0.0.1:1", "127.0.0.1:2" // nothing listens on port 1
	var pos topology.Position
	ops := []struct {
		name string
		do   func(c *Controller) error
	}{
		{"StopFollowing", func(c *Controller) error { return c.StopFollowing(ctx, addr) }},
		{"WaitApplied", func(c *Controller) error { return c.WaitApplied(ctx, addr, pos) }},
		{"CatchUpFrom", func(c *Controller) error { return c.CatchUpFrom(ctx, addr, source, pos) }},
		{"ApplyBinlog", func(c *Controller) error { return c.ApplyBinlog(ctx, addr, nil, pos, pos) }},
		{"Promote", func(c *Controller) error { return c.Promote(ctx, addr) }},
		{"Repoint", func(c *Controller) error { return c.Repoint(ctx, addr, source) }},
		{"Attach", func(c *Controller) error { return c.Attach(ctx, addr, source, pos) }},
		{"Fence", func(c *Controller) error { return c.Fence(ctx, addr) }},
		{"Unfence", func(c *Controller) error { return c.Unfence(ctx, addr) }},
		{"Position", func(c *Controller) error { _, err := c.Position(ctx, addr); return err }},
	}
	my := NewController(topology.MySQL, "dbha", "secret", "repl", "secret")
	defer my.Close()
	maria := NewController(topology.MariaDB, "dbha", "secret", "repl", "secret")
	defer maria.Close()
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if err := op.do(my); !errors.Is(err, ErrUnsupported) {
				t.Errorf("MySQL: %v, want ErrUnsupported", err)
			}
			if err := op.do(maria); err == nil || errors.Is(err, ErrUnsupported) {
				t.Errorf("MariaDB: %v, want a connection error", err)
			}
		})
	}
}

// TestChangeMasterHeartbeat: every CHANGE MASTER carries the controller's
// heartbeat period, in seconds with MariaDB's millisecond resolution; none
// set leaves the server's default.
func TestChangeMasterHeartbeat(t *testing.T) {
	c := NewController(topology.MariaDB, "dbha", "secret", "repl", "it's")
	defer c.Close()
	m := c.flavor.(mariadbControl)
	for _, tc := range []struct {
		heartbeat time.Duration
		want      string
	}{
		{0, "MASTER_CONNECT_RETRY=1"},
		{250 * time.Millisecond, "MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=0.250"},
		{1500 * time.Millisecond, "MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1.500"},
	} {
		c.SetHeartbeat(tc.heartbeat)
		stmt, err := m.changeMaster("10.0.0.1:3306")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(stmt, tc.want) || !strings.Contains(stmt, `MASTER_PASSWORD='it\'s'`) {
			t.Errorf("heartbeat %v: %s; want it to end with %q", tc.heartbeat, stmt, tc.want)
		}
	}
}

// TestChangeMasterTLS: a replica's link is encrypted as dbha's own
// connections are, verified against the CA path on the servers' hosts.
func TestChangeMasterTLS(t *testing.T) {
	for _, tc := range []struct {
		tls  *tlsconfig.Settings
		want string
	}{
		{nil, "MASTER_CONNECT_RETRY=1"},
		{tlsconfig.NewSettings(tlsconfig.Disable, tlsconfig.Files{CA: "/x"}), "MASTER_CONNECT_RETRY=1"},
		{tlsconfig.NewSettings(tlsconfig.Require, tlsconfig.Files{}), ", MASTER_SSL=1, MASTER_SSL_CA='', MASTER_SSL_VERIFY_SERVER_CERT=0"},
		{tlsconfig.NewSettings(tlsconfig.VerifyCA, tlsconfig.Files{CA: "/etc/dbha/ca.crt"}), ", MASTER_SSL=1, MASTER_SSL_CA='/etc/dbha/ca.crt', MASTER_SSL_VERIFY_SERVER_CERT=0"},
		{&tlsconfig.Settings{Mode: tlsconfig.VerifyFull, Files: tlsconfig.Files{CA: "/etc/dbha/ca.crt"}, ReplicaCA: "/etc/mysql/ca's.pem"},
			`, MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca\'s.pem', MASTER_SSL_VERIFY_SERVER_CERT=1`},
	} {
		c := NewController(topology.MariaDB, "dbha", "secret", "repl", "pw")
		c.SetTLS(tc.tls)
		stmt, err := c.flavor.(mariadbControl).changeMaster("10.0.0.1:3306")
		c.Close()
		if err != nil || !strings.HasSuffix(stmt, tc.want) {
			t.Errorf("tls %+v: %s (%v); want it to end with %q", tc.tls, stmt, err, tc.want)
		}
	}
}
