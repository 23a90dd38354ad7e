package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Prober probes PostgreSQL instances. It keeps one small pool per address;
// Close releases them. Probe is safe for concurrent use.
type Prober struct {
	user     string
	password string
	database string
	tls      *tlsconfig.Settings

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool
	// histories holds, per address, the history of the latest timeline
	// read there: a timeline's history never changes, so it is fetched
	// once per timeline, not on every probe (it takes a replication
	// connection of its own, which a server that hangs mid-probe would
	// hold until the probe's deadline, after it had answered).
	histories map[string]timelineHistory
	// fetchHistory reads a timeline's history from the server
	// (timelineHistory; replaced in tests).
	fetchHistory func(ctx context.Context, addr string, tl uint32) ([]topology.TimelineSwitch, error)
}

// timelineHistory is the history of one timeline.
type timelineHistory struct {
	tl      uint32
	history []topology.TimelineSwitch
}

// NewProber returns a prober that logs in as user to the "postgres" database.
// The password is held only in memory.
func NewProber(user, password string) *Prober {
	p := &Prober{user: user, password: password, database: "postgres", pools: map[string]*pgxpool.Pool{},
		histories: map[string]timelineHistory{}}
	p.fetchHistory = p.timelineHistory
	return p
}

// SetTLS makes every connection of the prober use t (nil: clear text).
// Call it before the first probe.
func (p *Prober) SetTLS(t *tlsconfig.Settings) { p.tls = t }

// Close closes every pool.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pool := range p.pools {
		pool.Close()
		delete(p.pools, addr)
	}
	return nil
}

// ConnConfig returns the connection settings for one instance, encrypted
// as t says (nil: clear text; otherwise never a fall back to it). Timeouts
// come from the caller's context; ConnectTimeout is only a backstop.
func ConnConfig(addr, user, password, database string, t *tlsconfig.Settings) (*pgconn.Config, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("instance address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("instance address %q: bad port", addr)
	}
	// An empty connection string still reads PG* variables and ~/.pgpass;
	// everything that matters is overwritten below.
	cfg, err := pgconn.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = host, uint16(n)
	cfg.User, cfg.Password, cfg.Database = user, password, database
	cfg.Fallbacks = nil
	if cfg.TLSConfig, err = t.For(addr); err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	cfg.RuntimeParams["application_name"] = "dbha"
	return cfg, nil
}

func (p *Prober) pool(ctx context.Context, addr string) (*pgxpool.Pool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pool, ok := p.pools[addr]; ok {
		return pool, nil
	}
	cc, err := ConnConfig(addr, p.user, p.password, p.database, p.tls)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.ConnConfig.Config = *cc
	pc.MaxConns = 2
	pc.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connection pool for %s: %w", addr, err)
	}
	p.pools[addr] = pool
	return pool, nil
}

// Probe reports what addr says about itself. It never returns an error: a
// failure is recorded in the Instance.
func (p *Prober) Probe(ctx context.Context, addr string) topology.Instance {
	in := topology.Instance{Addr: addr}
	pool, err := p.pool(ctx, addr)
	if err == nil {
		err = p.probe(ctx, pool, &in)
	}
	if err != nil {
		in = topology.Instance{Addr: addr}
		in.Error, in.ErrorCode = describe(err, addr, p.user)
		in.TimedOut = timedOut(ctx, err)
		return in
	}
	in.Reachable = true
	if tl := timelineOf(in); tl > 1 {
		// Best effort: without the history Compare assumes a linear one.
		if h, err := p.history(ctx, addr, tl); err == nil {
			in.Current = in.Current.WithHistory(h)
			in.Applied = in.Applied.WithHistory(h)
			in.Received = in.Received.WithHistory(h)
		}
	}
	return in
}

// history returns the history of timeline tl at addr, fetched once.
func (p *Prober) history(ctx context.Context, addr string, tl uint32) ([]topology.TimelineSwitch, error) {
	p.mu.Lock()
	known, ok := p.histories[addr]
	p.mu.Unlock()
	if ok && known.tl == tl {
		return slices.Clone(known.history), nil
	}
	h, err := p.fetchHistory(ctx, addr, tl)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.histories[addr] = timelineHistory{tl: tl, history: slices.Clone(h)}
	p.mu.Unlock()
	return h, nil
}

func timelineOf(in topology.Instance) uint32 {
	return max(in.Current.Timeline(), in.Received.Timeline())
}

// describe turns a probe error into words an operator can act on.
func describe(err error, addr, user string) (string, topology.ProblemCode) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Sprintf("access denied for user %q on %s: check the cluster's user and password_file/password_env (%s)", user, addr, pe.Message),
				topology.AccessDenied
		case "42501": // insufficient_privilege
			return fmt.Sprintf("user %q on %s lacks a privilege dbha needs (see the README's grants): %s", user, addr, pe.Message),
				topology.AccessDenied
		}
		return fmt.Sprintf("%s: %s (SQLSTATE %s)", addr, pe.Message, pe.Code), topology.InstanceUnreachable
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return fmt.Sprintf("%s did not answer in time: %v", addr, err), topology.InstanceUnreachable
	}
	return fmt.Sprintf("%s: %v", addr, err), topology.InstanceUnreachable
}

// timedOut reports whether a probe failed for want of an answer in time.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}
