package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// labConfig reads the lab's dbha.yaml the way an operator's file is read.
func labConfig(t *testing.T, l *Lab) config.Config {
	t.Helper()
	b, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := config.Validate(cfg, l.ConfigPath); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func proberFor(t *testing.T, cl config.Cluster) topology.Prober {
	t.Helper()
	pw, err := cl.Password().Read(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Engine == topology.Postgres {
		p := postgres.NewProber(cl.User, pw)
		p.SetTLS(cl.TLS.Settings())
		t.Cleanup(func() { p.Close() })
		return p
	}
	p := mysql.NewProber(cl.Engine, cl.User, pw)
	p.SetTLS(cl.TLS.Settings())
	t.Cleanup(func() { p.Close() })
	return p
}

// discover takes one snapshot of a lab cluster.
func discover(t *testing.T, l *Lab, name string) topology.Snapshot {
	t.Helper()
	cfg := labConfig(t, l)
	cl, ok := cfg.Cluster(name)
	if !ok {
		t.Fatalf("no cluster %s in %s", name, l.ConfigPath)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Closed at once: a test that polls would otherwise hold a pool per
	// snapshot until it ends, and exhaust the servers' connection slots.
	p := proberFor(t, cl)
	defer p.(interface{ Close() error }).Close()
	return topology.Discover(ctx, cl.Topology(), p, cfg.Probe.Timeout)
}

// waitSnapshot polls until ok accepts a snapshot (bounded), and returns it.
func waitSnapshot(t *testing.T, l *Lab, cluster, what string, ok func(topology.Snapshot) error) topology.Snapshot {
	t.Helper()
	var s topology.Snapshot
	eventually(t, what, func() error {
		s = discover(t, l, cluster)
		return ok(s)
	})
	return s
}

func healthy(s topology.Snapshot) error {
	if !s.Healthy() {
		return fmt.Errorf("problems: %+v", s.Problems)
	}
	for _, addr := range s.Replicas(s.Primary) {
		in, _ := s.Instance(addr)
		p, _ := s.Instance(s.Primary)
		if o, err := topology.Compare(in.Current, p.Current); err != nil || o != topology.Equal {
			return fmt.Errorf("%s at %s is %v the primary at %s (%v)", addr, in.Current, o, p.Current, err)
		}
	}
	return nil
}

func hasProblem(s topology.Snapshot, code topology.ProblemCode, addr, text string) error {
	for _, p := range s.Problems {
		if p.Code == code && p.Instance == addr && strings.Contains(p.Message, text) {
			return nil
		}
	}
	return fmt.Errorf("no %s problem on %s mentioning %q; problems: %+v", code, addr, text, s.Problems)
}

func addr(t *testing.T, l *Lab, name string) string {
	t.Helper()
	n, err := l.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n.Addr()
}

func TestTopologyRolesAndPositions(t *testing.T) {
	l := sharedLab(t)
	for _, c := range []struct{ cluster, kind string }{{"lab-mariadb", KindMariaDB}, {"lab-postgres", KindPostgres}} {
		t.Run(c.cluster, func(t *testing.T) {
			before := waitSnapshot(t, l, c.cluster, "a healthy cluster", healthy)
			primary := addr(t, l, c.kind+"-1")
			if before.Primary != primary {
				t.Fatalf("primary = %s, want %s", before.Primary, primary)
			}
			want := []string{addr(t, l, c.kind+"-2"), addr(t, l, c.kind+"-3")}
			if got := before.Replicas(primary); !slices.Equal(got, want) {
				t.Fatalf("replicas of the primary = %v, want %v", got, want)
			}
			for _, in := range before.Instances {
				wantRole := topology.RoleReplica
				if in.Addr == primary {
					wantRole = topology.RolePrimary
				}
				if in.Role != wantRole || in.Version == "" || in.Current.IsZero() {
					t.Errorf("%s: role %s version %q current %q", in.Addr, in.Role, in.Version, in.Current)
				}
				if (in.Role == topology.RoleReplica) != in.ReadOnly {
					t.Errorf("%s: role %s but read_only=%v", in.Addr, in.Role, in.ReadOnly)
				}
			}

			writeRows(t, l, c.kind+"-1", 20)
			after := waitSnapshot(t, l, c.cluster, "replicas caught up after writes", healthy)
			for _, in := range after.Instances {
				old, _ := before.Instance(in.Addr)
				if o, err := topology.Compare(in.Current, old.Current); err != nil || o != topology.Ahead {
					t.Errorf("%s: position %s is %v its earlier %s (%v), want ahead", in.Addr, in.Current, o, old.Current, err)
				}
				if o, _ := topology.Compare(old.Current, in.Current); o != topology.Behind {
					t.Errorf("%s: earlier position is %v the later one, want behind", in.Addr, o)
				}
			}
		})
	}
}

// writeRows commits n single-row transactions on a primary.
func writeRows(t *testing.T, l *Lab, node string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if strings.HasPrefix(node, KindPostgres) {
		conn, err := l.AdminPostgres(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		for range n {
			if _, err := conn.Exec(ctx, "INSERT INTO heartbeat DEFAULT VALUES"); err != nil {
				t.Fatalf("write on %s: %v", node, err)
			}
		}
		return
	}
	db, err := l.AdminMySQL(node)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range n {
		if _, err := db.ExecContext(ctx, "INSERT INTO dbha_lab.heartbeat () VALUES ()"); err != nil {
			t.Fatalf("write on %s: %v", node, err)
		}
	}
}
