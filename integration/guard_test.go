package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/guard"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
	"github.com/dbha/dbha/topology/postgres"
)

// guardTTL is the lease the guard tests run with.
const guardTTL = 2 * time.Second

// guardRig is one lab cluster's primary with a guard in this process, its
// Consul reached through a proxy the test can cut, and dbha's side of the
// leases on a direct Consul client. Its KV lives under a cluster name of
// its own, so that nothing else in the shared lab sees its grant.
type guardRig struct {
	t       *testing.T
	lab     *Lab
	kv      string // the KV cluster name
	primary string
	server  guard.Instance
	unfence func(context.Context, string) error
	leases  *consul.Leases
	direct  *consul.Client
	proxy   *cutProxy
	writer  func(ctx context.Context) error // a write through a session opened before the test
	stop    func()
}

func newGuardRig(t *testing.T, clusterName string) *guardRig {
	t.Helper()
	l := sharedLab(t)
	cfg := labConfig(t, l)
	cl, ok := cfg.Cluster(clusterName)
	if !ok {
		t.Fatalf("no cluster %s", clusterName)
	}
	snap := discover(t, l, clusterName)
	if snap.Primary == "" {
		t.Fatalf("%s has no primary", clusterName)
	}
	r := &guardRig{t: t, lab: l, kv: fmt.Sprintf("guard-test-%s-%d", clusterName, time.Now().UnixNano()), primary: snap.Primary}
	r.server = guard.Instance{Addr: r.primary, Prober: proberFor(t, cl)}
	pw, err := cl.Password().Read(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Engine == topology.Postgres {
		c := postgres.NewController(cl.User, pw, cl.Replication.User, "")
		t.Cleanup(func() { c.Close() })
		r.server.Fencer, r.unfence = c, c.Unfence
	} else {
		c := mysql.NewController(cl.Engine, cl.User, pw, cl.Replication.User, "")
		t.Cleanup(func() { c.Close() })
		r.server.Fencer, r.unfence = c, c.Unfence
	}
	// Whatever happens, the primary is writable again for the next test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.unfence(ctx, r.primary); err != nil {
			t.Errorf("unfence %s after the test: %v", r.primary, err)
		}
	})
	r.direct = consulClient(t, l)
	r.leases = r.direct.Leases(guardTTL)
	r.proxy = newCutProxy(t, l.ConsulHTTP)
	r.writer = openWriter(t, l, cl, r.primary)
	return r
}

// openWriter opens one session to addr as an application would (MariaDB:
// the app account; PostgreSQL: the superuser, whose session a fence ends
// only by default_transaction_read_only) and returns a write through it.
func openWriter(t *testing.T, l *Lab, cl config.Cluster, addr string) func(context.Context) error {
	t.Helper()
	var node Node
	for _, n := range l.nodes() {
		if n.Addr() == addr {
			node = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cl.Engine == topology.Postgres {
		conn, err := l.pgConnect(ctx, node, "dbha_lab")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS guard_probe (at timestamptz NOT NULL DEFAULT now())"); err != nil {
			t.Fatal(err)
		}
		return func(ctx context.Context) error {
			_, err := conn.Exec(ctx, "INSERT INTO guard_probe DEFAULT VALUES")
			return err
		}
	}
	pw, err := readPassword(l.Secret("mariadb-app"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := mysql.Open(addr, "app", pw, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx) // one session, never replaced behind the test's back
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func(ctx context.Context) error {
		_, err := conn.ExecContext(ctx, "INSERT INTO dbha_lab.heartbeat () VALUES ()")
		return err
	}
}

// runGuard starts the guard, reaching Consul through the proxy.
func (r *guardRig) runGuard() {
	c, err := r.lab.ConsulClientAt(r.proxy.Addr())
	if err != nil {
		r.t.Fatal(err)
	}
	lease := c.GuardLease(r.kv, r.primary, guardTTL, "test")
	g, err := guard.New(r.server, lease, guardTTL, slog.New(slog.NewTextHandler(testLog{r.t}, nil)))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { g.Run(ctx) })
	r.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	r.t.Cleanup(r.stop)
}

// startGuarded grants the primary the write right, starts its guard and
// waits until the guard holds the lease.
func (r *guardRig) startGuarded(ctx context.Context) {
	r.t.Helper()
	if err := r.leases.Grant(ctx, r.kv, r.primary); err != nil {
		r.t.Fatal(err)
	}
	r.runGuard()
	r.waitHeld(ctx)
}

// waitHeld waits (bounded) until the guard holds its lease.
func (r *guardRig) waitHeld(ctx context.Context) {
	eventually(r.t, "the guard to hold its lease", func() error {
		v, session, ok, err := r.direct.ReadLease(ctx, r.kv, r.primary)
		switch {
		case err != nil:
			return err
		case !ok || session == "" || v.Renewals == 0:
			return fmt.Errorf("lease %+v held by %q", v, session)
		}
		return nil
	})
}

func (r *guardRig) state(ctx context.Context) guard.ServerState {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.server.State(pctx)
}

func TestGuardConfirmsRevocation(t *testing.T) {
	for _, cluster := range []string{mariadbCluster, "lab-postgres"} {
		t.Run(cluster, func(t *testing.T) {
			ctx := context.Background()
			r := newGuardRig(t, cluster)
			r.startGuarded(ctx)
			if s := r.state(ctx); s != guard.ServerWritable {
				t.Fatalf("the guarded primary is %s while its guard holds the lease", s)
			}
			if err := r.writer(ctx); err != nil {
				t.Fatalf("write to the guarded primary: %v", err)
			}

			rev, err := r.leases.Revoke(ctx, r.kv, r.primary)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("revocation: %+v (under load)", rev)
			if !rev.Guarded || !rev.Released {
				t.Fatalf("revocation %+v: want the guard's confirmation", rev)
			}
			if s := r.state(ctx); s != guard.ServerReadOnly {
				t.Fatalf("the revoked primary is %s once its guard confirmed", s)
			}
			if err := r.writer(ctx); err == nil {
				t.Fatal("a session opened before the revocation still writes after it")
			}
			v, session, _, err := r.direct.ReadLease(ctx, r.kv, r.primary)
			if err != nil || session != "" || !v.Fenced {
				t.Fatalf("lease after the confirmation: %+v held by %q, %v", v, session, err)
			}
		})
	}
}

func TestGuardFencesWithoutConsul(t *testing.T) {
	for _, cluster := range []string{mariadbCluster, "lab-postgres"} {
		t.Run(cluster, func(t *testing.T) {
			ctx := context.Background()
			r := newGuardRig(t, cluster)
			r.startGuarded(ctx)

			// The guard's Consul goes silent (packets dropped, no reset); dbha
			// still reaches Consul and revokes: it must wait the lease out,
			// and by then the guard has fenced its server.
			r.proxy.Cut()
			rev, err := r.leases.Revoke(ctx, r.kv, r.primary)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("revocation: %+v (under load)", rev)
			if !rev.Guarded || rev.Released || rev.Waited < guardTTL {
				t.Fatalf("revocation %+v: want a wait of at least the ttl %v, unconfirmed", rev, guardTTL)
			}
			if s := r.state(ctx); s != guard.ServerReadOnly {
				t.Fatalf("the primary is %s once the lease ran out", s)
			}
			if err := r.writer(ctx); err == nil {
				t.Fatal("a session opened before the outage still writes after the lease ran out")
			}

			// Consul back: the guard confirms the revocation it missed.
			r.proxy.Heal()
			eventually(t, "the guard to confirm the revocation", func() error {
				v, session, _, err := r.direct.ReadLease(ctx, r.kv, r.primary)
				if err != nil || session != "" || !v.Fenced {
					return fmt.Errorf("lease %+v held by %q, %v", v, session, err)
				}
				return nil
			})
		})
	}
}

// TestWatchedRevocationWaitsFromTheLastRenewal: a manager that watches the
// leases (Leases.Watch, as `dbha run` does) anchors a revocation's wait at
// the old primary's last renewal it saw, not at the revocation: the lease
// it waits out has partly run while the failure was being detected. What
// must hold is unchanged: when Revoke returns, the server refuses writes.
func TestWatchedRevocationWaitsFromTheLastRenewal(t *testing.T) {
	ctx := context.Background()
	r := newGuardRig(t, mariadbCluster)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go r.leases.Watch(wctx, r.kv)
	r.startGuarded(ctx)
	time.Sleep(guardTTL / 2) // renewals the watch sees

	r.proxy.Cut()
	cut := time.Now()
	time.Sleep(guardTTL / 2) // detection takes a while: the lease runs meanwhile
	rev, err := r.leases.Revoke(ctx, r.kv, r.primary)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("revocation %v after the cut: %+v (under load, lease %v)", time.Since(cut).Round(time.Millisecond), rev, guardTTL)
	if !rev.Guarded || rev.Released {
		t.Fatalf("revocation %+v: want a guarded lease run out, unconfirmed", rev)
	}
	if s := r.state(ctx); s != guard.ServerReadOnly {
		t.Fatalf("the primary is %s when the revocation returned", s)
	}
	if err := r.writer(ctx); err == nil {
		t.Fatal("a session opened before the outage still writes after the revocation returned")
	}
}

// A guard that never reaches Consul fences a writable server at once, and
// the server stays read-only: without Consul it cannot hold a lease.
func TestGuardWithoutConsulFromTheStart(t *testing.T) {
	ctx := context.Background()
	r := newGuardRig(t, mariadbCluster)
	if err := r.leases.Grant(ctx, r.kv, r.primary); err != nil {
		t.Fatal(err)
	}
	r.proxy.Cut()
	r.runGuard()
	eventually(t, "the guard to fence its primary", func() error {
		if s := r.state(ctx); s != guard.ServerReadOnly {
			return fmt.Errorf("the primary is %s", s)
		}
		return nil
	})
	if _, _, ok, err := r.direct.ReadLease(ctx, r.kv, r.primary); err != nil || ok {
		t.Fatalf("a lease exists (%v, %v) though the guard never reached Consul", ok, err)
	}
	// dbha sees no guard ever held the lease: the lease layer does not
	// protect this cluster from it, and Revoke says so at once.
	rev, err := r.leases.Revoke(ctx, r.kv, r.primary)
	if err != nil || rev.Guarded {
		t.Fatalf("revocation %+v, %v: want Guarded false", rev, err)
	}
}

// cutProxy forwards TCP connections to a target until Cut: from then on it
// accepts and holds connections, and stops forwarding on the ones it has,
// without closing them — a network that drops packets, not one that
// refuses them.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn // upstream connections, closed by Cut
	held   []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range append(p.conns, p.held...) {
			c.Close()
		}
	})
	return p
}

func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.held = append(p.held, c)
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.held = append(p.held, c)
		p.mu.Unlock()
		up.Close()
		return
	}
	p.conns = append(p.conns, up)
	p.held = append(p.held, c)
	p.mu.Unlock()
	go func() {
		io.Copy(up, c)
		up.Close()
	}()
	// Upstream's answers reach the client until Cut closes upstream; the
	// client's side stays open and silent.
	io.Copy(c, up)
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if !cut {
		c.Close()
	}
}

// Cut stops all forwarding; connections stay open and silent.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Heal forwards new connections again; the held ones are closed (their
// clients see a reset and reconnect).
func (p *cutProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	for _, c := range p.held {
		c.Close()
	}
	p.held = nil
}

// The grant's check-and-set writes: a grant that names its instance already
// is not rewritten; a revocation of an instance the grant no longer names
// leaves another's grant alone; every change moves the epoch.
func TestLeasesGrantAndRevoke(t *testing.T) {
	l := sharedLab(t)
	c := consulClient(t, l)
	ctx := context.Background()
	leases := c.Leases(guardTTL)
	cluster := fmt.Sprintf("leases-test-%d", time.Now().UnixNano())
	a, b := "10.0.0.1:3306", "10.0.0.2:3306"
	read := func() consul.Grant {
		t.Helper()
		g, _, ok, err := c.ReadGrant(ctx, cluster)
		if err != nil || !ok {
			t.Fatalf("read the grant: %v %v", ok, err)
		}
		return g
	}
	if _, _, ok, err := c.ReadGrant(ctx, cluster); err != nil || ok {
		t.Fatalf("a grant exists before any was made: %v %v", ok, err)
	}
	if err := leases.Grant(ctx, cluster, a); err != nil {
		t.Fatal(err)
	}
	if g := read(); g.Instance != a || g.Epoch != 1 || g.TTL != "2s" {
		t.Fatalf("grant %+v", g)
	}
	if err := leases.Grant(ctx, cluster, a); err != nil {
		t.Fatal(err)
	}
	if g := read(); g.Epoch != 1 {
		t.Fatalf("a grant that named its instance already was rewritten: %+v", g)
	}
	rev, err := leases.Revoke(ctx, cluster, b)
	if err != nil || rev.Guarded {
		t.Fatalf("revoke %s, which no guard ever held: %+v %v", b, rev, err)
	}
	if g := read(); g.Instance != a || g.Epoch != 1 {
		t.Fatalf("revoking %s changed %s's grant: %+v", b, a, g)
	}
	if rev, err := leases.Revoke(ctx, cluster, a); err != nil || rev.Guarded {
		t.Fatalf("revoke %s: %+v %v", a, rev, err)
	}
	if g := read(); g.Instance != "" || g.Revoked != a || g.Epoch != 2 {
		t.Fatalf("grant after the revocation %+v", g)
	}
	if err := leases.Grant(ctx, cluster, b); err != nil {
		t.Fatal(err)
	}
	if g := read(); g.Instance != b || g.Epoch != 3 {
		t.Fatalf("grant %+v", g)
	}
}
