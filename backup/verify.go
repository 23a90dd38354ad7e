package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dbha/dbha/topology"
)

// VerifyOptions say where and as whom a backup is restored to be checked.
type VerifyOptions struct {
	// Scratch is the directory the throwaway copy goes under (the system
	// temporary directory when empty); it needs room for the whole
	// uncompressed backup.
	Scratch string
	Owner   Owner
	// Roles are PostgreSQL role names the backup holds (the cluster's
	// accounts), to find its superuser when it is not "postgres".
	Roles    []string
	Progress func(int64)
	Now      func() time.Time
	// Store is dbha's change-stream store of the cluster, for the
	// point-in-time window; none: the window is not looked at.
	Store string
}

// Verify proves a backup restores: its files against the catalog's
// SHA-256, then pg_verifybackup against the manifest or mariadb-backup
// --prepare, then a throwaway server on the copy, on a free loopback
// port, on which every page is read and checked: MariaDB CHECK TABLE of
// every table; PostgreSQL pg_amcheck of every table (verify_heapam) and
// B-tree index (with every heap tuple looked up in it), and pg_checksums
// once the server is stopped when data checksums are on. With o.Store it
// also finds the point-in-time window the backup supports today, from its
// position to the newest the store holds, and fails when there is none.
// The outcome is recorded in the catalog entry (and returned), failed or
// not, unless ctx ended first; the copy is removed.
func Verify(ctx context.Context, repo Repository, e Entry, o VerifyOptions) (Entry, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	detail, window, err := verify(ctx, repo, e, o)
	if err != nil && ctx.Err() != nil {
		// Cut short (the daemon stopping, a failover): that says nothing
		// of the backup, and its last verification stands.
		return e, fmt.Errorf("verify %s: cut short: %w (%v)", e.ID, context.Cause(ctx), err)
	}
	v := &Verification{At: start, OK: err == nil, Detail: detail, Seconds: now().Sub(start).Seconds(), PITR: window}
	if err != nil {
		v.Detail = err.Error()
	}
	e.Verification = v
	if serr := Save(ctx, repo, e); serr != nil {
		return e, errorsJoin(fmt.Errorf("verify %s: %w", e.ID, err), serr)
	}
	if err != nil {
		return e, fmt.Errorf("verify %s: %w", e.ID, err)
	}
	return e, nil
}

func verify(ctx context.Context, repo Repository, e Entry, o VerifyOptions) (string, *Window, error) {
	scratch, err := os.MkdirTemp(o.Scratch, "dbha-verify-"+e.ID+"-")
	if err != nil {
		return "", nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	if err := unpack(ctx, repo, e, scratch, o.Owner, o.Progress, true, ""); err != nil {
		return "", nil, err
	}
	srv, err := StartServer(ctx, e.Engine, scratch, ServerOptions{Owner: o.Owner, Roles: o.Roles})
	if err != nil {
		return "", nil, err
	}
	defer srv.Stop()
	version, checked, checksums, err := checkEveryPage(ctx, srv)
	if err != nil {
		return "", nil, err
	}
	if err := srv.Stop(); err != nil {
		return "", nil, err
	}
	if checksums {
		if err := pgChecksums(ctx, scratch, o.Owner); err != nil {
			return "", nil, err
		}
		checked += "; pg_checksums: every page's checksum matches"
	}
	check := "pg_verifybackup"
	if e.Engine != topology.Postgres {
		check = "mariadb-backup --prepare"
	}
	detail := fmt.Sprintf("%d files match their SHA-256; %s passed; a throwaway %s server opened on %s; %s",
		len(e.Files), check, version, srv.Addr, checked)
	window, err := PITRWindow(e, o.Store)
	switch {
	case errors.Is(err, ErrNoStoreHere):
		detail += "; point in time: not known here: " + err.Error()
	case err != nil:
		return detail, nil, err
	case window != nil:
		detail += "; " + window.String()
	}
	return detail, window, nil
}

// checkEveryPage reads and checks every page of the throwaway server's
// tables and returns its version, what was checked, and whether a
// PostgreSQL cluster has data checksums (checked once it is stopped).
func checkEveryPage(ctx context.Context, srv *Server) (string, string, bool, error) {
	db, err := srv.DB("")
	if err != nil {
		return "", "", false, err
	}
	defer db.Close()
	versionQuery := "SELECT 'PostgreSQL ' || current_setting('server_version')"
	if srv.Engine != topology.Postgres {
		versionQuery = "SELECT CONCAT('MariaDB ', VERSION())"
	}
	var version string
	if err := db.QueryRowContext(ctx, versionQuery).Scan(&version); err != nil {
		return "", "", false, fmt.Errorf("the throwaway server does not answer: %w", err)
	}
	if srv.Engine != topology.Postgres {
		n, err := checkTables(ctx, db)
		return version, fmt.Sprintf("CHECK TABLE passed on all %d tables", n), false, err
	}
	var checksums string
	if err := db.QueryRowContext(ctx, "SHOW data_checksums").Scan(&checksums); err != nil {
		return version, "", false, err
	}
	if err := pgAmcheck(ctx, srv); err != nil {
		return version, "", false, err
	}
	return version, "pg_amcheck passed: every page of every table and B-tree index of every database read and checked, every heap tuple found in its indexes",
		checksums == "on", nil
}

// checkTables runs CHECK TABLE on every user table of a MariaDB server,
// which reads every page of the table and its indexes.
func checkTables(ctx context.Context, db *sql.DB) (int, error) {
	names, err := queryStrings(ctx, db, mariadbTables)
	if err != nil {
		return 0, err
	}
	for i, n := range names {
		rows, err := db.QueryContext(ctx, "CHECK TABLE "+n)
		if err != nil {
			return i, fmt.Errorf("CHECK TABLE %s: %w", n, err)
		}
		var problems []string
		var last string
		for rows.Next() {
			var table, op, kind, text string
			if err := rows.Scan(&table, &op, &kind, &text); err != nil {
				rows.Close()
				return i, err
			}
			if strings.EqualFold(kind, "error") || strings.EqualFold(kind, "warning") {
				problems = append(problems, kind+": "+text)
			}
			last = text
		}
		rows.Close()
		if len(problems) > 0 || last != "OK" {
			return i, fmt.Errorf("CHECK TABLE %s: %s (%s)", n, strings.Join(problems, "; "), last)
		}
	}
	return len(names), nil
}

func queryStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// pgAmcheck runs pg_amcheck on every database of the throwaway server,
// installing amcheck where it is missing (in the throwaway copy only):
// verify_heapam reads every page of every table, and bt_index_check every
// B-tree index, with every heap tuple looked up in its indexes.
func pgAmcheck(ctx context.Context, srv *Server) error {
	bin, err := toolPath("pg_amcheck")
	if err != nil {
		return err
	}
	port := srv.Addr[strings.LastIndex(srv.Addr, ":")+1:]
	out, err := exec.CommandContext(ctx, bin, "-h", srv.run, "-p", port, "-U", srv.superuser, "--no-password",
		"--all", "--install-missing", "--heapallindexed", "--no-strict-names").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_amcheck: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

// pgChecksums checks every page's checksum of a stopped PostgreSQL data
// directory, as its owner.
func pgChecksums(ctx context.Context, dir string, owner Owner) error {
	bin, err := toolPath("pg_checksums")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "--check", "-D", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner.credential()}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_checksums: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// mariadbTables lists the user tables of a MariaDB server, quoted.
const mariadbTables = "SELECT CONCAT('`', REPLACE(table_schema, '`', '``'), '`.`', REPLACE(table_name, '`', '``'), '`')" +
	" FROM information_schema.tables WHERE table_type = 'BASE TABLE'" +
	" AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"
