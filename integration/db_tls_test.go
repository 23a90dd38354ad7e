package integration

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	"github.com/dbha/dbha/labca"
	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// TestDatabaseTLS: on a TLS lab, the connections dbha's Go clients make to
// the databases are encrypted and verified, as the servers see them. The
// accounts dbha and repl are made to refuse clear text (MariaDB REQUIRE
// SSL, PostgreSQL hostnossl ... reject), so that every session they hold
// is encrypted; the prober, a control session, the change streams and the
// replicas' own links after a repoint are then checked to work, and
// PostgreSQL's pg_stat_ssl to list none of their sessions in clear. A
// server certificate of another CA is refused.
func TestDatabaseTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{TLS: true, Progress: testLog{t}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.Down(ctx, true)
	})
	full := tlsconfig.NewSettings(tlsconfig.VerifyFull, tlsconfig.Files{CA: l.certs.CAFile()})
	other, err := NewCerts(t.TempDir(), "another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCA := tlsconfig.NewSettings(tlsconfig.VerifyCA, tlsconfig.Files{CA: other.CAFile()})

	t.Run("mariadb", func(t *testing.T) { mariadbTLS(ctx, t, l, full, otherCA) })
	t.Run("postgres", func(t *testing.T) { postgresTLS(ctx, t, l, full, otherCA) })
}

func mariadbTLS(ctx context.Context, t *testing.T, l *Lab, full, otherCA *tlsconfig.Settings) {
	admin := mysqlDB(t, l, "mariadb-1")
	for _, q := range []string{"ALTER USER 'dbha'@'127.0.0.1' REQUIRE SSL", "ALTER USER 'repl'@'127.0.0.1' REQUIRE SSL"} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	replPW, err := readPassword(l.Secret("mariadb-repl"))
	if err != nil {
		t.Fatal(err)
	}
	primary, replica := addr(t, l, "mariadb-1"), addr(t, l, "mariadb-2")
	ping := func(t *tlsconfig.Settings) (*sql.DB, error) {
		db, err := mysql.Open(primary, "dbha", pw, t)
		if err != nil {
			return nil, err
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	}
	if db, err := ping(nil); err == nil {
		db.Close()
		t.Fatal("the server let dbha in over clear text: the test would prove nothing")
	}
	if db, err := ping(otherCA); err == nil || !strings.Contains(err.Error(), "not signed by a CA in ca_file "+otherCA.Files.CA) {
		if db != nil {
			db.Close()
		}
		t.Errorf("a server certificate of another CA: %v", err)
	}
	db, err := ping(full)
	if err != nil {
		t.Fatalf("verify-full: %v", err)
	}
	defer db.Close()
	var name, cipher string
	if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil || cipher == "" {
		t.Errorf("the server's Ssl_cipher for dbha's session: %q, %v", cipher, err)
	}
	p := mysql.NewProber(topology.MariaDB, "dbha", pw)
	p.SetTLS(full)
	defer p.Close()
	if in := p.Probe(ctx, primary); !in.Reachable {
		t.Errorf("the prober over TLS: %s", in.Error)
	}
	// The change stream: its session and its binlog dump.
	dir := t.TempDir()
	startMariaStream(t, l, dir, "mariadb-1", func(c *mysqlstream.Config) { c.TLS = full })
	waitMariaStatus(t, dir, "the stream connected over TLS", func(st binlog.Status) error {
		if !st.Connected {
			return fmt.Errorf("not connected: %s", st.LastError)
		}
		return nil
	})
	// A replica repointed by the controller: its link carries MASTER_SSL
	// and the CA, and the repl account takes nothing else.
	// The replica reads the CA where its server can: its own copy
	// (replica_ca_file), not dbha's.
	n2, err := l.Node("mariadb-2")
	if err != nil {
		t.Fatal(err)
	}
	onReplicas := &tlsconfig.Settings{Mode: full.Mode, Files: full.Files, ReplicaCA: serverTLS(n2).CA}
	c := mysql.NewController(topology.MariaDB, "dbha", pw, "repl", replPW)
	c.SetTLS(onReplicas)
	defer c.Close()
	if err := c.Repoint(ctx, replica, primary); err != nil {
		t.Fatal(err)
	}
	rdb := mysqlDB(t, l, "mariadb-2")
	eventually(t, "mariadb-2 replicating over TLS", func() error {
		st, err := slaveStatus(ctx, rdb)
		if err != nil {
			return err
		}
		if st["Slave_IO_Running"] != "Yes" || st["Master_SSL_Allowed"] != "Yes" || st["Master_SSL_Verify_Server_Cert"] != "Yes" || st["Master_SSL_CA_File"] != onReplicas.ReplicaCA {
			return fmt.Errorf("IO %s, SSL %s, verify %s, CA %q: %s", st["Slave_IO_Running"], st["Master_SSL_Allowed"], st["Master_SSL_Verify_Server_Cert"], st["Master_SSL_CA_File"], st["Last_IO_Error"])
		}
		return nil
	})
}

func postgresTLS(ctx context.Context, t *testing.T, l *Lab, full, otherCA *tlsconfig.Settings) {
	pg, err := l.AdminPostgres(ctx, "postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	// dbha and repl: TLS or nothing, on the primary and on postgres-2.
	for _, name := range []string{"postgres-1", "postgres-2"} {
		n, err := l.Node(name)
		if err != nil {
			t.Fatal(err)
		}
		hba := filepath.Join(n.DataDir, "pg_hba.conf")
		text, err := os.ReadFile(hba)
		if err != nil {
			t.Fatal(err)
		}
		reject := "hostnossl all dbha,repl 0.0.0.0/0 reject\nhostnossl replication dbha,repl 0.0.0.0/0 reject\n"
		if err := os.WriteFile(hba, append([]byte(reject), text...), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := l.AdminPostgres(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
	}
	pw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	replPW, err := readPassword(l.Secret("postgres-repl"))
	if err != nil {
		t.Fatal(err)
	}
	primary, standby := addr(t, l, "postgres-1"), addr(t, l, "postgres-2")
	connect := func(t *tlsconfig.Settings) error {
		cc, err := postgres.ConnConfig(primary, "dbha", pw, "postgres", t)
		if err != nil {
			return err
		}
		pc, err := pgx.ParseConfig("")
		if err != nil {
			return err
		}
		pc.Config = *cc
		c, err := pgx.ConnectConfig(ctx, pc)
		if err == nil {
			c.Close(context.Background())
		}
		return err
	}
	if err := connect(nil); err == nil {
		t.Fatal("the server let dbha in over clear text: the test would prove nothing")
	}
	if err := connect(otherCA); err == nil || !strings.Contains(err.Error(), "not signed by a CA in ca_file") {
		t.Errorf("a server certificate of another CA: %v", err)
	}
	if err := connect(full); err != nil {
		t.Fatalf("verify-full: %v", err)
	}
	// The server's certificate replaced (renamed into place, reloaded) by
	// one for another name: verify-full refuses it, naming the name; the
	// right one back, it connects again.
	n1, err := l.Node("postgres-1")
	if err != nil {
		t.Fatal(err)
	}
	reissue := func(hosts ...string) {
		t.Helper()
		f := serverTLS(n1)
		p, err := l.certs.ca.Issue(labca.Leaf{Name: "postgres-1", Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Write(f.Cert, f.Key); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{f.Cert, f.Key} {
			if err := l.chownLab(path); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pg.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	reissue("db.elsewhere.example")
	eventually(t, "a certificate for another name refused", func() error {
		if err := connect(full); err == nil || !strings.Contains(err.Error(), `not valid for the name "`+n1.Host+`"`) {
			return fmt.Errorf("verify-full to %s with a certificate for db.elsewhere.example: %v", n1.Host, err)
		}
		return nil
	})
	reissue(n1.Host, "localhost")
	eventually(t, "the right certificate accepted again", func() error { return connect(full) })
	p := postgres.NewProber("dbha", pw)
	p.SetTLS(full)
	defer p.Close()
	if in := p.Probe(ctx, primary); !in.Reachable {
		t.Errorf("the prober over TLS: %s", in.Error)
	}
	if in := p.Probe(ctx, standby); !in.Reachable {
		t.Errorf("the prober over TLS, a standby: %s", in.Error)
	}
	// The WAL stream.
	cfg := walConfig(t, l, t.TempDir(), fixedPrimary(primary))
	cfg.TLS = full
	runStream(ctx, t, cfg)
	// A standby repointed by the controller: primary_conninfo with
	// sslmode=verify-full and the CA.
	n2, err := l.Node("postgres-2")
	if err != nil {
		t.Fatal(err)
	}
	onReplicas := &tlsconfig.Settings{Mode: full.Mode, Files: full.Files, ReplicaCA: serverTLS(n2).CA}
	c := postgres.NewController("dbha", pw, "repl", replPW)
	c.SetTLS(onReplicas)
	defer c.Close()
	if err := c.Repoint(ctx, standby, primary); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the stream and postgres-2 streaming over TLS", func() error {
		rows, err := pg.Query(ctx, `SELECT a.usename, a.application_name, a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
			WHERE a.usename IN ('dbha', 'repl')`)
		if err != nil {
			return err
		}
		type session struct {
			user, app, kind string
			ssl             bool
		}
		sessions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (session, error) {
			var s session
			return s, r.Scan(&s.user, &s.app, &s.kind, &s.ssl)
		})
		if err != nil {
			return err
		}
		var walsenders []string
		for _, s := range sessions {
			if !s.ssl {
				return fmt.Errorf("a session in clear text: %+v", s)
			}
			if s.kind == "walsender" {
				walsenders = append(walsenders, s.user+"/"+s.app)
			}
		}
		// dbha's stream, and postgres-2's link (the application_name is the node's).
		if !containsPrefix(walsenders, "dbha/dbha") || !containsPrefix(walsenders, "repl/postgres-2") {
			return fmt.Errorf("encrypted walsenders %v: want dbha's stream and postgres-2's", walsenders)
		}
		return nil
	})
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestTLSRequireRefusesClearText: with TLS required, dbha never talks to a
// server that offers no TLS (the shared lab's servers offer none): it
// fails instead of falling back to clear text.
func TestTLSRequireRefusesClearText(t *testing.T) {
	l := sharedLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require := tlsconfig.NewSettings(tlsconfig.Require, tlsconfig.Files{})
	pw, err := readPassword(l.Secret("mariadb-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := mysql.Open(addr(t, l, "mariadb-1"), "dbha", pw, require)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("MariaDB without TLS, mode require: %v; want a refusal", err)
	}
	pgpw, err := readPassword(l.Secret("postgres-dbha"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := postgres.ConnConfig(addr(t, l, "postgres-1"), "dbha", pgpw, "postgres", require)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	pc.Config = *cc
	if c, err := pgx.ConnectConfig(ctx, pc); err == nil {
		c.Close(context.Background())
		t.Error("PostgreSQL without TLS, mode require: connected")
	} else if !strings.Contains(err.Error(), "TLS") {
		t.Errorf("PostgreSQL without TLS, mode require: %v; want a refusal for TLS", err)
	}
}
