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
)

const labHost = "127.0.0.1"

// Options say where the lab lives and where progress goes.
type Options struct {
	Dir      string    // lab directory; created if missing; made absolute
	Progress io.Writer // one line per step; may be nil
	// Binary is the dbha executable; when set, dbha.yaml gets a PostgreSQL
	// rejoin_command that runs `dbha lab rejoin` with it.
	Binary string
	// Lossless makes dbha's stream acknowledge commits: MariaDB semi-sync
	// (dbha and the replicas as semi-sync replicas) and PostgreSQL
	// synchronous_standby_names = 'dbha'. PostgreSQL commits then wait for
	// a running dbha stream.
	Lossless bool
}

// Node is one process of the lab.
type Node struct {
	Name    string `json:"name"` // "mariadb-1" (primary), "mariadb-2", ..., "postgres-1" (primary), ..., "consul"
	Kind    string `json:"kind"` // KindMariaDB, KindPostgres or KindConsul
	Host    string `json:"host"`
	Port    int    `json:"port"`
	PID     int    `json:"pid"`      // 0 once stopped by Stop
	DataDir string `json:"data_dir"` // also the marker that identifies the process in /proc/PID/cmdline
	LogFile string `json:"log_file"`
	Socket  string `json:"socket,omitempty"` // MariaDB: socket file; PostgreSQL: socket directory
}

// Addr is host:port.
func (n Node) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// NodeStatus is what Status observed about one node.
type NodeStatus struct {
	Name    string
	Kind    string
	Addr    string
	PID     int
	Alive   bool // the recorded PID is the process the lab started
	Running bool // Alive and the port accepts TCP connections
}

// ConsulPorts are the ports of the Consul dev agent; kept so Start can reuse them.
type ConsulPorts struct {
	HTTP    int `json:"http"`
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
	ConsulHTTP string      `json:"consul_http"`
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

	mu       sync.Mutex // guards Nodes and lab.json
	progress io.Writer
	progMu   sync.Mutex
}

// Up brings a lab up in o.Dir. A lab already running there is returned as it is with
// alreadyRunning=true; a lab whose nodes were stopped is restarted.
func Up(ctx context.Context, o Options) (l *Lab, alreadyRunning bool, err error) {
	if o.Dir == "" {
		return nil, false, errors.New("lab up: no lab directory given")
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
	l, err = create(ctx, dir, o.Progress)
	if err != nil {
		return nil, false, err
	}
	l.Binary, l.Lossless = o.Binary, o.Lossless
	if err := l.build(ctx); err != nil {
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
	started := false
	for _, n := range l.Nodes {
		if processIsNode(n.PID, n.DataDir) {
			continue
		}
		started = true
		if err := l.Start(ctx, n.Name); err != nil {
			return nil, false, fmt.Errorf("restart stopped lab node: %w (if the lab is broken, run `dbha lab down --purge --dir %s`)", err, l.Dir)
		}
		l.progressf("%s: restarted on %s", n.Name, n.Addr())
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
// then SIGKILL after stopTimeout. Only PIDs whose command line still names the node's data
// directory are signalled. purge then removes the lab directory.
func (l *Lab) Down(ctx context.Context, purge bool) error {
	nodes := l.nodes()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = stopProcess(ctx, n, stopSignal(n.Kind)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab down: %w", err)
	}
	if !purge {
		return nil
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
