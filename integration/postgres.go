package integration

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const postgresCluster = "lab-postgres"

// postgresDBHAGrants give dbha least privilege on PostgreSQL 15 (each checked on 15), after
// CREATE ROLE dbha LOGIN REPLICATION: the REPLICATION attribute lets dbha open a physical
// replication connection and create slots, to stream WAL into its own store.
var postgresDBHAGrants = []string{
	// pg_stat_replication, pg_stat_wal_receiver and pg_last_wal_*_lsn() with every column:
	// positions and lag of each standby.
	"GRANT pg_monitor TO dbha",
	// Promote the chosen standby.
	"GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO dbha",
	// Apply a changed primary_conninfo without a restart.
	"GRANT EXECUTE ON FUNCTION pg_reload_conf() TO dbha",
	// ALTER SYSTEM for exactly the settings that repoint a standby (PostgreSQL 15+).
	"GRANT ALTER SYSTEM ON PARAMETER primary_conninfo, primary_slot_name, restore_command TO dbha",
	// Fence an old primary: writes refused by default, and its client sessions ended.
	"GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO dbha",
	"GRANT pg_signal_backend TO dbha",
}

// postgresConf is appended to every node's postgresql.conf. Node-specific settings (port,
// socket directory) live in lab-node.conf, which each node rewrites after pg_basebackup has
// copied the primary's.
const postgresConf = `
# dbha lab
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on
hot_standby = on
wal_keep_size = '64MB'
shared_buffers = '32MB'
# An idle primary's walsender pings each standby after wal_sender_timeout/2
# without a reply, and the standby answers at once: every standby hears
# its primary every 500 ms, and dbha takes a link silent for three of those
# (checks.link_dead_after, at least) as a vanished primary. The cost: a
# standby, or dbha's stream, that does not answer a ping within 500 ms is
# disconnected, and reconnects. A standby drops a silent link after 4 s,
# as MariaDB's slave_net_timeout=4 does.
wal_sender_timeout = '1s'
wal_receiver_timeout = '4s'
include 'lab-node.conf'
`

// postgresHBA: trust on the node's private socket, SCRAM over TCP from the lab's clients
// (loopback, or a hosts lab's subnet).
func (l *Lab) postgresHBA() string {
	from := labHost + "/32"
	if l.Net != nil {
		from = l.Net.Subnet()
	}
	host := "host"
	if l.TLS {
		host = "hostssl" // TLS or nothing, for every remote account
	}
	return "# dbha lab\nlocal all all trust\nlocal replication all trust\n" +
		host + " all all " + from + " scram-sha-256\n" + host + " replication all " + from + " scram-sha-256\n"
}

// upPostgres builds cluster lab-postgres: initdb and start postgres-1, create roles, slots and
// the test database there, then clone postgres-2 and postgres-3 with pg_basebackup and start
// them as streaming standbys.
func (l *Lab) upPostgres(ctx context.Context) error {
	start := time.Now()
	nodes := l.nodesOfKind(KindPostgres)
	if err := l.initPostgres(ctx, nodes[0]); err != nil {
		return fmt.Errorf("postgres: initdb %s: %w", nodes[0].Name, err)
	}
	if err := l.startFresh(ctx, nodes[0].Name, l.writePGNodeConf); err != nil {
		return fmt.Errorf("postgres: start %s: %w", nodes[0].Name, err)
	}
	primary, _ := l.Node(nodes[0].Name)
	l.progressf("postgres: primary %s up on %s (%.1fs)", primary.Name, primary.Addr(), time.Since(start).Seconds())
	if err := l.setupPostgresPrimary(ctx, primary, nodes[1:]); err != nil {
		return fmt.Errorf("postgres: set up %s: %w", primary.Name, err)
	}
	err := inParallel(nodes[1:], func(n Node) error { return l.startStandby(ctx, n, primary) })
	if err != nil {
		return fmt.Errorf("postgres: standbys: %w", err)
	}
	if err := l.waitStreaming(ctx, primary, nodes[1:]); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	l.progressf("postgres: postgres-2 and postgres-3 streaming from %s (%.1fs)", primary.Name, time.Since(start).Seconds())
	return nil
}

// initPostgres runs initdb as the lab user and writes the lab's configuration. The superuser
// password reaches initdb through a temporary file owned by the lab user.
func (l *Lab) initPostgres(ctx context.Context, n Node) error {
	initdb, err := lookBinary("initdb")
	if err != nil {
		return err
	}
	pw, err := readPassword(l.Secret("postgres-superuser"))
	if err != nil {
		return err
	}
	pwfile := filepath.Join(filepath.Dir(n.DataDir), "initdb.pw")
	if err := os.WriteFile(pwfile, []byte(pw+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := l.chownLab(pwfile); err != nil {
		return err
	}
	err = l.run(ctx, launch{
		path: initdb,
		args: []string{"-D", n.DataDir, "-U", "postgres", "--pwfile=" + pwfile, "--auth-local=trust",
			"--auth-host=scram-sha-256", "--no-locale", "--encoding=UTF8", "--no-sync"},
		logFile:   n.LogFile,
		asLabUser: true,
	})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(n.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(postgresConf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.DataDir, "pg_hba.conf"), []byte(l.postgresHBA()), 0o600)
}

// writePGNodeConf writes the settings that differ between nodes into the data directory.
func (l *Lab) writePGNodeConf(n Node) error {
	conf := fmt.Sprintf("# written by dbha lab for %s\nlisten_addresses = '%s'\nport = %d\nunix_socket_directories = '%s'\ncluster_name = '%s'\n",
		n.Name, l.listenAddr(n), n.Port, n.Socket, n.Name)
	if l.Net != nil {
		// A lab of hosts is a LAN, where the fault matrix measures how soon a vanished
		// primary is replaced: a ping every 300 ms, three of which fit in
		// checks.link_dead_after (1 s), so a standby's silence counts as soon as a MariaDB
		// replica's does. The cost: 300 ms to answer a ping (see the README).
		conf += "wal_sender_timeout = '600ms'\n"
	}
	if l.PGSynchronous {
		conf += "synchronous_standby_names = '" + l.pgSynchronousNames() + "'\n"
	}
	if err := l.issueServerTLS(n); err != nil {
		return err
	}
	conf += l.postgresTLSSettings(n)
	path := filepath.Join(n.DataDir, "lab-node.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	return l.chownLab(path)
}

func (l *Lab) postgresLaunch(n Node) (launch, error) {
	bin, err := lookBinary("postgres")
	if err != nil {
		return launch{}, err
	}
	return launch{path: bin, args: []string{"-D", n.DataDir}, logFile: n.LogFile, asLabUser: true}, nil
}

// postgresReady succeeds once the node accepts a password login over TCP (a standby: once it
// has reached a consistent state).
func (l *Lab) postgresReady(n Node) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := l.pgConnect(ctx, n, "postgres")
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
}

// setupPostgresPrimary creates the roles (passwords sent as SCRAM verifiers, never in clear),
// dbha's grants, one physical slot per standby, and database dbha_lab.
func (l *Lab) setupPostgresPrimary(ctx context.Context, primary Node, standbys []Node) error {
	var stmts []string
	for _, role := range []string{"repl", "dbha"} {
		pw, err := readPassword(l.Secret("postgres-" + role))
		if err != nil {
			return err
		}
		verifier, err := scramVerifier(pw)
		if err != nil {
			return err
		}
		stmts = append(stmts, fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'", role, verifier))
	}
	stmts = append(stmts, postgresDBHAGrants...)
	for _, s := range standbys {
		stmts = append(stmts, fmt.Sprintf("SELECT pg_create_physical_replication_slot('%s')", slotName(s)))
	}
	stmts = append(stmts, "CREATE DATABASE dbha_lab")
	if err := l.pgExec(ctx, primary, "postgres", stmts); err != nil {
		return err
	}
	return l.pgExec(ctx, primary, "dbha_lab", []string{
		"CREATE TABLE heartbeat (id serial PRIMARY KEY, at timestamptz(6) NOT NULL DEFAULT clock_timestamp())",
	})
}

func (l *Lab) pgExec(ctx context.Context, n Node, db string, stmts []string) error {
	conn, err := l.pgConnect(ctx, n, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s, 4), err)
		}
	}
	return nil
}

// pgSynchronousNames is a lossless lab's synchronous_standby_names: a
// commit returns once dbha's stream or any one standby has flushed it, so
// one dead standby (or dbha) does not stop the primary, and a primary cut
// off from all of them blocks its commits. Standbys connect under their
// node name (see primary_conninfo).
func (l *Lab) pgSynchronousNames() string {
	names := []string{`"dbha"`}
	for _, n := range l.nodesOfKind(KindPostgres) {
		names = append(names, `"`+n.Name+`"`)
	}
	return "ANY 1 (" + strings.Join(names, ", ") + ")"
}

// synchronousPostgres makes a lossless lab's PostgreSQL nodes wait for
// dbha's stream, once the lab is set up (its own commits would otherwise
// wait for a stream that is not running yet).
func (l *Lab) synchronousPostgres(ctx context.Context) error {
	if !l.Lossless {
		return nil
	}
	l.PGSynchronous = true
	for _, n := range l.nodesOfKind(KindPostgres) {
		if err := l.writePGNodeConf(n); err != nil {
			return err
		}
		if err := l.pgExec(ctx, n, "postgres", []string{"SELECT pg_reload_conf()"}); err != nil {
			return fmt.Errorf("reload %s: %w", n.Name, err)
		}
	}
	return nil
}

// slotName is the physical replication slot of a standby: postgres-2 → postgres_2.
func slotName(n Node) string { return strings.ReplaceAll(n.Name, "-", "_") }

// startStandby clones the primary with pg_basebackup (as the lab user, password in the
// environment), points it at the primary with its own application_name, and starts it.
func (l *Lab) startStandby(ctx context.Context, n, primary Node) error {
	basebackup, err := lookBinary("pg_basebackup")
	if err != nil {
		return err
	}
	pw, err := readPassword(l.Secret("postgres-repl"))
	if err != nil {
		return err
	}
	err = l.run(ctx, launch{
		path: basebackup,
		args: []string{"-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", "repl", "-w", "-D", n.DataDir,
			"-X", "stream", "-R", "-S", slotName(n), "-c", "fast", "--no-sync"},
		env:       []string{"PGPASSWORD=" + pw},
		logFile:   n.LogFile,
		asLabUser: true,
		netns:     l.netnsOf(n), // from the standby's own host
	})
	if err != nil {
		return fmt.Errorf("pg_basebackup for %s: %w", n.Name, err)
	}
	if err := setPrimaryConninfo(n, primary, pw, l.conninfoSSL()); err != nil {
		return fmt.Errorf("configure %s: %w", n.Name, err)
	}
	return l.startFresh(ctx, n.Name, l.writePGNodeConf)
}

// setPrimaryConninfo replaces the primary_conninfo that pg_basebackup -R wrote with one that
// carries the standby's application_name, so pg_stat_replication names it.
func setPrimaryConninfo(n, primary Node, pw, ssl string) error {
	path := filepath.Join(n.DataDir, "postgresql.auto.conf")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "primary_conninfo") {
			keep = append(keep, line)
		}
	}
	keep = append(keep, fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=repl password=%s application_name=%s%s'",
		primary.Host, primary.Port, pw, n.Name, ssl))
	// Truncating in place keeps the file's owner (the lab user) and mode.
	return os.WriteFile(path, []byte(strings.Join(keep, "\n")+"\n"), 0o600)
}

// waitStreaming waits until the primary's pg_stat_replication shows every standby streaming.
func (l *Lab) waitStreaming(ctx context.Context, primary Node, standbys []Node) error {
	names := make([]string, len(standbys))
	for i, s := range standbys {
		names[i] = s.Name
	}
	what := fmt.Sprintf("standbys %s streaming", strings.Join(names, ", "))
	return waitReady(ctx, primary, what, func(ctx context.Context) error {
		conn, err := l.pgConnect(ctx, primary, "postgres")
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name = ANY($1)",
			names).Scan(&n)
		if err != nil {
			return err
		}
		if n != len(names) {
			return fmt.Errorf("%d of %d standbys streaming", n, len(names))
		}
		return nil
	})
}

// AdminPostgres opens a superuser ("postgres") connection over TCP to a PostgreSQL node, in
// database dbha_lab, where the heartbeat table is.
func (l *Lab) AdminPostgres(ctx context.Context, name string) (*pgx.Conn, error) {
	n, err := l.Node(name)
	if err != nil {
		return nil, err
	}
	if n.Kind != KindPostgres {
		return nil, fmt.Errorf("admin PostgreSQL connection: %s is a %s node", name, n.Kind)
	}
	return l.pgConnect(ctx, n, "dbha_lab")
}

// pgConnect connects as the superuser over TCP with the password from its secret file. The
// password is set on the parsed config, never in a connection string.
func (l *Lab) pgConnect(ctx context.Context, n Node, db string) (*pgx.Conn, error) {
	pw, err := readPassword(l.Secret("postgres-superuser"))
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable connect_timeout=5",
		n.Host, n.Port, db))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	cfg.Password = pw
	if cfg.TLSConfig, err = l.clusterTLS().For(n.Addr()); err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	return conn, nil
}

// scramVerifier computes PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802,
// 4096 iterations, as PostgreSQL does), so CREATE ROLE never carries the password itself.
func scramVerifier(pw string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, pw, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram key: %w", err)
	}
	mac := func(msg string) []byte {
		h := hmac.New(sha256.New, salted)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac("Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(mac("Server Key"))), nil
}
