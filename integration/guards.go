package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The guards of a hosts lab (Options.Guards): `dbha guard` beside each database server, in
// the server's own host (network namespace), so that a fault that cuts the host cuts its
// guard with it. A guard reaches its server on the host's address and Consul on manager-1's
// server (a real deployment runs a Consul client agent on the database host instead). Each
// runs with a copy of the operator's dbha.yaml, DIR/guard-<server>.yaml, whose path marks the
// process; the clusters' promotion.lease_ttl (guardLeaseTTL) turns leases on in every config.

// KindGuard is `dbha guard` beside a database server in a hosts lab.
const KindGuard = "guard"

// guardLeaseTTL is the lab's promotion.lease_ttl when it runs guards.
const guardLeaseTTL = 2 * time.Second

// guardName is the guard node of a database server: "guard-mariadb-1".
func guardName(server string) string { return KindGuard + "-" + server }

// guardConfigPath is DIR/guard-<server>.yaml.
func (l *Lab) guardConfigPath(g Node) string { return filepath.Join(l.Dir, g.Name+".yaml") }

// planGuards plans one guard per database server, on the server's host. Its Host and Port are
// the guarded server's (its address in `lab status`; it listens on nothing itself).
func (l *Lab) planGuards() error {
	for _, name := range databaseNodes {
		db, err := l.nodeLocked(name)
		if err != nil {
			return err
		}
		g := l.newNode(guardName(name), KindGuard, db.Port)
		g.Host, g.LabHost = db.Host, db.LabHost
		g.DataDir = filepath.Join(l.Dir, g.Name)
		g.Marker = l.guardConfigPath(g)
		if err := os.MkdirAll(g.DataDir, 0o700); err != nil {
			return fmt.Errorf("create %s directory: %w", g.Name, err)
		}
		l.Nodes = append(l.Nodes, g)
	}
	return nil
}

// nodeLocked is Node for callers that hold l.mu or run before the lab is shared.
func (l *Lab) nodeLocked(name string) (Node, error) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("lab has no node %q", name)
}

// guardedServer is the database server a guard node guards.
func guardedServer(g Node) string { return strings.TrimPrefix(g.Name, KindGuard+"-") }

// guardCluster is the cluster of a database server.
func guardCluster(server string) string {
	if strings.HasPrefix(server, KindPostgres) {
		return postgresCluster
	}
	return mariadbCluster
}

// guardLaunch runs `dbha guard` for the guard's server, in the server's host.
func (l *Lab) guardLaunch(g Node) (launch, error) {
	if l.Binary == "" {
		return launch{}, fmt.Errorf("%s: the lab has no dbha binary to run", g.Name)
	}
	return launch{path: l.Binary, args: []string{"--config", g.marker(), "guard",
		"--cluster", guardCluster(guardedServer(g)), "--instance", g.Addr()}, logFile: g.LogFile}, nil
}

// guardReady succeeds once the guard has logged its start (it has read its config and its
// password, and runs rounds).
func (l *Lab) guardReady(g Node) func(context.Context) error {
	return func(context.Context) error {
		b, err := os.ReadFile(g.LogFile)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(`"guard started"`)) {
			return errors.New("the guard has not started yet")
		}
		return nil
	}
}

// writeGuardConfigs writes each guard's copy of the operator's config.
func (l *Lab) writeGuardConfigs(text string) error {
	for _, g := range l.nodesOfKind(KindGuard) {
		if err := writeFileAtomic(l.guardConfigPath(g), []byte(text), 0o600); err != nil {
			return fmt.Errorf("write %s config: %w", g.Name, err)
		}
	}
	return nil
}

// upGuards starts every guard at once, once the clusters, Consul and the configs are ready.
func (l *Lab) upGuards(ctx context.Context) error {
	guards := l.nodesOfKind(KindGuard)
	if len(guards) == 0 {
		return nil
	}
	start := time.Now()
	err := inParallel(guards, func(n Node) error { return l.startFresh(ctx, n.Name, func(Node) error { return nil }) })
	if err != nil {
		return fmt.Errorf("guards: %w", err)
	}
	l.progressf("guards: %d running `dbha guard` beside the database servers, lease %v (%.1fs)", len(guards), guardLeaseTTL, time.Since(start).Seconds())
	return nil
}
