package topology

import (
	"strings"
	"testing"
)

func TestAcknowledgementLossless(t *testing.T) {
	safe := Acknowledgement{SemiSync: true, WaitNoReplica: true, TimeoutMS: 1<<64 - 1, WaitPoint: "AFTER_SYNC"}
	with := func(f func(a *Acknowledgement)) *Acknowledgement { a := safe; f(&a); return &a }
	for _, tc := range []struct {
		name   string
		engine Engine
		ack    *Acknowledgement
		ok     bool
		why    string
	}{
		{"unknown", MariaDB, nil, false, "not read"},
		{"mariadb no fallback", MariaDB, &safe, true, "semi-sync without fallback"},
		{"mariadb 32-bit maximum", MariaDB, with(func(a *Acknowledgement) { a.TimeoutMS = NoFallbackTimeoutMS }), true, ""},
		{"mariadb semi-sync off", MariaDB, with(func(a *Acknowledgement) { a.SemiSync = false }), false, "rpl_semi_sync_master_enabled=OFF"},
		{"mariadb no wait without replicas", MariaDB, with(func(a *Acknowledgement) { a.WaitNoReplica = false }), false, "wait_no_slave=OFF"},
		{"mariadb default timeout", MariaDB, with(func(a *Acknowledgement) { a.TimeoutMS = 10000 }), false, "rpl_semi_sync_master_timeout=10000 ms"},
		{"mariadb after commit", MariaDB, with(func(a *Acknowledgement) { a.WaitPoint = "AFTER_COMMIT" }), false, "use AFTER_SYNC"},
		{"postgres any 1", Postgres, &Acknowledgement{StandbyNames: `ANY 1 ("dbha", "postgres_2")`, SynchronousCommit: "on"}, true, "ANY 1"},
		{"postgres no standby names", Postgres, &Acknowledgement{SynchronousCommit: "on"}, false, "synchronous_standby_names is empty"},
		{"postgres local commit", Postgres, &Acknowledgement{StandbyNames: "dbha", SynchronousCommit: "local"}, false, "synchronous_commit=local"},
		{"mysql not judged", MySQL, &safe, false, "does not judge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := tc.ack.Lossless(tc.engine)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Errorf("Lossless = %v, %q; want %v and %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}
