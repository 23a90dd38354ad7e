package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// TestHostsLabGuards brings a hosts lab up with guards (--guards) and checks the lease
// protocol end to end, with `dbha run` and `dbha guard` as processes on their hosts: the
// manager grants each cluster's primary, whose guard holds the lease while the replicas'
// guards confirm they hold nothing; a primary whose host is cut off from every other host
// (clients still reach it) is made read-only by its guard, which cannot renew. Each cluster
// has a writer address (--vip): the primary's guard holds it; the isolated primary's guard
// drops it, and the new primary's takes it, so that a client of the address reaches the new
// primary.
func TestHostsLabGuards(t *testing.T) {
	bin := dbhaBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := upLab(t, ctx, Options{Hosts: true, Managers: 1, Guards: true, VIP: true, Binary: bin, Progress: testLog{t}})
	t.Cleanup(func() { purge(t, l) })
	if guards := l.nodesOfKind(KindGuard); len(guards) != len(databaseNodes) {
		t.Fatalf("%d guards, want one per database server (%d)", len(guards), len(databaseNodes))
	}
	for _, s := range l.Status(ctx) {
		if !s.Alive {
			t.Errorf("%s (%s on %s) is not running", s.Name, s.Addr, s.Host)
		}
	}
	c, err := l.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}

	for _, kind := range []string{KindMariaDB, KindPostgres} {
		cluster := guardCluster(kind + "-1")
		primary := addr(t, l, kind+"-1")
		eventually(t, cluster+": the manager's grant and the primary's lease", func() error {
			g, _, ok, err := c.ReadGrant(ctx, cluster)
			if err != nil || !ok || g.Instance != primary {
				return fmt.Errorf("grant %+v (stored %v, %v), want it to name %s", g, ok, err, primary)
			}
			v, session, ok, err := c.ReadLease(ctx, cluster, primary)
			if err != nil || !ok || session == "" || v.Renewals == 0 || v.Fenced {
				return fmt.Errorf("lease of %s: %+v held by %q (%v, %v)", primary, v, session, ok, err)
			}
			for _, r := range []string{kind + "-2", kind + "-3"} {
				v, session, ok, err := c.ReadLease(ctx, cluster, addr(t, l, r))
				if err != nil || !ok || session != "" || !v.Fenced {
					return fmt.Errorf("lease of replica %s: %+v held by %q (%v, %v)", r, v, session, ok, err)
				}
			}
			return nil
		})
	}

	for _, kind := range []string{KindMariaDB, KindPostgres} {
		cluster := guardCluster(kind + "-1")
		eventually(t, cluster+": its writer address to lead to its primary", func() error {
			return behindVIP(ctx, l, cluster, kind+"-1")
		})
	}

	cfg := labConfig(t, l)
	cl, _ := cfg.Cluster(mariadbCluster)
	prober := proberFor(t, cl)
	primary := addr(t, l, "mariadb-1")
	if err := l.Fault(ctx, FaultSpec{Name: FaultIsolate, Host: "mariadb-1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the isolated primary's guard to make it read-only", func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		in := prober.Probe(pctx, primary)
		if !in.Reachable || !in.ReadOnly {
			return fmt.Errorf("the isolated primary: reachable %v, read-only %v (%s)", in.Reachable, in.ReadOnly, in.Error)
		}
		return nil
	})

	// The manager fails over: the new primary holds the grant and its guard the lease (a
	// guard that fenced it before it was granted is overruled by the keeper's reopen), it
	// takes writes, and the old primary stays read-only.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := func() error {
			g, _, ok, err := c.ReadGrant(ctx, mariadbCluster)
			if err != nil || !ok || g.Instance == "" || g.Instance == primary {
				return fmt.Errorf("grant %+v (%v, %v)", g, ok, err)
			}
			v, session, _, err := c.ReadLease(ctx, mariadbCluster, g.Instance)
			if err != nil || session == "" || v.Fenced {
				return fmt.Errorf("lease of the new primary %s: %+v held by %q (%v)", g.Instance, v, session, err)
			}
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if in := prober.Probe(pctx, g.Instance); !in.Reachable || in.ReadOnly {
				return fmt.Errorf("the new primary %s: reachable %v, read-only %v", g.Instance, in.Reachable, in.ReadOnly)
			}
			if in := prober.Probe(pctx, primary); !in.ReadOnly {
				return fmt.Errorf("the old primary %s is writable again", primary)
			}
			n, err := l.NodeByAddr(g.Instance)
			if err != nil {
				return err
			}
			// The new primary's guard announced the address: this host's neighbour
			// entry, left pointing at the old primary, is updated before any client
			// sends (without the announcement it would stay so until it expires).
			if err := neighbourIs(ctx, l, l.VIPAddr(mariadbCluster), n.Name); err != nil {
				return err
			}
			return behindVIP(ctx, l, mariadbCluster, n.Name)
		}()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the failover: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// behindVIP checks that a client connecting to the cluster's writer address now reaches node,
// and that no other host of the cluster holds the address.
func behindVIP(ctx context.Context, l *Lab, cluster, node string) error {
	vip := l.VIPAddr(cluster)
	kind := strings.TrimPrefix(cluster, "lab-")
	for _, h := range []string{kind + "-1", kind + "-2", kind + "-3"} {
		host, _ := l.Net.host(h)
		out, err := exec.CommandContext(ctx, "ip", "-n", host.Netns, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil {
			return fmt.Errorf("addresses of %s: %v: %s", h, err, out)
		}
		if holds := strings.Contains(string(out), " "+vip+"/"); holds != (h == node) {
			return fmt.Errorf("%s holds %s: %v, want %v", h, vip, holds, h == node)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var got string
	if kind == KindMariaDB {
		pw, err := readPassword(l.Secret("mariadb-admin"))
		if err != nil {
			return err
		}
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.Timeout = "admin", pw, "tcp", net.JoinHostPort(vip, fmt.Sprint(hostMariaDBPort)), time.Second
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		var id int
		if err := db.QueryRowContext(cctx, "SELECT @@server_id").Scan(&id); err != nil {
			return fmt.Errorf("through %s: %w", vip, err)
		}
		got = fmt.Sprintf("%s-%d", KindMariaDB, id)
	} else {
		pw, err := readPassword(l.Secret("postgres-superuser"))
		if err != nil {
			return err
		}
		cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=1", vip, hostPostgresPort))
		if err != nil {
			return err
		}
		cc.Password = pw
		conn, err := pgx.ConnectConfig(cctx, cc)
		if err != nil {
			return fmt.Errorf("through %s: %w", vip, err)
		}
		defer conn.Close(context.WithoutCancel(cctx))
		if err := conn.QueryRow(cctx, "SELECT current_setting('cluster_name')").Scan(&got); err != nil {
			return fmt.Errorf("through %s: %w", vip, err)
		}
	}
	if got != node {
		return fmt.Errorf("a client of %s reached %s, want %s", vip, got, node)
	}
	return nil
}

// neighbourIs checks that the root namespace's neighbour entry for addr names the hardware
// address of host's eth0.
func neighbourIs(ctx context.Context, l *Lab, addr, host string) error {
	h, _ := l.Net.host(host)
	link, err := exec.CommandContext(ctx, "ip", "-n", h.Netns, "-o", "link", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		return fmt.Errorf("eth0 of %s: %v: %s", host, err, link)
	}
	f := strings.Fields(string(link))
	mac := ""
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			mac = f[i+1]
		}
	}
	neigh, err := exec.CommandContext(ctx, "ip", "neigh", "show", "to", addr, "dev", l.Net.Bridge).CombinedOutput()
	if err != nil {
		return fmt.Errorf("neighbour %s: %v: %s", addr, err, neigh)
	}
	if mac == "" || !strings.Contains(string(neigh), "lladdr "+mac) {
		return fmt.Errorf("the neighbour entry of %s is %q, want %s's %s", addr, strings.TrimSpace(string(neigh)), host, mac)
	}
	return nil
}
