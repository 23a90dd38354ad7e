package backup

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

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
}

// Verify proves a backup restores: its files against the catalog's
// SHA-256, then pg_verifybackup against the manifest or mariadb-backup
// --prepare, then a throwaway server on the copy, on a free loopback
// port, which must open and answer a read of every table. The outcome is
// recorded in the catalog entry (and returned), failed or not; the copy is
// removed.
func Verify(ctx context.Context, repo Repository, e Entry, o VerifyOptions) (Entry, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	detail, err := verify(ctx, repo, e, o)
	v := &Verification{At: start, OK: err == nil, Detail: detail, Seconds: now().Sub(start).Seconds()}
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

func verify(ctx context.Context, repo Repository, e Entry, o VerifyOptions) (string, error) {
	scratch, err := os.MkdirTemp(o.Scratch, "dbha-verify-"+e.ID+"-")
	if err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	if err := unpack(ctx, repo, e, scratch, o.Owner, o.Progress, true); err != nil {
		return "", err
	}
	srv, err := StartServer(ctx, e.Engine, scratch, ServerOptions{Owner: o.Owner, Roles: o.Roles})
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	tables, version, err := readEveryTable(ctx, srv)
	if err != nil {
		return "", err
	}
	check := "pg_verifybackup"
	if e.Engine != topology.Postgres {
		check = "mariadb-backup --prepare"
	}
	return fmt.Sprintf("%d files match their SHA-256; %s passed; a throwaway %s server opened on %s and %d tables answered",
		len(e.Files), check, version, srv.Addr, tables), nil
}

// readEveryTable reads one row of every user table of every database and
// returns how many tables answered and the server's version.
func readEveryTable(ctx context.Context, srv *Server) (int, string, error) {
	db, err := srv.DB("")
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	versionQuery := "SELECT 'PostgreSQL ' || current_setting('server_version')"
	if srv.Engine != topology.Postgres {
		versionQuery = "SELECT CONCAT('MariaDB ', VERSION())"
	}
	var version string
	if err := db.QueryRowContext(ctx, versionQuery).Scan(&version); err != nil {
		return 0, "", fmt.Errorf("the throwaway server does not answer: %w", err)
	}
	if srv.Engine != topology.Postgres {
		n, err := readTables(ctx, db, mariadbTables)
		return n, version, err
	}
	rows, err := db.QueryContext(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
	if err != nil {
		return 0, "", err
	}
	var databases []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return 0, "", err
		}
		databases = append(databases, d)
	}
	rows.Close()
	total := 0
	for _, d := range databases {
		ddb, err := srv.DB(d)
		if err != nil {
			return total, "", err
		}
		n, err := readTables(ctx, ddb, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
			AND n.nspname NOT LIKE 'pg_toast%'`)
		ddb.Close()
		total += n
		if err != nil {
			return total, "", fmt.Errorf("database %s: %w", pgx.Identifier{d}.Sanitize(), err)
		}
	}
	return total, version, nil
}

// mariadbTables lists the user tables of a MariaDB server, quoted.
const mariadbTables = "SELECT CONCAT('`', REPLACE(table_schema, '`', '``'), '`.`', REPLACE(table_name, '`', '``'), '`')" +
	" FROM information_schema.tables WHERE table_type = 'BASE TABLE'" +
	" AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"

// readTables lists tables with list (one quoted name per row) and reads a
// row of each.
func readTables(ctx context.Context, db *sql.DB, list string) (int, error) {
	rows, err := db.QueryContext(ctx, list)
	if err != nil {
		return 0, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for i, n := range names {
		var one int
		err := db.QueryRowContext(ctx, "SELECT 1 FROM "+n+" LIMIT 1").Scan(&one)
		if err != nil && err != sql.ErrNoRows {
			return i, fmt.Errorf("table %s does not answer: %w", n, err)
		}
	}
	return len(names), nil
}
