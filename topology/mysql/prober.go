package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Prober probes MariaDB or MySQL instances. It keeps one small connection
// pool per address; Close releases them. Probe is safe for concurrent use.
type Prober struct {
	engine   topology.Engine
	user     string
	password string
	tls      *tlsconfig.Settings

	mu    sync.Mutex
	pools map[string]*sql.DB
}

// NewProber returns a prober for engine (topology.MariaDB or topology.MySQL)
// that logs in as user. The password is held only in memory.
func NewProber(engine topology.Engine, user, password string) *Prober {
	return &Prober{engine: engine, user: user, password: password, pools: map[string]*sql.DB{}}
}

// SetTLS makes every connection of the prober use t (nil: clear text).
// Call it before the first probe.
func (p *Prober) SetTLS(t *tlsconfig.Settings) { p.tls = t }

// Close closes every pool.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, db := range p.pools {
		errs = append(errs, db.Close())
		delete(p.pools, addr)
	}
	return errors.Join(errs...)
}

func (p *Prober) pool(addr string) (*sql.DB, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if db, ok := p.pools[addr]; ok {
		return db, nil
	}
	db, err := Open(addr, p.user, p.password, p.tls)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	p.pools[addr] = db
	return db, nil
}

// Open returns a pool for one instance, encrypted as t says (nil: clear
// text; never a fall back to it otherwise). Timeouts come from the
// caller's context; the driver's own dial timeout is only a backstop.
func Open(addr, user, password string, t *tlsconfig.Settings) (*sql.DB, error) {
	cfg := gomysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.User = user
	cfg.Passwd = password
	cfg.Timeout = 5 * time.Second
	cfg.ParseTime = true
	tc, err := t.For(addr)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc // AllowFallbackToPlaintext stays false
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector for %s: %w", addr, err)
	}
	db := sql.OpenDB(conn)
	db.SetConnMaxIdleTime(time.Minute)
	return db, nil
}

// Probe reports what addr says about itself. It never returns an error: a
// failure is recorded in the Instance.
func (p *Prober) Probe(ctx context.Context, addr string) topology.Instance {
	in := topology.Instance{Addr: addr}
	db, err := p.pool(addr)
	if err == nil {
		err = p.probe(ctx, db, &in)
	}
	if err != nil {
		in = topology.Instance{Addr: addr, Reachable: false}
		in.Error, in.ErrorCode = describe(err, addr, p.user)
		in.TimedOut = timedOut(ctx, err)
		return in
	}
	in.Reachable = true
	return in
}

func (p *Prober) probe(ctx context.Context, db *sql.DB, in *topology.Instance) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if p.engine == topology.MySQL {
		return probeMySQL(ctx, conn, in)
	}
	return probeMariaDB(ctx, conn, in)
}

// describe turns a probe error into words an operator can act on.
func describe(err error, addr, user string) (string, topology.ProblemCode) {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045, 1698: // ER_ACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
			return fmt.Sprintf("access denied for user %q on %s: check the cluster's user and password_file/password_env (%s)", user, addr, me.Message),
				topology.AccessDenied
		case 1227, 1142, 1044: // missing privilege
			return fmt.Sprintf("user %q on %s lacks a privilege dbha needs (see the README's grants): %s", user, addr, me.Message),
				topology.AccessDenied
		}
		return fmt.Sprintf("%s: %s", addr, me.Error()), topology.InstanceUnreachable
	}
	if isTimeout(err) {
		return fmt.Sprintf("%s did not answer in time: %v", addr, err), topology.InstanceUnreachable
	}
	return fmt.Sprintf("%s: %v", addr, err), topology.InstanceUnreachable
}

// statusRow is one row of SHOW ... SLAVE/REPLICA STATUS, by column name.
type statusRow map[string]sql.NullString

// get returns the first of names present in the row; servers renamed
// columns over time (Master_Host → Source_Host).
func (r statusRow) get(names ...string) string {
	for _, n := range names {
		if v, ok := r[n]; ok && v.Valid {
			return v.String
		}
	}
	return ""
}

// queryStatus runs a SHOW statement and returns its rows by column name.
func queryStatus(ctx context.Context, conn *sql.Conn, query string) ([]statusRow, error) {
	rows, err := conn.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []statusRow
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: %w", query, err)
		}
		row := statusRow{}
		for i, c := range cols {
			row[c] = vals[i]
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// replicationFrom builds the link a status row describes.
func replicationFrom(row statusRow) *topology.Replication {
	host := row.get("Source_Host", "Master_Host")
	port := row.get("Source_Port", "Master_Port")
	r := &topology.Replication{
		Source:   net.JoinHostPort(host, port),
		IOState:  row.get("Replica_IO_Running", "Slave_IO_Running"),
		SQLState: row.get("Replica_SQL_Running", "Slave_SQL_Running"),
		IOError:  row.get("Last_IO_Error"),
		SQLError: row.get("Last_SQL_Error"),
	}
	if file, pos := row.get("Source_Log_File", "Master_Log_File"), row.get("Read_Source_Log_Pos", "Read_Master_Log_Pos"); file != "" {
		r.SourceLogPos = file + ":" + pos
	}
	r.IORunning = r.IOState == "Yes"
	r.SQLRunning = r.SQLState == "Yes"
	r.Halted = r.IOState == "No" && r.IOError == ""
	if s := row.get("Seconds_Behind_Source", "Seconds_Behind_Master"); s != "" {
		if v, err := strconv.ParseFloat(s, 64); err == nil {
			r.SecondsBehind = &v
		}
	}
	return r
}

// timedOut reports whether a probe failed for want of an answer in time.
// The driver does not always wrap the context's error, so the context is
// asked too.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
