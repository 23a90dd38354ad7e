package checksum

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The PostgreSQL engine. A physical standby replays WAL, never statements,
// so no statement can make it compute a chunk at the primary's point: the
// points are matched instead. For each chunk:
//
//  1. the primary hashes the chunk (one statement: one snapshot, S1) and
//     then reads its WAL insert position L1, past every commit record
//     that S1 saw (a commit's record is inserted before it becomes
//     visible);
//  2. each standby waits until it has replayed past L1 and hashes the
//     chunk;
//  3. the primary hashes the chunk again (S2, after every standby's read).
//
// The hash covers each row and its xmin, which a physical standby holds as
// the primary does, so it changes with any committed insert, update or
// delete of the chunk, even one that puts the same values back. When the
// primary's two hashes agree, no commit touched the chunk between S1 and
// S2: every commit that did is in WAL before L1, and a standby that has
// replayed past L1 but read before S2 must see exactly the rows the
// primary saw. A standby's differing hash is then a real difference. When
// the primary's hashes differ, the chunk changed meanwhile and proves
// nothing: it is tried again, a few times, and else reported as unstable,
// never as a difference.

// Postgres checks a PostgreSQL cluster: Connect opens a session to an
// instance's database.
type Postgres struct {
	Primary  string
	standbys []string
	connect  func(ctx context.Context, addr, database string) (*pgx.Conn, error)
	conns    map[[2]string]*pgx.Conn
	// MaxKeylessRows: as MariaDB's.
	MaxKeylessRows int64
	// A chunk of at most RowLevelMax rows (default 20 000) that changed
	// between the primary's two hashes is compared row by row at once
	// (leaving out the rows that change); a larger one is hashed again,
	// Attempts times in all (default 3), and then reported unstable (the
	// run then tries it smaller). WaitTimeout bounds a standby's replay up
	// to L1, and then each of its reads (default 1 minute).
	Attempts    int
	RowLevelMax int64
	WaitTimeout time.Duration
}

// NewPostgres checks primary against standbys.
func NewPostgres(primary string, standbys []string, connect func(ctx context.Context, addr, database string) (*pgx.Conn, error)) *Postgres {
	return &Postgres{Primary: primary, standbys: slices.Clone(standbys), connect: connect, conns: map[[2]string]*pgx.Conn{},
		MaxKeylessRows: 100_000, Attempts: 3, RowLevelMax: 20_000, WaitTimeout: time.Minute}
}

// Close closes every session.
func (p *Postgres) Close() {
	for _, c := range p.conns {
		c.Close(context.Background())
	}
}

func (p *Postgres) Replicas() []string { return slices.Clone(p.standbys) }

func (p *Postgres) lose(standby string, err error) error {
	p.standbys = slices.DeleteFunc(p.standbys, func(x string) bool { return x == standby })
	for k, c := range p.conns {
		if k[0] == standby {
			c.Close(context.Background())
			delete(p.conns, k)
		}
	}
	return &ReplicaError{Replica: standby, Err: err}
}

func (p *Postgres) conn(ctx context.Context, addr, database string) (*pgx.Conn, error) {
	k := [2]string{addr, database}
	if c, ok := p.conns[k]; ok && !c.IsClosed() {
		return c, nil
	}
	c, err := p.connect(ctx, addr, database)
	if err != nil {
		return nil, err
	}
	p.conns[k] = c
	return c, nil
}

func quotePg(name string) string { return pgx.Identifier{name}.Sanitize() }

func (t Table) pgName() string { return quotePg(t.Schema) + "." + quotePg(t.Name) }

// Tables lists the ordinary tables of every database that takes
// connections, outside the system schemas, with their key.
func (p *Postgres) Tables(ctx context.Context, only []string) ([]Table, []Skipped, error) {
	c, err := p.conn(ctx, p.Primary, "postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("primary %s: %w", p.Primary, err)
	}
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
	if err != nil {
		return nil, nil, fmt.Errorf("list databases on %s: %w", p.Primary, err)
	}
	dbs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("list databases on %s: %w", p.Primary, err)
	}
	var out []Table
	var skipped []Skipped
	seen := map[string]bool{}
	for _, db := range dbs {
		tables, err := p.tablesOf(ctx, db)
		if err != nil {
			return nil, nil, err
		}
		for _, t := range tables {
			seen[t.String()] = true
			if len(only) > 0 && !slices.Contains(only, t.String()) {
				continue
			}
			if len(t.Key) == 0 && t.Rows > p.MaxKeylessRows {
				skipped = append(skipped, Skipped{Table: t.String(), Reason: fmt.Sprintf(
					"no primary key or unique key on NOT NULL columns, and about %d rows: too many to check as one chunk (at most %d)", t.Rows, p.MaxKeylessRows)})
				continue
			}
			out = append(out, t)
		}
	}
	for _, name := range only {
		if !seen[name] {
			skipped = append(skipped, Skipped{Table: name, Reason: "no such table on the primary (name it database.schema.table)", Missing: true})
		}
	}
	return out, skipped, nil
}

func (p *Postgres) tablesOf(ctx context.Context, database string) ([]Table, error) {
	c, err := p.conn(ctx, p.Primary, database)
	if err != nil {
		return nil, fmt.Errorf("primary %s, database %s: %w", p.Primary, database, err)
	}
	// Each table with its columns and types, and its key: the primary key,
	// else a unique index on NOT NULL columns without a predicate.
	rows, err := c.Query(ctx, `SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint,
	  array(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
	  array(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
	  coalesce((SELECT array_agg(a.attname ORDER BY k.ord) FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum), '{}')
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	LEFT JOIN LATERAL (SELECT x.indkey FROM pg_index x WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid AND x.indpred IS NULL
	    AND 0 <> ALL (x.indkey) AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = ANY (x.indkey) AND NOT a.attnotnull)
	  ORDER BY x.indisprimary DESC, x.indexrelid LIMIT 1) i ON true
	WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
	ORDER BY n.nspname, c.relname`)
	if err != nil {
		return nil, fmt.Errorf("list tables of %s: %w", database, err)
	}
	defer rows.Close()
	var out []Table
	for rows.Next() {
		t := Table{Database: database, Types: map[string]string{}}
		var types []string
		if err := rows.Scan(&t.Schema, &t.Name, &t.Rows, &t.Columns, &types, &t.Key); err != nil {
			return nil, err
		}
		for i, c := range t.Columns {
			t.Types[c] = types[i]
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Begin has nothing to prepare.
func (p *Postgres) Begin(context.Context, Table) error { return nil }

func (t Table) pgPlaceholder(col string, n int) string {
	return fmt.Sprintf("$%d::%s", n, t.Types[col])
}

// Boundary reads the key of the size-th row after lower, in key order.
func (p *Postgres) Boundary(ctx context.Context, t Table, lower Key, size int) (Key, error) {
	if len(t.Key) == 0 {
		return nil, nil
	}
	c, err := p.conn(ctx, p.Primary, t.Database)
	if err != nil {
		return nil, err
	}
	where, args := Chunk{Lower: lower}.Where(t.Key, quotePg, t.pgPlaceholder, 1)
	var sel []string
	for _, k := range t.Key {
		sel = append(sel, quotePg(k)+"::text")
	}
	// ORDER BY names the table's columns (r.), not the text output
	// columns of the same names, which would sort as text.
	var order []string
	for _, k := range t.Key {
		order = append(order, "r."+quotePg(k))
	}
	q := fmt.Sprintf("SELECT %s FROM ONLY %s AS r WHERE %s ORDER BY %s LIMIT 1 OFFSET %d",
		strings.Join(sel, ", "), t.pgName(), where, strings.Join(order, ", "), size-1)
	vals := make([]string, len(t.Key))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err = c.QueryRow(ctx, q, args...).Scan(ptrs...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return Key(vals), nil
}

// hash is a chunk's row count and the XOR of its rows' hashes (row and
// xmin).
type hash struct {
	rows int64
	sum  int64
}

func (h hash) String() string { return fmt.Sprintf("%016x", uint64(h.sum)) }

func (p *Postgres) hash(ctx context.Context, c *pgx.Conn, t Table, ch Chunk) (hash, error) {
	where, args := ch.Where(t.Key, quotePg, t.pgPlaceholder, 1)
	q := fmt.Sprintf("SELECT count(*), coalesce(bit_xor(hashtextextended(r::text || '@' || r.xmin::text, 0)), 0) FROM ONLY %s AS r WHERE %s",
		t.pgName(), where)
	var h hash
	err := c.QueryRow(ctx, q, args...).Scan(&h.rows, &h.sum)
	return h, err
}

// Check compares one chunk on every standby, bracketed by two reads on
// the primary (see above). A chunk that keeps changing is compared row by
// row once it is small (RowLevelMax), leaving out the rows that changed
// in between; a difference is confirmed row by row, which also names the
// rows.
func (p *Postgres) Check(ctx context.Context, t Table, ch Chunk) (CheckResult, error) {
	primary, err := p.conn(ctx, p.Primary, t.Database)
	if err != nil {
		return CheckResult{}, err
	}
	var first hash
	for attempt := 1; attempt <= p.Attempts; attempt++ {
		h1, err := p.hash(ctx, primary, t, ch)
		if err != nil {
			return CheckResult{}, fmt.Errorf("hash on the primary: %w", err)
		}
		if attempt == 1 {
			first = h1
		}
		l1, err := insertLSN(ctx, primary)
		if err != nil {
			return CheckResult{}, err
		}
		seen := map[string]hash{}
		for _, s := range p.Replicas() {
			err := p.onStandby(ctx, s, t.Database, l1, func(ctx context.Context, c *pgx.Conn) (err error) {
				seen[s], err = p.hash(ctx, c, t, ch)
				return err
			})
			if err != nil {
				return CheckResult{}, p.standbyError(s, t, ch, err)
			}
		}
		h2, err := p.hash(ctx, primary, t, ch)
		if err != nil {
			return CheckResult{}, fmt.Errorf("hash on the primary: %w", err)
		}
		if h1 != h2 {
			// Changed meanwhile. Under writes spread over the table, a
			// small chunk is changed again as likely as not: row by row,
			// the rows that change are left out and the rest compared.
			if max(h1.rows, h2.rows) <= p.RowLevelMax {
				return p.checkRows(ctx, t, ch)
			}
			sleep(ctx, time.Duration(attempt)*20*time.Millisecond)
			continue
		}
		if !slices.ContainsFunc(p.Replicas(), func(s string) bool { return seen[s] != h1 }) {
			return CheckResult{Rows: h1.rows}, nil
		}
		// A standby differs: confirmed, and its rows named, row by row.
		return p.checkRows(ctx, t, ch)
	}
	return CheckResult{Rows: first.rows, Unstable: true}, nil
}

// rowState is one row's version: its xmin and the hash of its values.
type rowState struct {
	xmin string
	hash int64
}

// rows reads the chunk's rows: key (as text, joined) to version.
func (p *Postgres) rows(ctx context.Context, c *pgx.Conn, t Table, ch Chunk) (map[string]rowState, error) {
	where, args := ch.Where(t.Key, quotePg, t.pgPlaceholder, 1)
	key := "r.ctid::text" // a table without a key: its tuples' positions, the same on a physical standby
	if len(t.Key) > 0 {
		var parts []string
		for _, k := range t.Key {
			parts = append(parts, "r."+quotePg(k)+"::text")
		}
		key = "concat_ws(',', " + strings.Join(parts, ", ") + ")"
	}
	q := fmt.Sprintf("SELECT %s, r.xmin::text, hashtextextended(r::text, 0) FROM ONLY %s AS r WHERE %s", key, t.pgName(), where)
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]rowState{}
	for rows.Next() {
		var k string
		var s rowState
		if err := rows.Scan(&k, &s.xmin, &s.hash); err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, rows.Err()
}

// rowBracket is one row-level bracket: the primary's rows before and
// after, and each standby's in between.
type rowBracket struct {
	before, after map[string]rowState
	standbys      map[string]map[string]rowState
}

func (p *Postgres) rowBracket(ctx context.Context, t Table, ch Chunk) (rowBracket, error) {
	primary, err := p.conn(ctx, p.Primary, t.Database)
	if err != nil {
		return rowBracket{}, err
	}
	b := rowBracket{standbys: map[string]map[string]rowState{}}
	if b.before, err = p.rows(ctx, primary, t, ch); err != nil {
		return b, fmt.Errorf("rows on the primary: %w", err)
	}
	l1, err := insertLSN(ctx, primary)
	if err != nil {
		return b, err
	}
	for _, s := range p.Replicas() {
		err := p.onStandby(ctx, s, t.Database, l1, func(ctx context.Context, c *pgx.Conn) (err error) {
			b.standbys[s], err = p.rows(ctx, c, t, ch)
			return err
		})
		if err != nil {
			return b, p.standbyError(s, t, ch, err)
		}
	}
	if b.after, err = p.rows(ctx, primary, t, ch); err != nil {
		return b, fmt.Errorf("rows on the primary: %w", err)
	}
	return b, nil
}

// checkRows compares the chunk row by row in two brackets at least 100 ms
// apart. A row counts only when the primary held the very same version of
// it through both brackets (or lacked it through both): then every
// standby must hold that version (or lack it) in both of its reads.
// Two brackets, because a commit can show on a standby before on its
// primary (a commit waiting for a synchronous standby's answer): a row
// such a commit changes on the standby alone is changed on the primary
// too by the second bracket, and so not compared. The rest changed while
// compared: counted, not compared.
func (p *Postgres) checkRows(ctx context.Context, t Table, ch Chunk) (CheckResult, error) {
	b1, err := p.rowBracket(ctx, t, ch)
	if err != nil {
		return CheckResult{}, err
	}
	sleep(ctx, 100*time.Millisecond)
	b2, err := p.rowBracket(ctx, t, ch)
	if err != nil {
		return CheckResult{}, err
	}
	res, diffs := CompareRows([]map[string]rowState{b1.before, b1.after, b2.before, b2.after}, p.Replicas(),
		func(s string) []map[string]rowState { return []map[string]rowState{b1.standbys[s], b2.standbys[s]} })
	res.Rows = int64(len(b1.before))
	for s, keys := range diffs {
		d := Difference{Chunk: ch.N, Range: ch.Range(), Lower: ch.Lower, Upper: ch.Upper, Replica: s,
			PrimaryRows: int64(len(b1.before)), ReplicaRows: int64(len(b1.standbys[s]))}
		for _, k := range keys {
			d.Keys = append(d.Keys, strings.Split(k, ","))
		}
		res.Differences = append(res.Differences, d)
	}
	slices.SortFunc(res.Differences, func(a, b Difference) int { return strings.Compare(a.Replica, b.Replica) })
	return res, nil
}

// CompareRows is checkRows' verdict, pure: primary holds the primary's
// reads in order, standby(s) each standby's. A key counts when every
// primary read agrees on it (the same version, or absent from all); a
// counted key differs on a standby when any of its reads disagrees. It
// returns the rows that changed meanwhile (in Changing) and each
// standby's differing keys, sorted.
func CompareRows[V comparable](primary []map[string]V, standbys []string, standby func(string) []map[string]V) (CheckResult, map[string][]string) {
	keys := map[string]bool{}
	for _, m := range primary {
		for k := range m {
			keys[k] = true
		}
	}
	for _, s := range standbys {
		for _, m := range standby(s) {
			for k := range m {
				keys[k] = true
			}
		}
	}
	var res CheckResult
	diffs := map[string][]string{}
	for k := range keys {
		v0, in0 := primary[0][k]
		steady := true
		for _, m := range primary[1:] {
			if v, in := m[k]; in != in0 || v != v0 {
				steady = false
			}
		}
		if !steady {
			res.Changing++
			continue
		}
		for _, s := range standbys {
			for _, m := range standby(s) {
				if v, in := m[k]; in != in0 || v != v0 {
					diffs[s] = append(diffs[s], k)
					break
				}
			}
		}
	}
	for s := range diffs {
		slices.Sort(diffs[s])
	}
	return res, diffs
}

// standbyError is what a standby's failure means: the table gone (dropped
// on the primary and replayed) cuts the table short; anything else loses
// the standby for the rest of the run.
func (p *Postgres) standbyError(standby string, t Table, ch Chunk, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return fmt.Errorf("on %s: %w", standby, err)
	}
	return p.lose(standby, fmt.Errorf("%s chunk %d: %w", t, ch.N, err))
}

func insertLSN(ctx context.Context, c *pgx.Conn) (string, error) {
	var l string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&l); err != nil {
		return "", fmt.Errorf("the primary's WAL position: %w", err)
	}
	return l, nil
}

// onStandby runs read on a session of the standby's database once the
// standby has replayed past lsn. The wait, and then the read, are each
// bounded by WaitTimeout: a standby that stops answering (a frozen host,
// a link cut without a reset) fails there, and is lost, instead of
// holding the run for ever.
func (p *Postgres) onStandby(ctx context.Context, standby, database, lsn string, read func(context.Context, *pgx.Conn) error) error {
	c, err := p.caughtUp(ctx, standby, database, lsn)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, p.WaitTimeout)
	defer cancel()
	if err := read(rctx, c); err != nil {
		if ctx.Err() == nil && rctx.Err() != nil {
			return fmt.Errorf("no answer within %v: %w", p.WaitTimeout, err)
		}
		return err
	}
	return nil
}

// caughtUp is a session on the standby's database once it has replayed
// past lsn, within WaitTimeout.
func (p *Postgres) caughtUp(ctx context.Context, standby, database, lsn string) (*pgx.Conn, error) {
	c, err := p.conn(ctx, standby, database)
	if err != nil {
		return nil, err
	}
	wait, cancel := context.WithTimeout(ctx, p.WaitTimeout)
	defer cancel()
	for {
		var ok bool
		err := c.QueryRow(wait, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn).Scan(&ok)
		if err == nil && ok {
			return c, nil
		}
		if ctx.Err() == nil && wait.Err() != nil {
			return nil, fmt.Errorf("did not replay up to the primary's %s, or did not answer, within %v", lsn, p.WaitTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("its replay position: %w", err)
		}
		sleep(wait, 5*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// End has nothing left to compare: Check compared each chunk.
func (p *Postgres) End(context.Context, Table, []Chunk) ([]Difference, error) { return nil, nil }

// Lag is the largest replay lag of the standbys, as the time since the
// last transaction they replayed was committed, when they have something
// left to replay.
func (p *Postgres) Lag(ctx context.Context) (time.Duration, error) {
	var worst time.Duration
	for _, s := range p.Replicas() {
		lag, err := p.lag(ctx, s)
		if err != nil {
			return 0, p.lose(s, err)
		}
		worst = max(worst, lag)
	}
	return worst, nil
}

// lag is one standby's, read within WaitTimeout (as onStandby's reads).
// Load is the primary's client backends running a statement, this one
// left out (the run's others are idle meanwhile: it runs one statement at
// a time).
func (p *Postgres) Load(ctx context.Context) (int, error) {
	c, err := p.conn(ctx, p.Primary, "postgres")
	if err != nil {
		return 0, err
	}
	var n int
	err = c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend'
		AND pid <> pg_backend_pid()`).Scan(&n)
	return n, err
}

func (p *Postgres) lag(ctx context.Context, standby string) (time.Duration, error) {
	c, err := p.conn(ctx, standby, "postgres")
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.WaitTimeout)
	defer cancel()
	var secs float64
	if err := c.QueryRow(ctx, `SELECT CASE WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
	  ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END`).Scan(&secs); err != nil {
		return 0, fmt.Errorf("read its lag: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}
