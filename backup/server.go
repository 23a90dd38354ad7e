package backup

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbha/dbha/topology"
)

// Owner is the operating-system account a restored data directory belongs
// to and a throwaway server runs as. Database servers refuse to run as
// root, so when dbha runs as root it hands both to this account (by
// default the one the distribution's packages create: postgres, mysql);
// otherwise everything stays dbha's own.
type Owner struct {
	Name     string
	UID, GID int
}

// DefaultOwner names the account a root dbha hands servers of engine to.
func DefaultOwner(engine topology.Engine) string {
	if engine == topology.Postgres {
		return "postgres"
	}
	return "mysql"
}

// LookupOwner resolves name; when dbha does not run as root it returns
// dbha's own account whatever name is, as it could not hand files over.
func LookupOwner(name string) (Owner, error) {
	if os.Geteuid() != 0 {
		return Owner{Name: "self", UID: os.Geteuid(), GID: os.Getegid()}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return Owner{}, fmt.Errorf("the account throwaway servers run as (backup.run_as): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Owner{Name: name, UID: uid, GID: gid}, nil
}

// Chown hands dir and everything below it to the owner.
func (o Owner) Chown(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, o.UID, o.GID)
	})
}

// CanEnter checks that the owner may reach dir: a server running as the
// owner must traverse every directory above its data directory.
func (o Owner) CanEnter(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // made later, open to all (emptyDir)
		}
		if err != nil {
			return err
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		ok := mode&0o001 != 0 || (sys != nil && int(sys.Uid) == o.UID && mode&0o100 != 0) ||
			(sys != nil && int(sys.Gid) == o.GID && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("%s (mode %v) cannot be entered by %s, the account the server runs as: choose a directory it can reach, or set backup.run_as", p, mode, o.Name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (o Owner) credential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID)}
}

// Server is a throwaway database server on a restored data directory: it
// listens on a free loopback port only, keeps its socket, log and any
// credentials in a private runtime directory, and is stopped by Stop.
// dbha checks backups and replays binlogs and WAL through it.
type Server struct {
	Engine topology.Engine
	Dir    string // the data directory
	Addr   string // 127.0.0.1:port
	run    string // the private runtime directory
	cmd    *exec.Cmd
	exited chan struct{}
	// MariaDB: a temporary account with every privilege, created at start
	// by an init file, with a random password.
	user, password string
	// PostgreSQL: the bootstrap superuser, reached through the socket.
	superuser string
}

// ServerOptions start a throwaway server.
type ServerOptions struct {
	Owner Owner
	// Settings are extra server settings (PostgreSQL -c name=value).
	Settings map[string]string
	// Roles are PostgreSQL role names to try for the first connection
	// (the bootstrap superuser is then found from it); "postgres" is tried
	// first.
	Roles []string
	// Until bounds how long the server may take to open (crash recovery,
	// replay); default 10 minutes.
	Until time.Duration
}

// StartServer starts a throwaway server of engine on the data directory
// dir, on a free loopback port, and waits until it accepts connections.
func StartServer(ctx context.Context, engine topology.Engine, dir string, o ServerOptions) (*Server, error) {
	run, err := os.MkdirTemp("", "dbha-server-")
	if err != nil {
		return nil, err
	}
	s := &Server{Engine: engine, Dir: dir, run: run, exited: make(chan struct{})}
	if err := o.Owner.Chown(run); err != nil {
		os.RemoveAll(run)
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(run)
		return nil, err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if engine == topology.Postgres {
		s.cmd, err = s.postgresCommand(port, o)
	} else {
		s.cmd, err = s.mariadbCommand(port, o)
	}
	if err != nil {
		os.RemoveAll(run)
		return nil, err
	}
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.RemoveAll(run)
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Owner.credential(), Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(run)
		return nil, fmt.Errorf("start a throwaway server on %s: %w", dir, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	until := o.Until
	if until == 0 {
		until = 10 * time.Minute
	}
	if err := s.waitOpen(ctx, until, o.Roles); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) logPath() string { return filepath.Join(s.run, "server.log") }

// Log is what the server's log says went wrong (its errors, else its last
// lines), for error messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var errs []string
	for _, l := range lines {
		if strings.Contains(l, "FATAL") || strings.Contains(l, "PANIC") || strings.Contains(l, "[ERROR]") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs[max(0, len(errs)-3):], "; ")
	}
	return strings.Join(lines[max(0, len(lines)-3):], "; ")
}

func (s *Server) postgresCommand(port int, o ServerOptions) (*exec.Cmd, error) {
	bin, err := toolPath("postgres")
	if err != nil {
		return nil, err
	}
	// Trust only on the private socket (its directory is the owner's,
	// mode 0700); on the loopback port the backup's own accounts and
	// passwords apply.
	hba := "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	hbaPath := filepath.Join(s.run, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return nil, err
	}
	if err := o.Owner.Chown(hbaPath); err != nil {
		return nil, err
	}
	settings := map[string]string{
		"port": strconv.Itoa(port), "listen_addresses": "127.0.0.1", "unix_socket_directories": s.run,
		"hba_file": hbaPath, "logging_collector": "off", "archive_mode": "off", "hot_standby": "on",
		"synchronous_standby_names": "", "primary_conninfo": "", "primary_slot_name": "",
		"shared_preload_libraries": "",
		// The copy's ssl settings name the source's certificate files:
		// on its host, readable by its server's user, not this one's. A
		// throwaway server is reached by this process alone, on its socket.
		"ssl": "off",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	if err := s.ownConfiguration(settings, o.Owner); err != nil {
		return nil, err
	}
	args := []string{"-D", s.Dir}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	return exec.Command(bin, args...), nil
}

// recoveryParams are the settings a server in recovery needs at least as
// high as the primary that wrote the WAL had them; pg_controldata reports
// those values.
var recoveryParams = map[string]string{
	"max_connections setting":      "max_connections",
	"max_worker_processes setting": "max_worker_processes",
	"max_wal_senders setting":      "max_wal_senders",
	"max_prepared_xacts setting":   "max_prepared_transactions",
	"max_locks_per_xact setting":   "max_locks_per_transaction",
}

// ownConfiguration handles a copy without its configuration files: a
// cluster laid out as Debian and Ubuntu do keeps them in
// /etc/postgresql/<version>/<name>, which no backup holds (and whose
// data_directory names the live cluster, so it is never read). The
// throwaway server then gets an empty postgresql.conf of its own (beside
// its private pg_hba.conf) and, from the copy's pg_control, the settings
// recovery needs at least as high as the primary had them.
func (s *Server) ownConfiguration(settings map[string]string, owner Owner) error {
	if _, err := os.Stat(filepath.Join(s.Dir, "postgresql.conf")); err == nil {
		return nil
	}
	conf := filepath.Join(s.run, "postgresql.conf")
	ident := filepath.Join(s.run, "pg_ident.conf")
	for _, f := range []string{conf, ident} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			return err
		}
		if err := owner.Chown(f); err != nil {
			return err
		}
	}
	settings["config_file"], settings["ident_file"], settings["data_directory"] = conf, ident, s.Dir
	bin, err := toolPath("pg_controldata")
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, s.Dir).Output()
	if err != nil {
		return fmt.Errorf("pg_controldata %s: %w", s.Dir, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if setting, known := recoveryParams[strings.TrimSpace(name)]; ok && known {
			if _, set := settings[setting]; !set {
				settings[setting] = strings.TrimSpace(value)
			}
		}
	}
	return nil
}

func (s *Server) mariadbCommand(port int, o ServerOptions) (*exec.Cmd, error) {
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/mariadbd"); err != nil {
			return nil, fmt.Errorf("mariadbd not found: install mariadb-server (make deps)")
		}
	}
	b := make([]byte, 16)
	rand.Read(b)
	s.user, s.password = "dbha_scratch", hex.EncodeToString(b)
	initSQL := fmt.Sprintf("CREATE OR REPLACE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s';\nGRANT ALL PRIVILEGES ON *.* TO '%s'@'127.0.0.1';\n",
		s.user, s.password, s.user)
	initPath := filepath.Join(s.run, "init.sql")
	if err := os.WriteFile(initPath, []byte(initSQL), 0o600); err != nil {
		return nil, err
	}
	if err := o.Owner.Chown(initPath); err != nil {
		return nil, err
	}
	// backup-my.cnf (written by mariadb-backup) carries the InnoDB
	// settings the files were made with (page size, undo tablespaces).
	defaults := "--no-defaults"
	if _, err := os.Stat(filepath.Join(s.Dir, "backup-my.cnf")); err == nil {
		defaults = "--defaults-file=" + filepath.Join(s.Dir, "backup-my.cnf")
	}
	args := []string{defaults, "--datadir=" + s.Dir, "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(s.run, "mysqld.sock"), "--pid-file=" + filepath.Join(s.run, "mysqld.pid"),
		"--init-file=" + initPath, "--skip-slave-start", "--skip-name-resolve", "--server-id=4294967295",
		"--log-bin=" + filepath.Join(s.run, "scratch-bin"), "--log-error=" + s.logPath(),
		"--innodb-buffer-pool-size=128M"}
	for k, v := range o.Settings {
		args = append(args, "--"+k+"="+v)
	}
	return exec.Command(bin, args...), nil
}

// waitOpen waits until the server answers, or has exited, or until.
func (s *Server) waitOpen(ctx context.Context, until time.Duration, roles []string) error {
	ctx, cancel := context.WithTimeout(ctx, until)
	defer cancel()
	var last error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the throwaway server on %s stopped while opening: %s", s.Dir, s.Log())
		default:
		}
		if last = s.connectOnce(ctx, roles); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the throwaway server on %s did not open within %v: %v; log: %s", s.Dir, until, last, s.Log())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) connectOnce(ctx context.Context, roles []string) error {
	if s.Engine != topology.Postgres {
		db, err := s.DB("")
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	}
	var last error
	for _, role := range append([]string{"postgres"}, roles...) {
		c, err := pgx.Connect(ctx, s.conninfo(role, "postgres"))
		if err != nil {
			last = err
			continue
		}
		defer c.Close(ctx)
		return c.QueryRow(ctx, "SELECT rolname FROM pg_roles WHERE oid = 10").Scan(&s.superuser)
	}
	return last
}

func (s *Server) conninfo(role, database string) string {
	port := s.Addr[strings.LastIndex(s.Addr, ":")+1:]
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=5", s.run, port, role, database)
}

// DB opens a connection pool to database on the server with every
// privilege (MariaDB: the temporary account over the loopback port;
// PostgreSQL: the bootstrap superuser over the private socket).
func (s *Server) DB(database string) (*sql.DB, error) {
	if s.Engine == topology.Postgres {
		if database == "" {
			database = "postgres"
		}
		cfg, err := pgx.ParseConfig(s.conninfo(s.superuser, database))
		if err != nil {
			return nil, err
		}
		return stdlib.OpenDB(*cfg), nil
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = s.user, s.password, "tcp", s.Addr, database
	cfg.Timeout = 5 * time.Second
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Account is the MariaDB temporary account and its password, for tools
// that replay into the server.
func (s *Server) Account() (user, password string) { return s.user, s.password }

// Stop shuts the server down cleanly (PostgreSQL fast shutdown, MariaDB
// SIGTERM), killing it after a bound, and removes its runtime directory.
func (s *Server) Stop() error {
	defer os.RemoveAll(s.run)
	select {
	case <-s.exited:
		return nil
	default:
	}
	sig := syscall.SIGTERM
	if s.Engine == topology.Postgres {
		sig = syscall.SIGINT
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return nil
	case <-time.After(5 * time.Minute):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
		return errors.New("the throwaway server did not stop within 5 minutes and was killed")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
