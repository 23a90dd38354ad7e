package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/dbha/dbha/tlsconfig"
)

func TestPromoteWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		left time.Duration // 0: no deadline
		want int
	}{
		{"no deadline: pg_promote's default", 0, 60},
		{"a step's 30 s", 30*time.Second + 500*time.Millisecond, 30},
		{"more than pg_promote's default", 5 * time.Minute, 60},
		{"under a second: at least one", 300 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.left > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.left)
				defer cancel()
			}
			if got := promoteWait(ctx); got != tc.want {
				t.Errorf("promoteWait = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestConninfoSSL: a standby's link is encrypted as dbha's own
// connections are, in the cluster's mode, against the CA path on the
// servers' hosts.
func TestConninfoSSL(t *testing.T) {
	for _, tc := range []struct {
		tls  *tlsconfig.Settings
		want string
	}{
		{nil, ""},
		{tlsconfig.NewSettings(tlsconfig.Disable, tlsconfig.Files{CA: "/x"}), ""},
		{tlsconfig.NewSettings(tlsconfig.Require, tlsconfig.Files{}), " sslmode=require"},
		{tlsconfig.NewSettings(tlsconfig.VerifyFull, tlsconfig.Files{CA: "/etc/dbha/ca.crt"}), " sslmode=verify-full sslrootcert='/etc/dbha/ca.crt'"},
		{&tlsconfig.Settings{Mode: tlsconfig.VerifyCA, Files: tlsconfig.Files{CA: "/etc/dbha/ca.crt"}, ReplicaCA: "/etc/pg/my ca.crt"},
			" sslmode=verify-ca sslrootcert='/etc/pg/my ca.crt'"},
	} {
		if got := conninfoSSL(tc.tls); got != tc.want {
			t.Errorf("tls %+v: %q, want %q", tc.tls, got, tc.want)
		}
	}
}
