package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dbha/dbha/config"
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
//	DIR/manager-i.yaml        hosts lab: manager-i's config (its own Consul server, state, stream)
//	DIR/manager-i/state/      hosts lab: manager-i's state_dir
//	DIR/tls/                  TLS lab: the CA and certificates (0700, files 0600; see consul_tls.go)
//
// Unix sockets live in the node directory, or under SocketRoot when DIR is too long.

// secretNames are the passwords a lab generates. "postgres-superuser" is the password of the
// PostgreSQL superuser "postgres"; "mariadb-admin" that of the MariaDB user "admin".
var secretNames = []string{
	"mariadb-admin", "mariadb-repl", "mariadb-dbha", "mariadb-app",
	"postgres-superuser", "postgres-repl", "postgres-dbha",
}

// The console's tokens in a lab with a console (Options.Console).
const (
	ConsoleOperatorSecret = "console-operator"
	ConsoleViewerSecret   = "console-viewer"
)

// maxSocketPath bounds the longest unix socket path a node gets, below the 108-byte sun_path.
const maxSocketPath = 100

// create lays out a new lab in the empty directory dir and records it in lab.json. It starts
// nothing; for a hosts lab it claims the network and creates its bridge. When it fails after
// lab.json was first written, it returns the lab with the error, for `abort` to undo.
func create(ctx context.Context, dir string, o Options) (*Lab, error) {
	if err := checkEmpty(dir); err != nil {
		return nil, err
	}
	if err := requireBinaries(); err != nil {
		return nil, err
	}
	if o.Hosts {
		if err := checkNetFree(ctx); err != nil { // before anything is written
			return nil, err
		}
	}
	u, err := resolveLabUser(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkTraversable(dir, u); err != nil {
		return nil, err
	}
	l := &Lab{Dir: dir, ConfigPath: filepath.Join(dir, "dbha.yaml"), User: u, SocketRoot: dir, progress: o.Progress,
		Binary: o.Binary, Lossless: o.Lossless, Witness: o.Witness, Console: o.Console, TLS: o.TLS}
	if o.Hosts {
		l.Managers, l.Guards, l.VIP = o.Managers, o.Guards, o.VIP
	}
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
	if o.Hosts {
		// lab.json exists from here on, naming the network before any of it is created.
		if err := l.claimNet(ctx, l.hostNames()); err != nil {
			return l, err
		}
		if err := l.planHostNodes(); err != nil {
			return l, err
		}
	} else if err := l.planNodes(); err != nil {
		return nil, err
	}
	if err := l.makeConsulTLS(); err != nil {
		return l, err
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
	names := secretNames
	if l.Managers > 0 {
		names = append(slices.Clip(names), managerTokenSecret)
	}
	if l.Console != "" {
		names = append(slices.Clip(names), ConsoleOperatorSecret, ConsoleViewerSecret)
	}
	for _, name := range names {
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
	for i, name := range databaseNodes {
		if err := l.addDatabaseNode(name, labHost, ports[i], ""); err != nil {
			return err
		}
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

// databaseNodes are the database servers of every lab: a node, and in a hosts lab a host, each.
var databaseNodes = []string{"mariadb-1", "mariadb-2", "mariadb-3", "postgres-1", "postgres-2", "postgres-3"}

// addDatabaseNode plans one database server and creates its directories.
func (l *Lab) addDatabaseNode(name, host string, port int, labHostName string) error {
	kind := KindMariaDB
	socket := filepath.Join(l.SocketRoot, name, "mysqld.sock")
	socketDir := filepath.Dir(socket)
	if strings.HasPrefix(name, KindPostgres) {
		kind, socket = KindPostgres, filepath.Join(l.SocketRoot, name)
		socketDir = socket
	}
	n := l.newNode(name, kind, port)
	n.Host, n.Socket, n.LabHost = host, socket, labHostName
	if err := l.mkdirLab(filepath.Dir(n.DataDir)); err != nil {
		return err
	}
	if err := l.mkdirLab(socketDir); err != nil {
		return err
	}
	l.Nodes = append(l.Nodes, n)
	return nil
}

// The ports of a hosts lab: each host has an address of its own, so every server keeps its
// usual port.
const (
	hostMariaDBPort  = 3306
	hostPostgresPort = 5432
	hostManagerPort  = 7070 // a manager's HTTP API (/healthz)
)

var hostConsulPorts = ConsulPorts{HTTP: 8500, DNS: 8600, SerfLAN: 8301, SerfWAN: 8302, Server: 8300}

// hostNames lists the hosts of a hosts lab: one per database server, then the manager hosts.
func (l *Lab) hostNames() []string {
	names := slices.Clone(databaseNodes)
	for i := 1; i <= l.Managers; i++ {
		names = append(names, fmt.Sprintf("%s-%d", KindManager, i))
	}
	return names
}

// planHostNodes plans the nodes of a hosts lab on the addresses of l.Net: a database server
// per database host; a Consul server (consul-i) and a manager (manager-i) per manager host.
func (l *Lab) planHostNodes() error {
	for _, name := range databaseNodes {
		h, _ := l.Net.host(name)
		port := hostMariaDBPort
		if strings.HasPrefix(name, KindPostgres) {
			port = hostPostgresPort
		}
		if err := l.addDatabaseNode(name, h.Addr, port, h.Name); err != nil {
			return err
		}
	}
	l.Consul = hostConsulPorts
	if l.TLS {
		l.Consul.HTTP = hostConsulHTTPSPort
	}
	for i := 1; i <= l.Managers; i++ {
		h, _ := l.Net.host(fmt.Sprintf("%s-%d", KindManager, i))
		consul := l.newNode(fmt.Sprintf("%s-%d", KindConsul, i), KindConsul, l.Consul.HTTP)
		consul.Host, consul.LabHost = h.Addr, h.Name
		if err := os.MkdirAll(consul.DataDir, 0o700); err != nil {
			return fmt.Errorf("create %s data directory: %w", consul.Name, err)
		}
		m := l.newNode(h.Name, KindManager, hostManagerPort)
		m.Host, m.LabHost = h.Addr, h.Name
		m.DataDir = filepath.Join(l.Dir, h.Name, "state")
		m.Marker = l.managerConfigPath(m)
		if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
			return fmt.Errorf("create %s state directory: %w", m.Name, err)
		}
		l.Nodes = append(l.Nodes, consul, m)
		if i == 1 {
			l.ConsulHTTP = consul.Addr()
			l.ConsulDNS = net.JoinHostPort(consul.Host, strconv.Itoa(l.Consul.DNS))
		}
	}
	if l.Guards {
		return l.planGuards()
	}
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

// configFile is what differs between the lab's config files: the operator's DIR/dbha.yaml
// and, in a hosts lab, each manager's DIR/manager-i.yaml.
type configFile struct {
	path       string
	stateDir   string
	consulHTTP string
	consulDNS  string
	// manager is i for manager-i's file, 0 for the operator's. A manager has a name of its
	// own, an HTTP endpoint, and a change stream of its own (server_id, slot), since every
	// manager streams each cluster at once.
	manager    int
	httpListen string
}

// writeConfig writes DIR/dbha.yaml for the lab's two clusters and Consul and, in a hosts
// lab, each manager's config (its own Consul server, state and stream).
func (l *Lab) writeConfig() error {
	files := []configFile{{path: l.ConfigPath, stateDir: filepath.Join(l.Dir, "state"), consulHTTP: l.ConsulHTTP, consulDNS: l.ConsulDNS}}
	for i, m := range l.nodesOfKind(KindManager) {
		files = append(files, configFile{
			path:       l.managerConfigPath(m),
			stateDir:   m.DataDir,
			consulHTTP: net.JoinHostPort(m.Host, strconv.Itoa(l.Consul.HTTP)),
			consulDNS:  net.JoinHostPort(m.Host, strconv.Itoa(l.Consul.DNS)),
			manager:    i + 1,
			httpListen: m.Addr(),
		})
	}
	for _, f := range files {
		if err := writeFileAtomic(f.path, []byte(l.configText(f)), 0o600); err != nil {
			return fmt.Errorf("write dbha config: %w", err)
		}
	}
	return l.writeGuardConfigs(l.configText(files[0]))
}

// configText is one config file, in dbha's config format (which rejects unknown keys, so
// only these keys appear).
func (l *Lab) configText(f configFile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir: %s\n", yamlScalar(f.stateDir))
	fmt.Fprintf(&b, "consul:\n  address: %s\n  dns: %s\n", yamlScalar(f.consulHTTP), yamlScalar(f.consulDNS))
	b.WriteString(l.consulTLSConfigText())
	if l.Net != nil {
		// A lab of hosts is a LAN: a server that has not answered a probe in
		// 300 ms is as good as gone (one answers in a few milliseconds), and
		// each probe cycle of a vanished primary lasts this long: it is how
		// late detection may see a link's silence (docs/faults.md states it).
		b.WriteString("probe:\n  timeout: 300ms\n")
	}
	if f.manager > 0 {
		fmt.Fprintf(&b, "manager:\n  name: %s-%d\n", KindManager, f.manager)
		if l.Managers > 1 {
			// Every manager votes on a lost primary, whether it answers or not.
			b.WriteString("  members:\n")
			for i := 1; i <= l.Managers; i++ {
				fmt.Fprintf(&b, "    - %s-%d\n", KindManager, i)
			}
		}
		fmt.Fprintf(&b, "http:\n  listen: %s\n  token_file: %s\n", yamlScalar(f.httpListen), yamlScalar(l.Secret(managerTokenSecret)))
	}
	console := f.manager == 0 && l.Console != ""
	if console {
		fmt.Fprintf(&b, "http:\n  listen: %s\n  token_file: %s\n  viewer_token_file: %s\n", yamlScalar(l.Console),
			yamlScalar(l.Secret(ConsoleOperatorSecret)), yamlScalar(l.Secret(ConsoleViewerSecret)))
	}
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
		b.WriteString(l.clusterTLSConfigText())
		if l.Witness {
			fmt.Fprintf(&b, "    check_command: [%s]\n", labWitness)
		}
		if v := l.VIPAddr(c.name); v != "" {
			fmt.Fprintf(&b, "    vip:\n      address: %s/24\n", v)
		}
		l.writeStreamConfig(&b, c.name, c.kind, f.manager)
		schedule := ""
		if console {
			schedule = "0 3 * * *" // nightly, so that the console offers a backup now
		}
		l.writeDrillConfig(&b, c.kind, schedule)
	}
	return b.String()
}

// labWitness is the lab's check_command (Options.Witness): bash opens a TCP connection to
// the primary dbha names in DBHA_PRIMARY; exit 0, it is alive. A killed server refuses at
// once; check.external_timeout bounds a silent one.
const labWitness = `bash, -c, 'exec 3<>"/dev/tcp/${DBHA_PRIMARY%:*}/${DBHA_PRIMARY##*:}"'`

// writeStreamConfig writes a cluster's stream block: in a lossless lab, the stream
// acknowledges commits; a manager's stream has a server_id (MariaDB) or a slot (PostgreSQL)
// of its own, apart from the operator's default.
func (l *Lab) writeStreamConfig(b *strings.Builder, cluster, kind string, manager int) {
	var lines []string
	if l.Lossless {
		ack := map[string]string{KindMariaDB: "semi_sync", KindPostgres: "synchronous"}[kind]
		lines = append(lines, ack+": true")
	}
	if manager > 0 && kind == KindMariaDB {
		lines = append(lines, fmt.Sprintf("server_id: %d", config.DerivedServerID(cluster)+uint32(manager)))
	}
	if manager > 0 && kind == KindPostgres {
		lines = append(lines, fmt.Sprintf("slot: dbha_%s_%d", KindManager, manager))
	}
	if len(lines) > 0 {
		fmt.Fprintf(b, "    stream:\n      %s\n", strings.Join(lines, "\n      "))
	}
}

// VIPAddr is the writer address of a cluster of a lab with VIP (Options.VIP), "" without.
func (l *Lab) VIPAddr(cluster string) string {
	if !l.VIP || l.Net == nil {
		return ""
	}
	octet := map[string]int{mariadbCluster: 250, postgresCluster: 251}[cluster]
	if octet == 0 {
		return ""
	}
	return subnetAddr(l.Net.Index, octet)
}

// listenAddr is the address a database server listens on: its own, or every address of its
// host when a writer address may come onto it (VIP).
func (l *Lab) listenAddr(n Node) string {
	if l.VIP {
		if n.Kind == KindPostgres {
			return "*"
		}
		return "0.0.0.0"
	}
	return n.Host
}

// writeDrillConfig gives `dbha drill` the lab's administrator to write
// rows with (the lab itself kills and restarts nodes), a PostgreSQL
// cluster a rejoin_command through this lab, when the dbha binary is known,
// the backup account, and backupSchedule as backup.schedule ("" for none).
func (l *Lab) writeDrillConfig(b *strings.Builder, kind, backupSchedule string) {
	// The drill writes as an application would: MariaDB's "app" has no
	// global privilege, so a fenced (read-only) server refuses it.
	user, secret := "app", "mariadb-app"
	lease := ""
	if l.Guards {
		lease = fmt.Sprintf("      lease_ttl: %v\n", guardLeaseTTL)
	}
	if kind == KindMariaDB {
		// Replaying DDL that only dbha's store holds needs its privileges.
		fmt.Fprintf(b, "    promotion:\n%s      apply:\n        user: admin\n        password_file: %s\n", lease, yamlScalar(l.Secret("mariadb-admin")))
		// mariadb-backup needs RELOAD, LOCK TABLES and the like.
		fmt.Fprintf(b, "    backup:\n      user: admin\n      password_file: %s\n", yamlScalar(l.Secret("mariadb-admin")))
		if l.Net != nil && l.Binary != "" {
			// It runs on the host of the server it copies, which the lab
			// reaches as ssh would.
			fmt.Fprintf(b, "      remote_command: [%s, lab, on-host, --dir, %s, \"{host}\"]\n", yamlScalar(l.Binary), yamlScalar(l.Dir))
		}
	} else if backupSchedule != "" {
		b.WriteString("    backup:\n")
	}
	if backupSchedule != "" {
		fmt.Fprintf(b, "      schedule: %s\n", strconv.Quote(backupSchedule))
	}
	if kind == KindPostgres {
		user, secret = "postgres", "postgres-superuser"
		if l.Binary != "" {
			fmt.Fprintf(b, "    promotion:\n%s      rejoin_command: [%s, lab, rejoin, --dir, %s, \"{instance}\", --primary, \"{primary}\"]\n",
				lease, yamlScalar(l.Binary), yamlScalar(l.Dir))
		} else if lease != "" {
			fmt.Fprintf(b, "    promotion:\n%s", lease)
		}
	}
	if kind == KindPostgres {
		// dbha checksum reads every table (MariaDB's uses promotion.apply's admin).
		fmt.Fprintf(b, "    checksum:\n      user: postgres\n      password_file: %s\n", yamlScalar(l.Secret("postgres-superuser")))
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
