package integration

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dbha/dbha/checks"
)

const mariadbCluster = "lab-mariadb"

// mariadbDBHAGrant is the least privilege dbha needs as an HA manager on MariaDB 10.11. Every
// name was checked against 10.11 (SHOW GRANTS prints REPLICA MONITOR as SLAVE MONITOR). No
// SELECT on mysql.* is granted: dbha reads only status and variables.
const mariadbDBHAGrant = "GRANT " +
	"REPLICATION SLAVE, " + // stream the primary's binlog (GTID binlog dump) into dbha's own store
	"REPLICA MONITOR, " + // SHOW SLAVE STATUS / SHOW ALL SLAVES STATUS: replica positions, lag, errors
	"BINLOG MONITOR, " + // SHOW BINLOG STATUS, SHOW BINARY LOGS: the primary's position and files
	"REPLICATION SLAVE ADMIN, " + // STOP/START SLAVE, CHANGE MASTER, SET GLOBAL gtid_slave_pos: repoint, catch up
	"READ_ONLY ADMIN, " + // SET GLOBAL read_only (fence the old primary, open the new one); write while read_only
	"CONNECTION ADMIN, " + // KILL other users' sessions when fencing the old primary
	"BINLOG REPLAY, " + // run BINLOG statements: apply events from dbha's store to the candidate
	"BINLOG ADMIN, " + // rewind an old primary: undo its tail with sql_log_bin=0, RESET MASTER, gtid_binlog_state
	"PROCESS, " + // SHOW PROCESSLIST of every user: sessions to kill, binlog dump threads
	"RELOAD, " + // RESET SLAVE ALL when promoting a replica
	"REPLICATION MASTER ADMIN " + // SHOW SLAVE HOSTS: no replica may use the stream's server_id
	"ON *.* TO 'dbha'@" // + the lab's client host pattern

// mariadbInstallSQL runs inside mariadb-install-db's bootstrap. "normal" root authentication
// creates passwordless root@127.0.0.1, root@::1 and root@<hostname>; they are removed so that
// root is reachable only through the node's private unix socket (root@localhost), which the
// lab uses for setup.
const mariadbInstallSQL = `DELETE FROM mysql.global_priv WHERE User='root' AND Host<>'localhost';
DELETE FROM mysql.proxies_priv WHERE User='root' AND Host<>'localhost';
`

// upMariaDB builds cluster lab-mariadb: one system-table install copied to three data
// directories, three servers started at once, users on the primary (they replicate), then
// GTID replication to mariadb-2 and mariadb-3.
func (l *Lab) upMariaDB(ctx context.Context) error {
	start := time.Now()
	nodes := l.nodesOfKind(KindMariaDB)
	if err := l.installMariaDB(ctx, nodes); err != nil {
		return fmt.Errorf("mariadb: install system tables: %w", err)
	}
	err := inParallel(nodes, func(n Node) error {
		return l.startFresh(ctx, n.Name, l.writeMyCnf)
	})
	if err != nil {
		return fmt.Errorf("mariadb: start servers: %w", err)
	}
	primary, _ := l.Node(nodes[0].Name)
	l.progressf("mariadb: 3 servers up, primary %s on %s (%.1fs)", primary.Name, primary.Addr(), time.Since(start).Seconds())
	if err := l.createMariaDBUsers(ctx, primary); err != nil {
		return fmt.Errorf("mariadb: create users on %s: %w", primary.Name, err)
	}
	err = inParallel(nodes[1:], func(n Node) error {
		n, _ = l.Node(n.Name)
		return l.startMariaDBReplica(ctx, n, primary)
	})
	if err != nil {
		return fmt.Errorf("mariadb: replication: %w", err)
	}
	l.progressf("mariadb: mariadb-2 and mariadb-3 replicating from %s (%.1fs)", primary.Name, time.Since(start).Seconds())
	return nil
}

// installMariaDB runs mariadb-install-db once, as the lab user, and copies the result to the
// other nodes before their first start: identical, binlog-free starting points.
func (l *Lab) installMariaDB(ctx context.Context, nodes []Node) error {
	installDB, err := lookBinary("mariadb-install-db")
	if err != nil {
		return err
	}
	first := nodes[0]
	nodeDir := filepath.Dir(first.DataDir)
	cnf := filepath.Join(nodeDir, "install.cnf")
	extra := filepath.Join(nodeDir, "install.sql")
	// The redo log is created at install time, so its size must match my.cnf.
	// tmpdir: see writeMyCnf.
	if err := os.WriteFile(cnf, []byte("[mysqld]\ntmpdir="+nodeDir+"\n"+mariadbInnoDBSettings), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(extra, []byte(mariadbInstallSQL), 0o644); err != nil {
		return err
	}
	defer os.Remove(cnf)
	defer os.Remove(extra)
	if err := l.mkdirLab(first.DataDir); err != nil {
		return err
	}
	err = l.run(ctx, launch{
		path: installDB,
		args: []string{"--defaults-file=" + cnf, "--datadir=" + first.DataDir,
			"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve", "--extra-file=" + extra},
		logFile:   first.LogFile,
		asLabUser: true,
	})
	if err != nil {
		return err
	}
	return inParallel(nodes[1:], func(n Node) error { return l.copyTree(ctx, first.DataDir, n.DataDir) })
}

const mariadbInnoDBSettings = `innodb_buffer_pool_size=64M
innodb_log_file_size=16M
`

// writeMyCnf writes the node's my.cnf. server_id is the node's number (mariadb-2 → 2).
// Replicas start read-only; every node logs replicated changes (log_slave_updates) so that
// any of them can become the primary.
func (l *Lab) writeMyCnf(n Node) error {
	nodeDir := filepath.Dir(n.DataDir)
	serverID, err := strconv.Atoi(n.Name[strings.LastIndex(n.Name, "-")+1:])
	if err != nil {
		return fmt.Errorf("server_id from node name %q: %w", n.Name, err)
	}
	readOnly := "OFF"
	if serverID != 1 {
		readOnly = "ON"
	}
	cnf := fmt.Sprintf(`# written by dbha lab
[mysqld]
datadir=%s
port=%d
socket=%s
pid-file=%s
# A server deletes every #sql* file in its tmpdir when it starts: a shared
# /tmp would lose the temporary tables of other labs' servers (and make a
# concurrent mariadb-install-db fail).
tmpdir=%s
bind-address=%s
skip-name-resolve
server_id=%d
log_bin=mariadb-bin
relay_log=relay-bin
log_slave_updates=ON
binlog_format=ROW
gtid_strict_mode=ON
gtid_domain_id=0
performance_schema=OFF
report_host=%s
report_port=%d
# A replica drops a silent link after 4 s. dbha hears a vanished primary
# sooner: every replica is pointed with MASTER_HEARTBEAT_PERIOD (dbha's
# checks.heartbeat, 250 ms), and a link silent past checks.link_dead_after
# votes dead.
slave_net_timeout=4
read_only=%s
%s%s%s`, n.DataDir, n.Port, n.Socket, filepath.Join(nodeDir, "mariadbd.pid"), nodeDir, l.listenAddr(n), serverID, n.Host, n.Port, readOnly, mariadbInnoDBSettings, l.semiSyncSettings(), l.mariadbTLSSettings(n))
	if err := l.issueServerTLS(n); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(nodeDir, "my.cnf"), []byte(cnf), 0o644)
}

// semiSyncSettings, in a lossless lab: a commit returns once a semi-sync
// replica (dbha's stream, or a replica) holds it, and never without one.
// AFTER_SYNC: nothing is committed (visible to others) that no replica
// has. wait_no_slave=ON and the largest timeout: a primary cut off from
// every acknowledger blocks its clients' commits until one returns or it
// is fenced, instead of falling back to asynchronous commits. Only the
// primary waits for acknowledgements (rpl_semi_sync_master_enabled, set
// once the lab is built, then by dbha's promotions): a replica with it on
// would hold its own SQL thread's commits waiting for an acknowledgement
// nobody sends it. A server that crashed and starts again discards what
// was written to its binlog but never acknowledged (init_rpl_role=SLAVE),
// so an old primary never comes back with transactions the cluster does
// not have.
func (l *Lab) semiSyncSettings() string {
	if !l.Lossless {
		return ""
	}
	return fmt.Sprintf(`rpl_semi_sync_master_enabled=OFF
rpl_semi_sync_master_wait_point=AFTER_SYNC
rpl_semi_sync_master_wait_no_slave=ON
rpl_semi_sync_master_timeout=%d
rpl_semi_sync_slave_enabled=ON
init_rpl_role=SLAVE
`, uint64(semiSyncNoFallbackTimeout))
}

// semiSyncNoFallbackTimeout is rpl_semi_sync_master_timeout's maximum on
// a 64-bit MariaDB (ms; 0 to 2^64-1): a commit waits for an
// acknowledgement for ever.
const semiSyncNoFallbackTimeout = ^uint64(0)

// semiSyncMariaDB makes a lossless lab's MariaDB primary wait for a
// semi-sync acknowledgement of every commit, once its replicas follow it
// (its own setup commits would otherwise wait for replicas not attached
// yet), and restarts the replicas' IO threads so that they connect as
// semi-sync replicas.
func (l *Lab) semiSyncMariaDB(ctx context.Context) error {
	if !l.Lossless {
		return nil
	}
	nodes := l.nodesOfKind(KindMariaDB)
	if len(nodes) == 0 {
		return nil
	}
	if err := l.mariadbExec(ctx, nodes[0], "SET GLOBAL rpl_semi_sync_master_enabled = ON"); err != nil {
		return fmt.Errorf("mariadb: semi-sync on %s: %w", nodes[0].Name, err)
	}
	for _, n := range nodes[1:] {
		if err := l.mariadbExec(ctx, n, "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"); err != nil {
			return fmt.Errorf("mariadb: reconnect %s as a semi-sync replica: %w", n.Name, err)
		}
	}
	return nil
}

func (l *Lab) mariadbLaunch(n Node) (launch, error) {
	bin, err := lookBinary("mariadbd")
	if err != nil {
		return launch{}, err
	}
	// --datadir repeats my.cnf so that the data directory appears in /proc/PID/cmdline.
	cnf := filepath.Join(filepath.Dir(n.DataDir), "my.cnf")
	return launch{path: bin, args: []string{"--defaults-file=" + cnf, "--datadir=" + n.DataDir}, logFile: n.LogFile, asLabUser: true}, nil
}

// mariadbReady succeeds once the server answers SQL on its socket. The server opens its TCP
// port before the socket; a bare TCP probe is avoided because MariaDB logs every such
// connection as "Aborted connection".
func (l *Lab) mariadbReady(n Node) func(context.Context) error {
	return func(ctx context.Context) error {
		db := rootMySQL(n)
		defer db.Close()
		return db.PingContext(ctx)
	}
}

// rootMySQL connects as root@localhost through the node's unix socket, which only root and
// the lab user can reach; root has no TCP account.
func rootMySQL(n Node) *sql.DB {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", n.Socket
	cfg.Timeout = probeTimeout
	connector, _ := mysql.NewConnector(cfg) // cannot fail: no TLS or custom options
	return sql.OpenDB(connector)
}

// createMariaDBUsers creates the lab's accounts and test database on the primary. Passwords
// go to the server as mysql_native_password hashes, so neither the binlog nor any log holds
// them in clear.
func (l *Lab) createMariaDBUsers(ctx context.Context, primary Node) error {
	hashes := map[string]string{}
	for _, user := range []string{"admin", "repl", "dbha", "app"} {
		pw, err := readPassword(l.Secret("mariadb-" + user))
		if err != nil {
			return err
		}
		hashes[user] = nativePasswordHash(pw)
	}
	// Accounts are for connections from the lab's client host(s): loopback, or in a hosts
	// lab any address of its subnet (clients, managers and the replicas of each other).
	from := "'" + l.sqlClientHosts() + "'"
	stmts := []string{
		fmt.Sprintf("CREATE USER 'admin'@%s IDENTIFIED BY PASSWORD '%s'%s", from, hashes["admin"], l.requireSSL()),
		"GRANT ALL PRIVILEGES ON *.* TO 'admin'@" + from + " WITH GRANT OPTION",
		fmt.Sprintf("CREATE USER 'repl'@%s IDENTIFIED BY PASSWORD '%s'%s", from, hashes["repl"], l.requireSSL()),
		"GRANT REPLICATION SLAVE ON *.* TO 'repl'@" + from,
		fmt.Sprintf("CREATE USER 'dbha'@%s IDENTIFIED BY PASSWORD '%s'%s", from, hashes["dbha"], l.requireSSL()),
		mariadbDBHAGrant + from,
		"CREATE DATABASE dbha_lab",
		// app is what an application has: its own database and nothing
		// global, so read_only (a fence) stops it, as it does not stop admin.
		fmt.Sprintf("CREATE USER 'app'@%s IDENTIFIED BY PASSWORD '%s'%s", from, hashes["app"], l.requireSSL()),
		"GRANT ALL PRIVILEGES ON dbha_lab.* TO 'app'@" + from,
		"CREATE TABLE dbha_lab.heartbeat (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
	}
	db := rootMySQL(primary)
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s, 4), err)
		}
	}
	return nil
}

// mariadbExec runs statements on a node as root, through its socket.
func (l *Lab) mariadbExec(ctx context.Context, n Node, stmts ...string) error {
	n, err := l.Node(n.Name)
	if err != nil {
		return err
	}
	db := rootMySQL(n)
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s, 4), err)
		}
	}
	return nil
}

// sqlClientHosts is the host part of the lab's SQL accounts: 127.0.0.1, or the hosts lab's
// subnet as a pattern ("198.18.3.%").
func (l *Lab) sqlClientHosts() string {
	if l.Net == nil {
		return labHost
	}
	return strings.TrimSuffix(l.Net.Subnet(), "0/24") + "%"
}

// nativePasswordHash is the mysql_native_password hash: "*" + hex(SHA1(SHA1(password))).
func nativePasswordHash(pw string) string {
	a := sha1.Sum([]byte(pw))
	b := sha1.Sum(a[:])
	return "*" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// startMariaDBReplica points a replica at the primary with GTID and waits until both
// replication threads run and it has applied everything the primary has logged.
func (l *Lab) startMariaDBReplica(ctx context.Context, replica, primary Node) error {
	pw, err := readPassword(l.Secret("mariadb-repl"))
	if err != nil {
		return err
	}
	// CHANGE MASTER takes no placeholders; the statement carries the password and is never
	// logged or put in an error.
	change := fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='repl', MASTER_PASSWORD='%s', "+
		"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=%.3f%s",
		primary.Host, primary.Port, pw, checks.DefaultPolicy().Heartbeat.Seconds(), l.masterSSL())
	db := rootMySQL(replica)
	defer db.Close()
	if _, err := db.ExecContext(ctx, change); err != nil {
		// A syntax error quotes the statement: keep the password out of the message.
		return fmt.Errorf("CHANGE MASTER on %s: %s", replica.Name, strings.ReplaceAll(err.Error(), pw, "<password>"))
	}
	if _, err := db.ExecContext(ctx, "START SLAVE"); err != nil {
		return fmt.Errorf("START SLAVE on %s: %w", replica.Name, err)
	}
	pdb := rootMySQL(primary)
	defer pdb.Close()
	var target string
	if err := pdb.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos").Scan(&target); err != nil {
		return fmt.Errorf("read gtid_binlog_pos of %s: %w", primary.Name, err)
	}
	what := fmt.Sprintf("replication from %s to reach GTID %s", primary.Name, target)
	return waitReady(ctx, replica, what, func(ctx context.Context) error { return replicaCaughtUp(ctx, db, target) })
}

// replicaCaughtUp succeeds when both replication threads run and the replica has applied
// target.
func replicaCaughtUp(ctx context.Context, db *sql.DB, target string) error {
	st, err := slaveStatus(ctx, db)
	if err != nil {
		return err
	}
	if st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes" {
		return fmt.Errorf("Slave_IO_Running=%s Slave_SQL_Running=%s Last_IO_Error=%q Last_SQL_Error=%q",
			st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
	}
	var waited int
	if err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 0.5)", target).Scan(&waited); err != nil {
		return fmt.Errorf("MASTER_GTID_WAIT: %w", err)
	}
	if waited != 0 {
		return fmt.Errorf("gtid_slave_pos %s has not reached %s", st["Gtid_Slave_Pos"], target)
	}
	return nil
}

// slaveStatus returns SHOW SLAVE STATUS as column → value.
func slaveStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("SHOW SLAVE STATUS: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, errors.Join(errors.New("SHOW SLAVE STATUS: no replication configured"), rows.Err())
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("SHOW SLAVE STATUS: %w", err)
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st, nil
}

// AdminMySQL opens an admin connection (all privileges) to a MariaDB node over TCP. The
// handle is lazy: the first query connects.
func (l *Lab) AdminMySQL(name string) (*sql.DB, error) {
	n, err := l.Node(name)
	if err != nil {
		return nil, err
	}
	if n.Kind != KindMariaDB {
		return nil, fmt.Errorf("admin MySQL connection: %s is a %s node", name, n.Kind)
	}
	pw, err := readPassword(l.Secret("mariadb-admin"))
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = "admin", pw, "tcp", n.Addr()
	cfg.Timeout, cfg.ParseTime = probeTimeout, true
	if cfg.TLS, err = l.clusterTLS().For(n.Addr()); err != nil {
		return nil, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("admin MySQL connection to %s: %w", name, err)
	}
	return sql.OpenDB(connector), nil
}

// firstWords names a statement in an error without its literals.
func firstWords(s string, n int) string {
	w := strings.Fields(s)
	if len(w) > n {
		w = w[:n]
	}
	return strings.Join(w, " ")
}
