package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/topology"
)

// TestTLSLab: the main paths on a lab where every remote account takes TLS
// only (MariaDB REQUIRE SSL, PostgreSQL hostssl) and dbha.yaml asks for
// verify-full: discovery, a failover by the drill (kill -9; the writers
// reach the writer through Consul DNS over TLS; dbha run's stream, probes
// and recovery all over TLS), the replicas' links dbha wrote after it
// encrypted and verified, a switchover, a backup and its verify.
func TestTLSLab(t *testing.T) {
	bin := dbhaBinary(t)
	l := binLab(t, bin, func(o *Options) { o.TLS = true })
	for _, e := range labEngines {
		t.Run(e.cluster, func(t *testing.T) {
			s := waitHealthy(t, l, e.cluster, 30*time.Second, "healthy over TLS", healthy)

			r := runDrill(t, bin, l, e.cluster)
			var sum drill.Summary
			if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || (r.code != 0 && r.code != 1) {
				t.Fatalf("drill: %v\n%s", err, r)
			}
			for _, run := range sum.Runs {
				// The lab is asynchronous: acknowledged rows dbha's stream had
				// not received may be lost (TestLossless covers the mode that
				// loses none).
				t.Logf("run %d: %s -> %s, RTO %.3fs, %d of %d acknowledged rows lost", run.N, run.OldPrimary, run.NewPrimary, run.RTOSeconds, run.LostRows, run.AckedRows)
				if run.Error != "" || run.NewPrimary == "" || run.NewPrimary == run.OldPrimary {
					t.Errorf("run %d: %s -> %s: %s", run.N, run.OldPrimary, run.NewPrimary, run.Error)
				}
			}
			s = waitHealthy(t, l, e.cluster, time.Minute, "whole again after the drill", healthy)
			replicaLinksEncrypted(t, l, e.kind, s)

			var to string
			for _, in := range s.Instances {
				if in.Addr != s.Primary {
					to = in.Addr
					break
				}
			}
			if r := dbhaCLI(t, bin, l, "promote", "--cluster", e.cluster, "--to", to); r.code != 0 {
				t.Fatalf("switchover to %s: %s", to, r)
			}
			if e.kind == KindPostgres {
				// The old primary is left fenced and detached for the
				// rejoin_command (pg_rewind over TLS too), which dbha run runs.
				run := startDbhaRun(t, bin, l, "tls-rejoiner")
				waitHealthy(t, l, e.cluster, 90*time.Second, "the old primary back as a standby", healthy)
				run.stop(t, syscall.SIGTERM)
			}
			s = waitHealthy(t, l, e.cluster, time.Minute, "healthy after the switchover", healthy)
			if s.Primary != to {
				t.Errorf("primary %s after a switchover to %s", s.Primary, to)
			}
			replicaLinksEncrypted(t, l, e.kind, s)

			r = dbhaCLI(t, bin, l, "backup", "run", "--cluster", e.cluster, "-o", "json")
			var doc struct {
				Backups []backup.Entry `json:"backups"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 0 || len(doc.Backups) != 1 || doc.Backups[0].Status != backup.Done {
				t.Fatalf("backup over TLS: %v\n%s", err, r)
			}
			id := doc.Backups[0].ID
			if r := dbhaCLI(t, bin, l, "backup", "verify", id, "--cluster", e.cluster); r.code != 0 {
				t.Fatalf("verify %s: %s", id, r)
			}
		})
	}
}

// replicaLinksEncrypted checks, from the servers' side, that every
// replica's link to the primary is encrypted: MariaDB's replicas were
// pointed with MASTER_SSL and the server's name checked; PostgreSQL's
// primary lists every walsender with ssl on.
func replicaLinksEncrypted(t *testing.T, l *Lab, kind string, s topology.Snapshot) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := func(addr string) string {
		for _, n := range l.nodesOfKind(kind) {
			if n.Addr() == addr {
				return n.Name
			}
		}
		t.Fatalf("no %s node at %s", kind, addr)
		return ""
	}
	if kind == KindMariaDB {
		for _, in := range s.Instances {
			if in.Addr == s.Primary {
				continue
			}
			st, err := slaveStatus(ctx, mysqlDB(t, l, name(in.Addr)))
			if err != nil {
				t.Fatal(err)
			}
			if st["Slave_IO_Running"] != "Yes" || st["Master_SSL_Allowed"] != "Yes" || st["Master_SSL_Verify_Server_Cert"] != "Yes" {
				t.Errorf("%s's link: IO %s, SSL %s, verify %s: %s", in.Addr, st["Slave_IO_Running"], st["Master_SSL_Allowed"], st["Master_SSL_Verify_Server_Cert"], st["Last_IO_Error"])
			}
		}
		return
	}
	pg, err := l.AdminPostgres(ctx, name(s.Primary))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	eventually(t, "every walsender encrypted", func() error {
		rows, err := pg.Query(ctx, `SELECT a.application_name, s.ssl FROM pg_stat_replication a JOIN pg_stat_ssl s USING (pid)`)
		if err != nil {
			return err
		}
		type sender struct {
			app string
			ssl bool
		}
		senders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sender, error) {
			var x sender
			return x, r.Scan(&x.app, &x.ssl)
		})
		if err != nil {
			return err
		}
		var apps []string
		for _, x := range senders {
			if !x.ssl {
				return fmt.Errorf("%s streams in clear text", x.app)
			}
			apps = append(apps, x.app)
		}
		if want := len(s.Instances) - 1; len(senders) < want {
			return fmt.Errorf("walsenders %s: want the %d standbys'", strings.Join(apps, ", "), want)
		}
		return nil
	})
}
