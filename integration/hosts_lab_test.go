package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/topology"
	"gopkg.in/yaml.v3"
)

// TestHostsLab brings a hosts lab up with one manager and checks what the fault tests build
// on: both clusters healthy as seen from the root namespace (the clients' host) through
// dbha.yaml, every server on a host of its own, the manager's `dbha run` publishing each
// writer where Consul DNS resolves it, a host-down that leaves a connecting client hanging
// (no RST) until Heal, an isolated replica that loses its primary while the clients still
// reach it, and a `down` that leaves no namespace or link of the lab behind.
func TestHostsLab(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 1, Binary: bin, Progress: testLog{t}})
	t.Logf("hosts lab up in %v", time.Since(start).Round(time.Millisecond))
	downed := false
	t.Cleanup(func() {
		if !downed {
			purge(t, l)
		}
	})
	if l.Net == nil || len(l.Hosts()) != 7 {
		t.Fatalf("not a hosts lab of 7 hosts: net %+v, hosts %v", l.Net, l.Hosts())
	}
	prefix := l.Net.Bridge + "-"

	for _, s := range l.Status(ctx) {
		if !s.Running {
			t.Errorf("%s (%s on %s) is not running", s.Name, s.Addr, s.Host)
		}
	}
	checkManagerConfig(t, l, "manager-1")

	t.Run("clusters healthy across hosts", func(t *testing.T) {
		for _, cluster := range []string{mariadbCluster, postgresCluster} {
			s := waitSnapshot(t, l, cluster, "a healthy "+cluster, healthy)
			seen := map[string]bool{}
			for _, in := range s.Instances {
				host, err := l.HostOf(in.Addr)
				if err != nil {
					t.Fatalf("%s: %v", cluster, err)
				}
				n, _ := l.Node(host)
				if seen[host] || n.LabHost != host || n.Addr() != in.Addr {
					t.Errorf("%s: instance %s on host %q (node %+v)", cluster, in.Addr, host, n)
				}
				seen[host] = true
			}
			if len(seen) != 3 {
				t.Errorf("%s: instances on %d hosts, want 3", cluster, len(seen))
			}
		}
		checkMariaDBReplicates(ctx, t, l, "mariadb-2", "mariadb-3")
		checkPostgresReplicates(ctx, t, l, "postgres-2", "postgres-3")
		if r := dbhaCLI(t, bin, l, "topology"); r.code != 0 || strings.Count(r.stdout, "healthy") != 2 {
			t.Errorf("dbha topology from the root namespace:\n%s", r)
		}
	})

	t.Run("the manager publishes the writers through Consul DNS", func(t *testing.T) {
		for _, c := range []struct{ cluster, primary string }{{mariadbCluster, "mariadb-1"}, {postgresCluster, "postgres-1"}} {
			want := addr(t, l, c.primary)
			eventually(t, c.cluster+"-writer resolving to "+want, func() error {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				got, err := consul.Resolve(rctx, l.ConsulDNS, consul.WriterService(c.cluster))
				if err != nil {
					return err
				}
				if len(got) != 1 || got[0] != want {
					return fmt.Errorf("resolves to %v", got)
				}
				return nil
			})
		}
	})

	t.Run("host-down leaves a client hanging until heal", func(t *testing.T) {
		target := addr(t, l, "mariadb-3")
		if err := dialOnce(ctx, target); err != nil {
			t.Fatalf("before the fault: %v", err)
		}
		if err := l.Fault(ctx, FaultSpec{Name: FaultHostDown, Host: "mariadb-3"}); err != nil {
			t.Fatal(err)
		}
		if fresh, err := Load(l.Dir); err != nil || len(fresh.Faults) != 1 || fresh.Faults[0].Host != "mariadb-3" {
			t.Fatalf("lab.json faults: %+v (%v)", fresh, err)
		}
		n, _ := l.Node("mariadb-3")
		if state := procState(n.PID); state != "T" {
			t.Errorf("mariadb-3 (pid %d) in state %q after host-down, want T (stopped)", n.PID, state)
		}
		err := dialOnce(ctx, target)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("connect to %s during host-down: %v; want a timeout (no answer at all, no RST)", target, err)
		}
		// Other labs may add root rules of their own meanwhile: look for ours only.
		subnet := strings.TrimSuffix(l.Net.Subnet(), "0/24")
		for _, line := range strings.Split(rootIptables(t), "\n") {
			if strings.Contains(line, faultChain) || strings.Contains(line, subnet) {
				t.Errorf("a rule of the lab in the root namespace: %s", line)
			}
		}
		if err := l.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "mariadb-3 to answer again", func() error { return dialOnce(ctx, target) })
		if state := procState(n.PID); state == "T" {
			t.Errorf("mariadb-3 still stopped after heal")
		}
		if fresh, err := Load(l.Dir); err != nil || len(fresh.Faults) != 0 {
			t.Errorf("lab.json faults after heal: %v (%v)", fresh.Faults, err)
		}
		checkMariaDBReplicates(ctx, t, l, "mariadb-3")
	})

	t.Run("isolate cuts a replica from its primary, not from the clients", func(t *testing.T) {
		if err := l.Fault(ctx, FaultSpec{Name: FaultIsolate, Host: "mariadb-2"}); err != nil {
			t.Fatal(err)
		}
		healed := false
		defer func() {
			if !healed {
				if err := l.Heal(ctx); err != nil {
					t.Errorf("heal: %v", err)
				}
			}
		}()
		replica := mysqlDB(t, l, "mariadb-2") // from the clients' namespace: still reachable
		eventually(t, "mariadb-2's link to mariadb-1 to break", func() error {
			st, err := slaveStatus(ctx, replica)
			if err != nil {
				return err
			}
			if st["Slave_IO_Running"] == "Yes" {
				return errors.New("Slave_IO_Running is still Yes")
			}
			return nil
		})
		if err := l.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		healed = true
		checkMariaDBReplicates(ctx, t, l, "mariadb-2")
	})

	if err := l.Down(ctx, true); err != nil {
		t.Fatalf("down: %v", err)
	}
	downed = true
	netns, err := exec.CommandContext(ctx, "ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, netns)
	}
	links, err := exec.CommandContext(ctx, "ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -o link: %v: %s", err, links)
	}
	for _, name := range append(parseNetns(string(netns)), parseLinks(string(links))...) {
		if name == l.Net.Bridge || strings.HasPrefix(name, prefix) {
			t.Errorf("left behind after down: %s", name)
		}
	}
	for _, n := range l.Nodes {
		if processIsNode(n.PID, n.marker(), n.Started) {
			t.Errorf("%s (pid %d) still runs after down", n.Name, n.PID)
		}
	}
}

// checkManagerConfig reads a manager's config back as dbha does (unknown keys rejected).
func checkManagerConfig(t *testing.T, l *Lab, name string) {
	t.Helper()
	m, err := l.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	path := l.managerConfigPath(m)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, raw)
	}
	cfg = config.WithDefaults(cfg)
	if err := config.Validate(cfg, path); err != nil {
		t.Fatalf("%s is not valid: %v", path, err)
	}
	if cfg.Manager.Name != name || !strings.HasPrefix(cfg.Consul.Address, m.Host+":") || cfg.HTTP.Listen != m.Addr() {
		t.Errorf("%s: manager %q, consul %s, http %s", path, cfg.Manager.Name, cfg.Consul.Address, cfg.HTTP.Listen)
	}
	for _, c := range cfg.Clusters {
		if (c.Engine == topology.MariaDB && c.Stream.ServerID == config.DerivedServerID(c.Name)) ||
			(c.Engine == topology.Postgres && c.Stream.Slot == config.DefaultStreamSlot) {
			t.Errorf("%s: cluster %s streams as the operator's default would: %+v", path, c.Name, c.Stream)
		}
	}
}

// dialOnce opens one TCP connection from the root namespace, waiting at most 2 s.
func dialOnce(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// procState is the state letter of /proc/PID/stat ("S", "T", ...).
func procState(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// rootIptables lists the root namespace's filter rules (the lab never adds any).
func rootIptables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "10", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v: %s", err, out)
	}
	return string(out)
}
