package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Node kinds.
const (
	KindMariaDB  = "mariadb"
	KindPostgres = "postgres"
	KindConsul   = "consul"
	KindManager  = "manager" // hosts lab: `dbha run` on a manager host
)

const labHost = "127.0.0.1"

// Options say where the lab lives and where progress goes.
type Options struct {
	Dir      string    // lab directory; created if missing; made absolute
	Progress io.Writer // one line per step; may be nil
	// Binary is the dbha executable; when set, dbha.yaml gets a PostgreSQL
	// rejoin_command that runs `dbha lab rejoin` with it.
	Binary string
	// Lossless makes commits wait until dbha's stream or a replica holds
	// them, without falling back: MariaDB semi-sync (dbha and the replicas
	// as semi-sync replicas; wait_no_slave=ON, the largest timeout,
	// AFTER_SYNC) and PostgreSQL synchronous_standby_names =
	// 'ANY 1 ("dbha", <the standbys>)'. A primary cut off from every
	// acknowledger blocks its clients' commits.
	Lossless bool
	// Hosts builds a hosts lab: every database server, and on each manager host a Consul
	// server and a dbha manager (`dbha run`), in a network namespace of its own on a bridge
	// the lab creates (see HostNet), so that faults can be injected per host. It needs root
	// and Binary.
	Hosts bool
	// Managers is the number of manager hosts of a hosts lab: 1 (the default, when 0) to 3.
	// With 3, the Consul servers form a real Raft quorum.
	Managers int
	// Guards runs `dbha guard` beside every database server of a hosts lab, in the server's
	// host, and turns the clusters' write leases on (promotion.lease_ttl).
	Guards bool
	// VIP gives each cluster of a hosts lab with guards a writer address (vip.address: .250
	// for lab-mariadb, .251 for lab-postgres, in the lab's subnet), which the primary's
	// guard holds; the database servers then listen on every address of their host.
	VIP bool
	// Witness gives each cluster a check_command that votes in the quorum: a TCP connect to
	// the primary (labWitness). In production a witness checks from another site; here it
	// stands for one, so that a test may lose a replica and its primary and still hold a
	// majority (5 voters: 3 instances, the manager, the witness).
	Witness bool
	// Console gives the loopback lab's dbha.yaml what `dbha run` needs to
	// serve its console at this address (host:port): an http section with
	// an operator and a viewer token (secrets console-operator and
	// console-viewer), and a nightly backup schedule per cluster, so that
	// the console offers a backup. `make demo` uses it.
	Console string
	// TLS gives the lab a private CA (DIR/tls) and runs its Consul agents
	// with their HTTP API over HTTPS only, verifying clients' certificates;
	// dbha.yaml's consul.tls names the CA, dbha's client certificate and
	// ConsulServerName. Consul's DNS stays plain.
	TLS bool
}

// MaxManagers bounds Options.Managers.
const MaxManagers = 3

// validate checks the options and fills in the default number of managers.
func (o *Options) validate() error {
	if o.Console != "" {
		if o.Hosts {
			return errors.New("lab up: --console is for the loopback lab; a hosts lab's managers serve theirs")
		}
		if _, _, err := net.SplitHostPort(o.Console); err != nil {
			return fmt.Errorf("lab up: --console %q: want host:port: %w", o.Console, err)
		}
	}
	if o.VIP && (!o.Hosts || !o.Guards) {
		return errors.New("lab up: --vip is held by the guards of a hosts lab (--hosts --guards)")
	}
	if !o.Hosts {
		if o.Managers != 0 {
			return errors.New("lab up: managers run only in a hosts lab (--hosts)")
		}
		if o.Guards {
			return errors.New("lab up: guards run only in a hosts lab (--hosts)")
		}
		return nil
	}
	if o.Managers == 0 {
		o.Managers = 1
	}
	if o.Managers < 1 || o.Managers > MaxManagers {
		return fmt.Errorf("lab up: --managers %d: a hosts lab has 1 to %d managers", o.Managers, MaxManagers)
	}
	if o.Binary == "" {
		return errors.New("lab up: a hosts lab runs `dbha run` on its manager hosts and needs the dbha binary (Options.Binary)")
	}
	return requireRoot()
}

// Node is one process of the lab.
type Node struct {
	// "mariadb-1" (primary), "mariadb-2", ..., "postgres-1" (primary), ..., and "consul" in the
	// loopback lab; "consul-1".. and "manager-1".. (`dbha run`) in a hosts lab.
	Name string `json:"name"`
	Kind string `json:"kind"` // KindMariaDB, KindPostgres, KindConsul, KindManager or KindGuard
	Host string `json:"host"` // its address: 127.0.0.1, or its host's in a hosts lab
	Port int    `json:"port"`
	PID  int    `json:"pid"` // 0 once stopped by Stop
	// Started is the start time of PID (see processIsNode); 0 in a lab.json from before it was kept.
	Started uint64 `json:"started,omitempty"`
	DataDir string `json:"data_dir"` // also the marker that identifies the process in /proc/PID/cmdline
	LogFile string `json:"log_file"`
	Socket  string `json:"socket,omitempty"` // MariaDB: socket file; PostgreSQL: socket directory
	// Marker replaces DataDir as the argument that names the process in /proc/PID/cmdline
	// (a manager: its config file).
	Marker string `json:"marker,omitempty"`
	// LabHost is the host (network namespace) it runs on in a hosts lab: "mariadb-1" for
	// mariadb-1, "manager-1" for consul-1 and manager-1.
	LabHost string `json:"lab_host,omitempty"`
}

// Addr is host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

func (n Node) marker() string {
	if n.Marker != "" {
		return n.Marker
	}
	return n.DataDir
}

// running reports whether the node's recorded process is alive and is the one the lab started.
func (n Node) running() bool { return processIsNode(n.PID, n.marker(), n.Started) }

// NodeStatus is what Status observed about one node.
type NodeStatus struct {
	Name    string
	Kind    string
	Host    string // hosts lab: the host it runs on
	Addr    string
	PID     int
	Alive   bool // the recorded PID is the process the lab started
	Frozen  bool // Alive and stopped (SIGSTOP: a hang or host-down fault)
	Running bool // Alive and the port accepts TCP connections (from this process's namespace)
}

// ConsulPorts are the ports of the Consul dev agent; kept so Start can reuse them.
type ConsulPorts struct {
	HTTP    int `json:"http"` // the HTTP API: HTTPS only in a TLS lab
	DNS     int `json:"dns"`
	SerfLAN int `json:"serf_lan"`
	SerfWAN int `json:"serf_wan"`
	Server  int `json:"server"`
}

// Lab is a running (or stopped) set of lab processes, persisted in DIR/lab.json.
// Its methods may be called from several goroutines.
type Lab struct {
	Dir        string      `json:"dir"`
	ConfigPath string      `json:"config_path"` // DIR/dbha.yaml
	Nodes      []Node      `json:"nodes"`
	ConsulHTTP string      `json:"consul_http"` // the API's host:port (HTTPS in a TLS lab: see ConsulScheme)
	ConsulDNS  string      `json:"consul_dns"`
	Consul     ConsulPorts `json:"consul_ports"`
	// SocketRoot holds the nodes' unix sockets: Dir, or a short directory under /tmp when Dir
	// is too long for a socket path (sun_path is 108 bytes).
	SocketRoot string  `json:"socket_root"`
	User       labUser `json:"user"`  // who runs the database servers
	Ready      bool    `json:"ready"` // `up` completed; false means it was interrupted

	// Binary is the dbha executable that rejoin_command runs ("" for none).
	Binary string `json:"binary,omitempty"`
	// Lossless: see Options. PGSynchronous: its PostgreSQL nodes are set
	// to wait for dbha's stream (set once the lab is built).
	Lossless      bool `json:"lossless,omitempty"`
	PGSynchronous bool `json:"pg_synchronous,omitempty"`

	// Net is the network of a hosts lab; nil for the loopback lab.
	Net *HostNet `json:"net,omitempty"`
	// Managers is the number of manager hosts of a hosts lab.
	Managers int `json:"managers,omitempty"`
	// Guards and Witness: see Options.
	Guards  bool `json:"guards,omitempty"`
	VIP     bool `json:"vip,omitempty"`
	Witness bool `json:"witness,omitempty"`
	// Console: see Options.
	Console string `json:"console,omitempty"`
	// TLS: see Options. certs is its CA, in the memory of the process that
	// created the lab only (nil in a lab loaded from lab.json).
	TLS   bool `json:"tls,omitempty"`
	certs *Certs
	// Faults are the faults injected and not healed yet, in order (see Fault).
	Faults []FaultSpec `json:"faults,omitempty"`

	mu sync.Mutex // guards Nodes, Net, Faults, bgStop and lab.json
	// bg runs the background part of faults (a step trap's follow-up, Consul down for a
	// while); Heal closes bgStop and waits for it.
	bg       sync.WaitGroup
	bgStop   chan struct{}
	progress io.Writer
	progMu   sync.Mutex
}

// Up brings a lab up in o.Dir. A lab already running there is returned as it is with
// alreadyRunning=true; a lab whose nodes were stopped is restarted.
func Up(ctx context.Context, o Options) (l *Lab, alreadyRunning bool, err error) {
	if o.Dir == "" {
		return nil, false, errors.New("lab up: no lab directory given")
	}
	if err := o.validate(); err != nil {
		return nil, false, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, false, fmt.Errorf("lab directory %q: %w", o.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("create lab directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "lab.json")); err == nil {
		l, err := Load(dir)
		if err != nil {
			return nil, false, err
		}
		l.progress = o.Progress
		return l.resume(ctx)
	}
	l, err = create(ctx, dir, o)
	if err == nil {
		err = l.build(ctx)
	}
	if err != nil {
		if l == nil {
			return nil, false, err
		}
		l.abort()
		return nil, false, fmt.Errorf("lab up in %s: %w\n(logs are kept in %s; run `dbha lab down --purge --dir %s` to remove the lab)",
			dir, err, filepath.Join(dir, "logs"), dir)
	}
	return l, false, nil
}

// Load reads the lab recorded in dir/lab.json. It starts and checks nothing.
func Load(dir string) (*Lab, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lab directory %q: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(abs, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("load lab: %w", err)
	}
	l := &Lab{}
	if err := json.Unmarshal(raw, l); err != nil {
		return nil, fmt.Errorf("load lab %s: %w", filepath.Join(abs, "lab.json"), err)
	}
	return l, nil
}

// build starts the three parts concurrently, then writes dbha.yaml and marks the lab ready.
// The first failure cancels the other parts.
func (l *Lab) build(ctx context.Context) error {
	start := time.Now()
	if l.Net != nil {
		if err := l.Net.createHosts(ctx); err != nil {
			return err
		}
		l.progressf("lab: %d hosts on bridge %s (%s), clients at %s (%.1fs)", len(l.Net.Hosts), l.Net.Bridge, l.Net.Subnet(), l.Net.Client, time.Since(start).Seconds())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts := []func(context.Context) error{l.upMariaDB, l.upPostgres, l.upConsul}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() {
			if errs[i] = part(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := l.writeConfig(); err != nil {
		return err
	}
	if err := l.synchronousPostgres(ctx); err != nil {
		return err
	}
	if err := l.semiSyncMariaDB(ctx); err != nil {
		return err
	}
	if err := l.upManagers(ctx); err != nil {
		return err
	}
	if err := l.upGuards(ctx); err != nil {
		return err
	}
	l.mu.Lock()
	l.Ready = true
	err := l.saveLocked()
	l.mu.Unlock()
	l.progressf("lab: up in %.1fs; config %s", time.Since(start).Seconds(), l.ConfigPath)
	return err
}

// resume handles `up` on an existing lab: nothing to do when every node runs, restart the
// stopped ones of a complete lab, refuse an incomplete one.
func (l *Lab) resume(ctx context.Context) (*Lab, bool, error) {
	if !l.Ready {
		return nil, false, fmt.Errorf("the lab in %s is incomplete (an earlier `up` failed or was interrupted): run `dbha lab down --purge --dir %s` and start again", l.Dir, l.Dir)
	}
	if err := l.ensureNet(ctx); err != nil {
		return nil, false, err
	}
	started := false
	// Databases one by one, then the Consul servers together (a restarted server waits for a
	// quorum of them), then the managers, then the guards.
	for _, kinds := range [][]string{{KindMariaDB, KindPostgres}, {KindConsul}, {KindManager}, {KindGuard}} {
		var stopped []Node
		for _, n := range l.nodes() {
			if slices.Contains(kinds, n.Kind) && !n.running() {
				stopped = append(stopped, n)
			}
		}
		started = started || len(stopped) > 0
		start := func(n Node) error {
			if err := l.Start(ctx, n.Name); err != nil {
				return fmt.Errorf("restart stopped lab node: %w (if the lab is broken, run `dbha lab down --purge --dir %s`)", err, l.Dir)
			}
			l.progressf("%s: restarted on %s", n.Name, n.Addr())
			return nil
		}
		if kinds[0] != KindMariaDB {
			if err := inParallel(stopped, start); err != nil {
				return nil, false, err
			}
			continue
		}
		for _, n := range stopped {
			if err := start(n); err != nil {
				return nil, false, err
			}
		}
	}
	return l, !started, nil
}

// abort stops whatever a failed `up` started, keeping the directory and its logs.
func (l *Lab) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*stopTimeout)
	defer cancel()
	if err := l.Down(ctx, false); err != nil {
		l.progressf("lab: cleaning up after the failure: %v", err)
	}
}

// Down stops every recorded process: SIGTERM (SIGINT for PostgreSQL, its fast shutdown),
// then SIGKILL after stopTimeout. Only the processes the lab started are signalled (see
// processIsNode). The managers and guards of a hosts lab go first, so that none acts on the
// others' stopping; a frozen process (a fault) is thawed first. A hosts lab's network goes next:
// every namespace, veth and the bridge (its fault rules live in the namespaces), and the
// record of faults. purge then removes the lab directory.
func (l *Lab) Down(ctx context.Context, purge bool) error {
	if _, err := os.Stat(filepath.Join(l.Dir, "lab.json")); err == nil {
		// Nodes other processes restarted (a manager's rejoin) have new PIDs there.
		if err := l.refresh(); err != nil {
			return fmt.Errorf("lab down: %w", err)
		}
	}
	for _, n := range l.nodes() {
		if n.running() {
			_ = l.signalTree(n.Name, syscall.SIGCONT)
		}
	}
	var errs []error
	for _, managers := range []bool{true, false} {
		var nodes []Node
		for _, n := range l.nodes() {
			if (n.Kind == KindManager || n.Kind == KindGuard) == managers {
				nodes = append(nodes, n)
			}
		}
		errs = append(errs, inParallel(nodes, func(n Node) error { return stopProcess(ctx, n, stopSignal(n.Kind)) }))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if err := l.removeNet(ctx); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if !purge {
		// Nothing of a fault outlives down: its rules went with the namespaces, its frozen
		// and killed processes are stopped, and `up` starts every node again.
		if l.Net == nil {
			return nil
		}
		return l.update(func() error { l.Faults = nil; return nil })
	}
	if l.SocketRoot != "" && l.SocketRoot != l.Dir {
		if err := os.RemoveAll(l.SocketRoot); err != nil {
			return fmt.Errorf("remove socket directory: %w", err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		return fmt.Errorf("remove lab directory: %w", err)
	}
	return nil
}

// Secret is the path of DIR/secrets/<name>.pw, e.g. Secret("mariadb-dbha").
func (l *Lab) Secret(name string) string {
	return filepath.Join(l.Dir, "secrets", name+".pw")
}

// saveLocked writes lab.json atomically; l.mu must be held.
func (l *Lab) saveLocked() error {
	raw, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab.json: %w", err)
	}
	return writeFileAtomic(filepath.Join(l.Dir, "lab.json"), append(raw, '\n'), 0o644)
}

// inParallel runs fn for every node at once and joins the errors.
func inParallel(nodes []Node, fn func(Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = fn(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// warnf reports a problem that does not stop the command: to the progress writer, or to
// stderr when there is none (`down` from the CLI has none).
func (l *Lab) warnf(format string, args ...any) {
	if l.progress == nil {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return
	}
	l.progressf(format, args...)
}

func (l *Lab) progressf(format string, args ...any) {
	if l.progress == nil {
		return
	}
	l.progMu.Lock()
	defer l.progMu.Unlock()
	fmt.Fprintf(l.progress, format+"\n", args...)
}

// lockDir takes an exclusive lock on DIR/lab.lock so that two `up` runs cannot build in the
// same directory at once. The lock dies with the process.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lab.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock lab directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock lab directory %s: another `dbha lab` command is working there: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
