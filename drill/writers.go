package drill

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// The drill writes to table drill_rows in Database (created when missing).
const table = "drill_rows"

// MariaDBWriter writes rows with one connection per instance.
type MariaDBWriter struct {
	User, Password, Database string

	mu  sync.Mutex
	dbs map[string]*sql.DB
}

func (w *MariaDBWriter) db(addr string) (*sql.DB, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dbs == nil {
		w.dbs = map[string]*sql.DB{}
	}
	if db, ok := w.dbs[addr]; ok {
		return db, nil
	}
	cfg := gomysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", addr, w.User, w.Password
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 500*time.Millisecond, time.Second, time.Second
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	w.dbs[addr] = db
	return db, nil
}

// drop forgets an instance's connection after an error, so the next write
// dials afresh.
func (w *MariaDBWriter) drop(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if db, ok := w.dbs[addr]; ok {
		db.Close()
		delete(w.dbs, addr)
	}
}

func (w *MariaDBWriter) Prepare(ctx context.Context, addr string) (int64, error) {
	db, err := w.db(addr)
	if err != nil {
		return 0, err
	}
	for _, s := range []string{
		"CREATE DATABASE IF NOT EXISTS " + w.Database,
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (seq BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))", w.Database, table),
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return 0, fmt.Errorf("prepare the drill table on %s: %w", addr, err)
		}
	}
	var last int64
	err = db.QueryRowContext(ctx, fmt.Sprintf("SELECT COALESCE(MAX(seq), 0) FROM %s.%s", w.Database, table)).Scan(&last)
	return last, err
}

func (w *MariaDBWriter) Write(ctx context.Context, addr string, seq int64) error {
	db, err := w.db(addr)
	if err == nil {
		_, err = db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s.%s (seq) VALUES (?)", w.Database, table), seq)
	}
	if err != nil {
		w.drop(addr)
	}
	return err
}

func (w *MariaDBWriter) Missing(ctx context.Context, addr string, seqs []int64) ([]int64, error) {
	db, err := w.db(addr)
	if err != nil {
		return nil, err
	}
	return missing(seqs, func(chunk []int64) (map[int64]bool, error) {
		rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT seq FROM %s.%s WHERE seq IN (%s)", w.Database, table, join(chunk)))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return scanSeqs(rows.Next, func(v *int64) error { return rows.Scan(v) }, rows.Err)
	})
}

func (w *MariaDBWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a, db := range w.dbs {
		db.Close()
		delete(w.dbs, a)
	}
	return nil
}

// PostgresWriter writes rows with one connection per instance.
type PostgresWriter struct {
	User, Password, Database string

	mu    sync.Mutex
	conns map[string]*pgx.Conn
}

func (w *PostgresWriter) conn(ctx context.Context, addr string) (*pgx.Conn, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conns == nil {
		w.conns = map[string]*pgx.Conn{}
	}
	if c, ok := w.conns[addr]; ok {
		return c, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=1")
	if err != nil {
		return nil, err
	}
	p, _ := strconv.Atoi(port)
	cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = host, uint16(p), w.User, w.Password, w.Database
	cfg.Fallbacks = nil
	cfg.RuntimeParams["application_name"] = "dbha-drill"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	w.conns[addr] = c
	return c, nil
}

func (w *PostgresWriter) drop(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.conns[addr]; ok {
		c.Close(context.Background())
		delete(w.conns, addr)
	}
}

func (w *PostgresWriter) Prepare(ctx context.Context, addr string) (int64, error) {
	c, err := w.conn(ctx, addr)
	if err != nil {
		return 0, err
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (seq BIGINT PRIMARY KEY, at TIMESTAMPTZ DEFAULT now())", table)); err != nil {
		return 0, fmt.Errorf("prepare the drill table on %s: %w", addr, err)
	}
	var last int64
	err = c.QueryRow(ctx, fmt.Sprintf("SELECT COALESCE(MAX(seq), 0) FROM %s", table)).Scan(&last)
	return last, err
}

func (w *PostgresWriter) Write(ctx context.Context, addr string, seq int64) error {
	c, err := w.conn(ctx, addr)
	if err == nil {
		_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO %s (seq) VALUES ($1)", table), seq)
	}
	if err != nil {
		w.drop(addr)
	}
	return err
}

func (w *PostgresWriter) Missing(ctx context.Context, addr string, seqs []int64) ([]int64, error) {
	c, err := w.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	return missing(seqs, func(chunk []int64) (map[int64]bool, error) {
		rows, err := c.Query(ctx, fmt.Sprintf("SELECT seq FROM %s WHERE seq = ANY($1)", table), chunk)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return scanSeqs(rows.Next, func(v *int64) error { return rows.Scan(v) }, rows.Err)
	})
}

func (w *PostgresWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a, c := range w.conns {
		c.Close(context.Background())
		delete(w.conns, a)
	}
	return nil
}

// missing asks in chunks which seqs an instance has, and returns the rest.
func missing(seqs []int64, have func([]int64) (map[int64]bool, error)) ([]int64, error) {
	var out []int64
	for len(seqs) > 0 {
		n := min(len(seqs), 1000)
		found, err := have(seqs[:n])
		if err != nil {
			return nil, err
		}
		for _, s := range seqs[:n] {
			if !found[s] {
				out = append(out, s)
			}
		}
		seqs = seqs[n:]
	}
	return out, nil
}

func scanSeqs(next func() bool, scan func(*int64) error, rowsErr func() error) (map[int64]bool, error) {
	found := map[int64]bool{}
	for next() {
		var v int64
		if err := scan(&v); err != nil {
			return nil, err
		}
		found[v] = true
	}
	return found, rowsErr()
}

func join(seqs []int64) string {
	parts := make([]string, len(seqs))
	for i, s := range seqs {
		parts[i] = strconv.FormatInt(s, 10)
	}
	return strings.Join(parts, ",")
}
