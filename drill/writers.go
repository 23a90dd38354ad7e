package drill

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbha/dbha/tlsconfig"
)

// The drill writes to table drill_writes (created when missing): one row
// per write, its id unique across drills on the table, and the number of
// the writer that sent it.
const table = "drill_writes"

// readTimeout bounds every read of a connection below the context's
// deadline: a backstop for reading a table's contents.
const readTimeout = 30 * time.Second

// MariaDB reaches MariaDB (and MySQL) servers. The identity of a
// connection is the server's @@server_id ("server_id=2"): unique per
// server in a replicating cluster (replication refuses two equal ids), and
// read on the connection itself, so it names the server that answered
// whatever address was dialled.
type MariaDB struct {
	User, Password, Database string
	// TLS encrypts the writers' connections as dbha's are (nil: clear
	// text).
	TLS *tlsconfig.Settings
}

func (m *MariaDB) open(addr string) (*sql.DB, error) {
	cfg := gomysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Passwd = "tcp", addr, m.User, m.Password
	// The caller's context bounds the dial and every statement; these are
	// backstops.
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = readTimeout, readTimeout, readTimeout
	tc, err := m.TLS.For(addr)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

// Dial opens a pool of one connection to addr and reads @@server_id.
func (m *MariaDB) Dial(ctx context.Context, addr string) (Conn, error) {
	db, err := m.open(addr)
	if err != nil {
		return nil, err
	}
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	var id uint32
	if err := c.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
		c.Close()
		db.Close()
		return nil, fmt.Errorf("read the server id of %s: %w", addr, err)
	}
	return &mariaConn{db: db, c: c, server: fmt.Sprintf("server_id=%d", id), insert: m.insert()}, nil
}

func (m *MariaDB) insert() string {
	return fmt.Sprintf("INSERT INTO %s.%s (id, writer) VALUES (?, ?)", m.Database, table)
}

// Prepare creates the database and the table when missing.
func (m *MariaDB) Prepare(ctx context.Context, addr string) (int64, error) {
	db, err := m.open(addr)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	for _, s := range []string{
		"CREATE DATABASE IF NOT EXISTS " + m.Database,
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (id BIGINT PRIMARY KEY, writer INT NOT NULL, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))", m.Database, table),
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return 0, fmt.Errorf("prepare the drill table on %s: %w", addr, err)
		}
	}
	var last int64
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT COALESCE(MAX(id), 0) FROM %s.%s", m.Database, table)).Scan(&last); err != nil {
		return 0, fmt.Errorf("read the last drill id on %s: %w", addr, err)
	}
	return last, nil
}

// Contents reads every id above after, with its writer.
func (m *MariaDB) Contents(ctx context.Context, addr string, after int64) (map[int64]int, error) {
	db, err := m.open(addr)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT id, writer FROM %s.%s WHERE id > ?", m.Database, table), after)
	if err != nil {
		return nil, fmt.Errorf("read the drill rows of %s: %w", addr, err)
	}
	defer rows.Close()
	out, err := scanContents(rows.Next, func(id *int64, w *int) error { return rows.Scan(id, w) }, rows.Err)
	if err != nil {
		return nil, fmt.Errorf("read the drill rows of %s: %w", addr, err)
	}
	return out, nil
}

type mariaConn struct {
	db     *sql.DB
	c      *sql.Conn
	server string
	insert string
}

func (c *mariaConn) Server() string { return c.server }

func (c *mariaConn) Insert(ctx context.Context, id int64, writer int) error {
	_, err := c.c.ExecContext(ctx, c.insert, id, writer)
	return mariaOutcome(err)
}

func (c *mariaConn) Close() error {
	c.c.Close()
	return c.db.Close()
}

// mariaRefusals are the server errors that end a statement before its
// commit: read-only, privileges, missing objects, keys, locks. Any other
// error — the server shutting down, the query or connection killed, a
// network error — leaves a write's outcome unknown.
var mariaRefusals = map[uint16]bool{
	1044: true, 1045: true, 1049: true, 1062: true, 1142: true, 1146: true, // access, unknown database/table, duplicate key
	1205: true, 1213: true, 1223: true, // lock wait, deadlock, read lock held (FLUSH TABLES WITH READ LOCK)
	1227: true, 1290: true, 1792: true, 1836: true, // privilege, --read-only, read-only transaction, read-only mode
}

// mariaOutcome wraps ErrRefused into the errors that certainly did not
// commit: a refusal in mariaRefusals, or a connection found broken before
// the statement was sent (driver.ErrBadConn).
func mariaOutcome(err error) error {
	if err == nil {
		return nil
	}
	var me *gomysql.MySQLError
	if (errors.As(err, &me) && mariaRefusals[me.Number]) || errors.Is(err, driver.ErrBadConn) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

// Postgres reaches PostgreSQL servers. The identity of a connection is the
// address and port the server reports for it (inet_server_addr(),
// inet_server_port()): a standby cloned from the primary shares its system
// identifier, so that would not tell them apart, while no two servers
// listen on the same address and port.
type Postgres struct {
	User, Password, Database string
	TLS                      *tlsconfig.Settings // as MariaDB's
}

func (p *Postgres) connect(ctx context.Context, addr string) (*pgx.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: port: %w", addr, err)
	}
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = host, uint16(n), p.User, p.Password, p.Database
	cfg.Fallbacks = nil
	if cfg.TLSConfig, err = p.TLS.For(addr); err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "dbha-drill"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

// Dial connects to addr and reads the server's own address and port.
func (p *Postgres) Dial(ctx context.Context, addr string) (Conn, error) {
	c, err := p.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	var host string
	var port int
	if err := c.QueryRow(ctx, "SELECT COALESCE(host(inet_server_addr()), ''), COALESCE(inet_server_port(), 0)").Scan(&host, &port); err != nil {
		c.Close(context.Background())
		return nil, fmt.Errorf("read the server address of %s: %w", addr, err)
	}
	return &pgConn{c: c, server: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// Prepare creates the table when missing.
func (p *Postgres) Prepare(ctx context.Context, addr string) (int64, error) {
	c, err := p.connect(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (id BIGINT PRIMARY KEY, writer INT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())", table)); err != nil {
		return 0, fmt.Errorf("prepare the drill table on %s: %w", addr, err)
	}
	var last int64
	if err := c.QueryRow(ctx, fmt.Sprintf("SELECT COALESCE(MAX(id), 0) FROM %s", table)).Scan(&last); err != nil {
		return 0, fmt.Errorf("read the last drill id on %s: %w", addr, err)
	}
	return last, nil
}

// Contents reads every id above after, with its writer.
func (p *Postgres) Contents(ctx context.Context, addr string, after int64) (map[int64]int, error) {
	c, err := p.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT id, writer FROM %s WHERE id > $1", table), after)
	if err != nil {
		return nil, fmt.Errorf("read the drill rows of %s: %w", addr, err)
	}
	defer rows.Close()
	out, err := scanContents(rows.Next, func(id *int64, w *int) error { return rows.Scan(id, w) }, rows.Err)
	if err != nil {
		return nil, fmt.Errorf("read the drill rows of %s: %w", addr, err)
	}
	return out, nil
}

type pgConn struct {
	c      *pgx.Conn
	server string
}

func (c *pgConn) Server() string { return c.server }

func (c *pgConn) Insert(ctx context.Context, id int64, writer int) error {
	_, err := c.c.Exec(ctx, "INSERT INTO "+table+" (id, writer) VALUES ($1, $2)", id, writer)
	return pgOutcome(err)
}

func (c *pgConn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.c.Close(ctx)
}

// pgRefusals are the SQLSTATE classes that end a statement before its
// commit: data and integrity errors, invalid transaction state (25006, a
// read-only standby or default_transaction_read_only), authorisation,
// rollbacks, syntax and privileges. Any other — operator intervention (57:
// shutdown, a terminated backend, which may come after a local commit
// while waiting for a synchronous standby), connection exceptions,
// internal errors — leaves the outcome unknown.
var pgRefusals = map[string]bool{"22": true, "23": true, "25": true, "28": true, "3D": true, "40": true, "42": true}

// pgOutcome wraps ErrRefused into the errors that certainly did not
// commit: a refusal in pgRefusals, or one pgx reports as raised before
// anything was sent.
func pgOutcome(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if (errors.As(err, &pe) && len(pe.Code) == 5 && pgRefusals[pe.Code[:2]]) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

func scanContents(next func() bool, scan func(*int64, *int) error, rowsErr func() error) (map[int64]int, error) {
	out := map[int64]int{}
	for next() {
		var id int64
		var w int
		if err := scan(&id, &w); err != nil {
			return nil, err
		}
		out[id] = w
	}
	return out, rowsErr()
}
