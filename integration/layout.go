package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Directory layout of a lab:
//
//	DIR/lab.json              nodes, ports, PIDs (rewritten atomically)
//	DIR/dbha.yaml             ready dbha config (0600)
//	DIR/secrets/<name>.pw     generated passwords (0600, dir 0700)
//	DIR/state/                dbha's state_dir
//	DIR/logs/<node>.log       each server's stdout and stderr, and its setup tools' output
//	DIR/<node>/               node directory, owned by the lab user (0700)
//	DIR/<node>/data/          data directory
//
// Unix sockets live in the node directory, or under SocketRoot when DIR is too long.

// secretNames are the passwords a lab generates. "postgres-superuser" is the password of the
// PostgreSQL superuser "postgres"; "mariadb-admin" that of the MariaDB user "admin".
var secretNames = []string{
	"mariadb-admin", "mariadb-repl", "mariadb-dbha", "mariadb-app",
	"postgres-superuser", "postgres-repl", "postgres-dbha",
}

// maxSocketPath bounds the longest unix socket path a node gets, below the 108-byte sun_path.
const maxSocketPath = 100

// create lays out a new lab in the empty directory dir and records it in lab.json. It starts
// nothing.
func create(ctx context.Context, dir string, progress io.Writer) (*Lab, error) {
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	if err := requireBinaries(); err != nil {
		return nil, err
	}
	u, err := resolveLabUser(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkTraversable(dir, u); err != nil {
		return nil, err
	}
	l := &Lab{Dir: dir, ConfigPath: filepath.Join(dir, "dbha.yaml"), User: u, SocketRoot: dir, progress: progress}
	if err := l.chooseSocketRoot(); err != nil {
		return nil, err
	}
	for _, d := range []string{"secrets", "state", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create logs: %w", err)
	}
	if err := l.writeSecrets(); err != nil {
		return nil, err
	}
	if err := l.planNodes(); err != nil {
		return nil, err
	}
	l.progressf("lab: building in %s; database servers run as user %s", dir, u.Name)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l, l.saveLocked()
}

// checkEmpty refuses a directory that already holds something other than our lock file, so
// `up` never builds a lab over unrelated files.
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read lab directory: %w", err)
	}
	for _, e := range entries {
		if e.Name() != "lab.lock" {
			return fmt.Errorf("lab directory %s is not empty and holds no lab.json: use an empty or new directory", dir)
		}
	}
	return nil
}

// chooseSocketRoot moves the sockets to a short directory under /tmp when DIR is too long for
// the longest socket path (PostgreSQL's lock file next to its socket).
func (l *Lab) chooseSocketRoot() error {
	longest := len(filepath.Join(l.Dir, "postgres-1", ".s.PGSQL.65535.lock"))
	if longest <= maxSocketPath {
		return nil
	}
	root, err := os.MkdirTemp("/tmp", "dbhalab-")
	if err != nil {
		return fmt.Errorf("create short socket directory: %w", err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("create short socket directory: %w", err)
	}
	l.SocketRoot = root
	l.progressf("lab: %s is too long for unix socket paths; sockets go to %s", l.Dir, root)
	return nil
}

// writeSecrets generates every password, mode 0600, readable only by the invoking user.
func (l *Lab) writeSecrets() error {
	for _, name := range secretNames {
		pw, err := newPassword()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(l.Secret(name), []byte(pw+"\n"), 0o600); err != nil {
			return fmt.Errorf("write secret %s: %w", name, err)
		}
	}
	return nil
}

// planNodes picks ports, names and directories for all seven nodes and creates their
// directories.
func (l *Lab) planNodes() error {
	ports, err := freePorts(11)
	if err != nil {
		return err
	}
	for i, name := range []string{"mariadb-1", "mariadb-2", "mariadb-3", "postgres-1", "postgres-2", "postgres-3"} {
		kind := KindMariaDB
		socket := filepath.Join(l.SocketRoot, name, "mysqld.sock")
		if i >= 3 {
			kind, socket = KindPostgres, filepath.Join(l.SocketRoot, name)
		}
		n := l.newNode(name, kind, ports[i])
		n.Socket = socket
		socketDir := socket
		if kind == KindMariaDB {
			socketDir = filepath.Dir(socket)
		}
		if err := l.mkdirLab(filepath.Dir(n.DataDir)); err != nil {
			return err
		}
		if err := l.mkdirLab(socketDir); err != nil {
			return err
		}
		l.Nodes = append(l.Nodes, n)
	}
	l.Consul = ConsulPorts{HTTP: ports[6], DNS: ports[7], SerfLAN: ports[8], SerfWAN: ports[9], Server: ports[10]}
	l.ConsulHTTP = net.JoinHostPort(labHost, strconv.Itoa(l.Consul.HTTP))
	l.ConsulDNS = net.JoinHostPort(labHost, strconv.Itoa(l.Consul.DNS))
	consul := l.newNode("consul", KindConsul, l.Consul.HTTP)
	if err := os.MkdirAll(consul.DataDir, 0o700); err != nil {
		return fmt.Errorf("create consul data directory: %w", err)
	}
	l.Nodes = append(l.Nodes, consul)
	return nil
}

func (l *Lab) newNode(name, kind string, port int) Node {
	return Node{
		Name:    name,
		Kind:    kind,
		Host:    labHost,
		Port:    port,
		DataDir: filepath.Join(l.Dir, name, "data"),
		LogFile: filepath.Join(l.Dir, "logs", name+".log"),
	}
}

// writeConfig writes DIR/dbha.yaml for the lab's two clusters and Consul, in dbha's config
// format (which rejects unknown keys, so only these keys appear).
func (l *Lab) writeConfig() error {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\n", yamlScalar(filepath.Join(l.Dir, "state")))
	fmt.Fprintf(&b, "consul:\n  address: %s\n  dns: %s\n", yamlScalar(l.ConsulHTTP), yamlScalar(l.ConsulDNS))
	b.WriteString("clusters:\n")
	for _, c := range []struct{ name, kind string }{{mariadbCluster, KindMariaDB}, {postgresCluster, KindPostgres}} {
		var addrs []string
		for _, n := range l.nodesOfKind(c.kind) {
			addrs = append(addrs, strconv.Quote(n.Addr()))
		}
		fmt.Fprintf(&b, "  - name: %s\n", c.name)
		fmt.Fprintf(&b, "    engine: %s\n", c.kind)
		fmt.Fprintf(&b, "    instances: [%s]\n", strings.Join(addrs, ", "))
		fmt.Fprintf(&b, "    user: dbha\n")
		fmt.Fprintf(&b, "    password_file: %s\n", yamlScalar(l.Secret(c.kind+"-dbha")))
		fmt.Fprintf(&b, "    replication:\n")
		fmt.Fprintf(&b, "      user: repl\n")
		fmt.Fprintf(&b, "      password_file: %s\n", yamlScalar(l.Secret(c.kind+"-repl")))
		l.writeDrillConfig(&b, c.kind)
	}
	if err := writeFileAtomic(l.ConfigPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write dbha config: %w", err)
	}
	return nil
}

// writeDrillConfig gives `dbha drill` the lab's administrator to write
// rows with (the lab itself kills and restarts nodes), and a PostgreSQL
// cluster a rejoin_command through this lab, when the dbha binary is known.
func (l *Lab) writeDrillConfig(b *strings.Builder, kind string) {
	// The drill writes as an application would: MariaDB's "app" has no
	// global privilege, so a fenced (read-only) server refuses it.
	user, secret := "app", "mariadb-app"
	if kind == KindMariaDB {
		// Replaying DDL that only dbha's store holds needs its privileges.
		fmt.Fprintf(b, "    promotion:\n      apply:\n        user: admin\n        password_file: %s\n", yamlScalar(l.Secret("mariadb-admin")))
		// mariadb-backup needs RELOAD, LOCK TABLES and the like.
		fmt.Fprintf(b, "    backup:\n      user: admin\n      password_file: %s\n", yamlScalar(l.Secret("mariadb-admin")))
	}
	if l.Lossless {
		ack := map[string]string{KindMariaDB: "semi_sync", KindPostgres: "synchronous"}[kind]
		fmt.Fprintf(b, "    stream:\n      %s: true\n", ack)
	}
	if kind == KindPostgres {
		user, secret = "postgres", "postgres-superuser"
		if l.Binary != "" {
			fmt.Fprintf(b, "    promotion:\n      rejoin_command: [%s, lab, rejoin, --dir, %s, \"{instance}\", --primary, \"{primary}\"]\n",
				yamlScalar(l.Binary), yamlScalar(l.Dir))
		}
	}
	fmt.Fprintf(b, "    drill:\n      user: %s\n      password_file: %s\n      database: dbha_lab\n", user, yamlScalar(l.Secret(secret)))
}

var yamlPlain = regexp.MustCompile(`^[A-Za-z0-9_./@-][A-Za-z0-9_./:@-]*$`)

// yamlScalar writes s bare when YAML reads it back unchanged, double-quoted otherwise.
func yamlScalar(s string) string {
	if yamlPlain.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
