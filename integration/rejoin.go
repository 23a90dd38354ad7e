package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NodeByAddr returns the node listening on addr (host:port).
func (l *Lab) NodeByAddr(addr string) (Node, error) {
	for _, n := range l.nodes() {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("no lab node listens on %s", addr)
}

// Rejoin makes a PostgreSQL node that was a primary a standby of primary
// (a name or host:port), as an operator would after a failover: stop it,
// pg_rewind it from the new primary, give it its own settings back (which
// pg_rewind copied over from the source), point it at the new primary
// through a slot of its own, and start it. A MariaDB node needs none of
// this: dbha rejoins it itself.
func (l *Lab) Rejoin(ctx context.Context, name, primary string) error {
	n, err := l.Node(name)
	if err != nil {
		return err
	}
	p, err := l.Node(primary)
	if err != nil {
		if p, err = l.NodeByAddr(primary); err != nil {
			return err
		}
	}
	if n.Kind != KindPostgres || p.Kind != KindPostgres {
		return fmt.Errorf("rejoin %s to %s: only PostgreSQL nodes are rejoined this way", n.Name, p.Name)
	}
	if _, err := lookBinary("pg_rewind"); err != nil {
		return err // before stopping anything
	}
	if err := l.Stop(ctx, n.Name); err != nil {
		return err
	}
	// pg_rewind reads the source's timeline from its control file, which a
	// freshly promoted server updates only at its next checkpoint: without
	// one it sees "the same timeline" and rewinds nothing.
	if err := l.pgExec(ctx, p, "postgres", []string{"CHECKPOINT"}); err != nil {
		return fmt.Errorf("checkpoint %s before pg_rewind: %w", p.Name, err)
	}
	if err := l.rewind(ctx, n, p); err != nil {
		return err
	}
	if err := l.pgExec(ctx, p, "postgres", []string{fmt.Sprintf(
		"SELECT pg_create_physical_replication_slot('%[1]s', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%[1]s')",
		slotName(n))}); err != nil {
		return fmt.Errorf("slot for %s on %s: %w", n.Name, p.Name, err)
	}
	if err := l.standbySettings(n, p); err != nil {
		return fmt.Errorf("configure %s as a standby of %s: %w", n.Name, p.Name, err)
	}
	return l.Start(ctx, n.Name)
}

// rewind runs pg_rewind on n's data directory with p as the source, as the
// lab user; the superuser password goes through the environment.
func (l *Lab) rewind(ctx context.Context, n, p Node) error {
	bin, err := lookBinary("pg_rewind")
	if err != nil {
		return err
	}
	pw, err := readPassword(l.Secret("postgres-superuser"))
	if err != nil {
		return err
	}
	return l.run(ctx, launch{
		path: bin,
		args: []string{"--target-pgdata=" + n.DataDir, "--no-sync",
			"--source-server=host=" + p.Host + " port=" + strconv.Itoa(p.Port) + " user=postgres dbname=postgres"},
		env:       []string{"PGPASSWORD=" + pw},
		logFile:   n.LogFile,
		asLabUser: true,
		netns:     l.netnsOf(n), // from the target's own host
	})
}

// standbySettings undoes what pg_rewind copied from the source (its port,
// its own primary_conninfo and slot, a fence) and makes n a standby of p.
func (l *Lab) standbySettings(n, p Node) error {
	if err := l.writePGNodeConf(n); err != nil {
		return err
	}
	path := filepath.Join(n.DataDir, "postgresql.auto.conf")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		key := strings.TrimSpace(strings.SplitN(line, "=", 2)[0])
		switch key {
		case "primary_conninfo", "primary_slot_name", "default_transaction_read_only", "restore_command":
			continue
		}
		keep = append(keep, line)
	}
	keep = append(keep, fmt.Sprintf("primary_slot_name = '%s'", slotName(n)))
	if err := os.WriteFile(path, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	pw, err := readPassword(l.Secret("postgres-repl"))
	if err != nil {
		return err
	}
	if err := setPrimaryConninfo(n, p, pw, l.conninfoSSL()); err != nil {
		return err
	}
	signal := filepath.Join(n.DataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return err
	}
	return l.chownLab(signal)
}
