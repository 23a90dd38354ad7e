package checksum

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// The MariaDB/MySQL engine: pt-table-checksum's method. Each chunk's
// checksum is computed on the primary by a REPLACE ... SELECT into
// ResultsTable that the session logs as a statement, so every replica
// computes the same chunk when it applies it, after exactly the
// transactions the primary had committed before it; an UPDATE then copies
// the primary's result into master_crc and master_cnt beside each
// replica's own. The checksum expression and the table's columns are
// pt-table-checksum's, so both tools' results can be read side by side.

// ResultsSchema and ResultsTable hold the chunks' results, on the primary
// and, replicated, on every replica.
const (
	ResultsSchema = "dbha_checksum"
	ResultsTable  = "checksums"
)

// systemSchemas are never checked.
var systemSchemas = []string{"mysql", "information_schema", "performance_schema", "sys", ResultsSchema, "percona"}

// MariaDB checks a MariaDB cluster. Open returns a pool for an instance,
// logged in with an account that may set the session's binlog_format
// (BINLOG ADMIN, or SUPER on MySQL) and write ResultsSchema.
type MariaDB struct {
	Primary  string
	replicas []string
	open     func(addr string) (*sql.DB, error)
	pools    map[string]*sql.DB
	session  *sql.Conn // on the primary, with the session's settings
	// MaxKeylessRows is the largest table without a usable key that is
	// checked, as one chunk (default 100 000 rows, by the estimate).
	MaxKeylessRows int64
	// WaitTimeout bounds a replica's catching up with the primary at the
	// end of a table (default 5 minutes), and a read of its lag; its
	// reads after catching up get a minute more.
	WaitTimeout time.Duration
}

// NewMariaDB checks primary against replicas.
func NewMariaDB(primary string, replicas []string, open func(addr string) (*sql.DB, error)) *MariaDB {
	return &MariaDB{Primary: primary, replicas: slices.Clone(replicas), open: open, pools: map[string]*sql.DB{},
		MaxKeylessRows: 100_000, WaitTimeout: 5 * time.Minute}
}

// Close closes every connection.
func (m *MariaDB) Close() {
	if m.session != nil {
		m.session.Close()
	}
	for _, db := range m.pools {
		db.Close()
	}
}

func (m *MariaDB) Replicas() []string { return slices.Clone(m.replicas) }

// lose drops a replica from the rest of the run.
func (m *MariaDB) lose(replica string, err error) error {
	m.replicas = slices.DeleteFunc(m.replicas, func(x string) bool { return x == replica })
	return &ReplicaError{Replica: replica, Err: err}
}

func (m *MariaDB) pool(addr string) (*sql.DB, error) {
	if db, ok := m.pools[addr]; ok {
		return db, nil
	}
	db, err := m.open(addr)
	if err != nil {
		return nil, err
	}
	m.pools[addr] = db
	return db, nil
}

// primary is the primary's session: statement logging and the results
// table, set once.
func (m *MariaDB) primary(ctx context.Context) (*sql.Conn, error) {
	if m.session != nil {
		return m.session, nil
	}
	db, err := m.pool(m.Primary)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("primary %s: %w", m.Primary, err)
	}
	for _, q := range []string{
		// The checksum statements replicate as statements; nothing else
		// of this session's is written.
		"SET SESSION binlog_format = 'STATEMENT'",
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		// A chunk waits for a row lock at most this long, never holding
		// the primary's writers up for longer.
		"SET SESSION innodb_lock_wait_timeout = 1",
		"CREATE DATABASE IF NOT EXISTS " + quoteMy(ResultsSchema),
		"CREATE TABLE IF NOT EXISTS " + resultsTable() + ` (
  db CHAR(64) NOT NULL, tbl CHAR(64) NOT NULL, chunk INT NOT NULL, chunk_time FLOAT NULL,
  chunk_index VARCHAR(200) NULL, lower_boundary TEXT NULL, upper_boundary TEXT NULL,
  this_crc CHAR(40) NOT NULL, this_cnt INT NOT NULL, master_crc CHAR(40) NULL, master_cnt INT NULL,
  ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (db, tbl, chunk), INDEX ts_db_tbl (ts, db, tbl)) ENGINE=InnoDB`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("primary %s: %s: %w", m.Primary, strings.SplitN(q, "(", 2)[0], err)
		}
	}
	m.session = conn
	return conn, nil
}

func resultsTable() string { return quoteMy(ResultsSchema) + "." + quoteMy(ResultsTable) }

func quoteMy(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// Tables lists the base tables of every user schema with their key: the
// primary key, else the first unique key on NOT NULL columns.
func (m *MariaDB) Tables(ctx context.Context, only []string) ([]Table, []Skipped, error) {
	db, err := m.pool(m.Primary)
	if err != nil {
		return nil, nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES
		WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return nil, nil, fmt.Errorf("list tables on %s: %w", m.Primary, err)
	}
	var tables []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name, &t.Rows); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if slices.Contains(systemSchemas, strings.ToLower(t.Schema)) || len(only) > 0 && !slices.Contains(only, t.String()) {
			continue
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	var out []Table
	var skipped []Skipped
	for _, name := range only {
		if !slices.ContainsFunc(tables, func(t Table) bool { return t.String() == name }) {
			skipped = append(skipped, Skipped{Table: name, Reason: "no such base table on the primary", Missing: true})
		}
	}
	for _, t := range tables {
		if err := m.describe(ctx, db, &t); err != nil {
			skipped = append(skipped, Skipped{Table: t.String(), Reason: err.Error()})
			continue
		}
		if len(t.Key) == 0 && t.Rows > m.MaxKeylessRows {
			skipped = append(skipped, Skipped{Table: t.String(), Reason: fmt.Sprintf(
				"no primary key or unique key on NOT NULL columns, and about %d rows: too many to check as one chunk (at most %d)", t.Rows, m.MaxKeylessRows)})
			continue
		}
		out = append(out, t)
	}
	return out, skipped, nil
}

// describe reads a table's columns and key.
func (m *MariaDB) describe(ctx context.Context, db *sql.DB, t *Table) error {
	rows, err := db.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, t.Schema, t.Name)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			rows.Close()
			return err
		}
		t.Columns = append(t.Columns, c)
	}
	rows.Close()
	if len(t.Columns) == 0 {
		return errors.New("no columns: dropped meanwhile?")
	}
	// Unique indexes, the primary key first, whose columns are all NOT NULL.
	rows, err = db.QueryContext(ctx, `SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s
		JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME
		WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0
		ORDER BY s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX`, t.Schema, t.Name)
	if err != nil {
		return err
	}
	defer rows.Close()
	keys := map[string][]string{}
	nullable := map[string]bool{}
	var order []string
	for rows.Next() {
		var idx, col, null string
		if err := rows.Scan(&idx, &col, &null); err != nil {
			return err
		}
		if _, ok := keys[idx]; !ok {
			order = append(order, idx)
		}
		keys[idx] = append(keys[idx], col)
		nullable[idx] = nullable[idx] || null == "YES"
	}
	for _, idx := range order {
		if !nullable[idx] {
			t.Index, t.Key = idx, keys[idx]
			break
		}
	}
	return rows.Err()
}

// Begin clears the table's past results, on the replicas too.
func (m *MariaDB) Begin(ctx context.Context, t Table) error {
	conn, err := m.primary(ctx)
	if err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, "DELETE FROM "+resultsTable()+" WHERE db = ? AND tbl = ?", t.Schema, t.Name)
	return err
}

func myPlaceholder(string, int) string { return "?" }

// Boundary reads the key of the size-th row after lower, in key order.
func (m *MariaDB) Boundary(ctx context.Context, t Table, lower Key, size int) (Key, error) {
	if len(t.Key) == 0 {
		return nil, nil
	}
	conn, err := m.primary(ctx)
	if err != nil {
		return nil, err
	}
	return boundaryWithin(ctx, conn, t, Chunk{Lower: lower}, size)
}

// scanKey reads a key of n columns from row; nil when there is no row.
func scanKey(row *sql.Row, n int) (Key, error) {
	vals := make([]sql.NullString, n)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	err := row.Scan(ptrs...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k := make(Key, len(vals))
	for i, v := range vals {
		k[i] = v.String
	}
	return k, nil
}

func quoteAll(cols []string, quote func(string) string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

// crcExpr is pt-table-checksum's row checksum: CRC32 of the columns joined
// by '#', with a string of their NULL flags, BIT_XOR'ed over the chunk.
func crcExpr(cols []string) string {
	var isnull []string
	for _, c := range cols {
		isnull = append(isnull, "ISNULL("+quoteMy(c)+")")
	}
	return fmt.Sprintf("COALESCE(LOWER(CONV(BIT_XOR(CAST(CRC32(CONCAT_WS('#', %s, CONCAT(%s))) AS UNSIGNED)), 10, 16)), 0)",
		quoteAll(cols, quoteMy), strings.Join(isnull, ", "))
}

// Check computes the chunk's checksum on the primary in a statement that
// replicates, then stores the primary's result beside it.
func (m *MariaDB) Check(ctx context.Context, t Table, c Chunk) (CheckResult, error) {
	conn, err := m.primary(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	where, args := c.Where(t.Key, quoteMy, myPlaceholder, 1)
	index := ""
	if t.Index != "" {
		index = " FORCE INDEX (" + quoteMy(t.Index) + ")"
	}
	q := fmt.Sprintf("REPLACE INTO %s (db, tbl, chunk, chunk_index, lower_boundary, upper_boundary, this_cnt, this_crc) "+
		"SELECT ?, ?, ?, ?, ?, ?, COUNT(*), %s FROM %s.%s%s WHERE %s",
		resultsTable(), crcExpr(t.Columns), quoteMy(t.Schema), quoteMy(t.Name), index, where)
	head := []any{t.Schema, t.Name, c.N, nullIfEmpty(t.Index), keyText(c.Lower), keyText(c.Upper)}
	if err := execRetrying(ctx, conn, q, append(head, args...)...); err != nil {
		return CheckResult{}, fmt.Errorf("checksum on the primary: %w", err)
	}
	var crc string
	var cnt int64
	if err := conn.QueryRowContext(ctx, "SELECT this_crc, this_cnt FROM "+resultsTable()+" WHERE db = ? AND tbl = ? AND chunk = ?",
		t.Schema, t.Name, c.N).Scan(&crc, &cnt); err != nil {
		return CheckResult{}, fmt.Errorf("read the primary's checksum: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "UPDATE "+resultsTable()+" SET master_crc = ?, master_cnt = ? WHERE db = ? AND tbl = ? AND chunk = ?",
		crc, cnt, t.Schema, t.Name, c.N); err != nil {
		return CheckResult{}, fmt.Errorf("store the primary's checksum: %w", err)
	}
	return CheckResult{Rows: cnt}, nil
}

// execRetrying runs a checksum statement on the primary. One that waited
// for a row lock past the session's second, or was chosen as a deadlock's
// victim, is tried again, as pt-table-checksum does: the writers keep
// their locks, the check waits.
func execRetrying(ctx context.Context, conn *sql.Conn, q string, args ...any) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.ExecContext(ctx, q, args...)
		var me *gomysql.MySQLError
		if err == nil || attempt >= 5 || !errors.As(err, &me) || me.Number != 1205 && me.Number != 1213 {
			return err
		}
		sleep(ctx, time.Duration(attempt)*100*time.Millisecond)
	}
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func keyText(k Key) any {
	if k == nil {
		return nil
	}
	return k.String()
}

// End waits for each replica to apply everything the primary logged so
// far, then reads the chunks where its result differs from the primary's
// (or is missing).
func (m *MariaDB) End(ctx context.Context, t Table, chunks []Chunk) ([]Difference, error) {
	conn, err := m.primary(ctx)
	if err != nil {
		return nil, err
	}
	var pos string
	if err := conn.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return nil, fmt.Errorf("the primary's position: %w", err)
	}
	byN := map[int]Chunk{}
	for _, c := range chunks {
		byN[c.N] = c
	}
	var out []Difference
	for _, r := range m.Replicas() {
		var diffs []Difference
		err := onReplica(ctx, m.WaitTimeout+time.Minute, func(ctx context.Context) (err error) {
			diffs, err = m.compare(ctx, r, t, pos, byN)
			return err
		})
		if err != nil {
			return nil, m.lose(r, fmt.Errorf("%s and after: %w", t, err))
		}
		out = append(out, diffs...)
	}
	return out, nil
}

func (m *MariaDB) compare(ctx context.Context, replica string, t Table, pos string, chunks map[int]Chunk) ([]Difference, error) {
	db, err := m.pool(replica)
	if err != nil {
		return nil, err
	}
	if err := waitGTID(ctx, db, pos, m.WaitTimeout); err != nil {
		return nil, err
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+resultsTable()+" WHERE db = ? AND tbl = ?", t.Schema, t.Name).Scan(&n); err != nil {
		return nil, fmt.Errorf("read its results: %w", err)
	}
	if n != len(chunks) {
		return nil, fmt.Errorf("holds %d of the %d chunk results the primary logged: does it apply everything the primary logs (replication filters)?", n, len(chunks))
	}
	rows, err := db.QueryContext(ctx, "SELECT chunk, this_cnt, COALESCE(master_cnt, -1), this_crc, COALESCE(master_crc, '') FROM "+resultsTable()+
		" WHERE db = ? AND tbl = ? AND (master_cnt IS NULL OR master_crc IS NULL OR this_cnt <> master_cnt OR this_crc <> master_crc) ORDER BY chunk",
		t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("read its results: %w", err)
	}
	defer rows.Close()
	var out []Difference
	for rows.Next() {
		d := Difference{Replica: replica}
		if err := rows.Scan(&d.Chunk, &d.ReplicaRows, &d.PrimaryRows, &d.ReplicaCRC, &d.PrimaryCRC); err != nil {
			return nil, err
		}
		c := chunks[d.Chunk]
		d.Range, d.Lower, d.Upper = c.Range(), c.Lower, c.Upper
		out = append(out, d)
	}
	return out, rows.Err()
}

// Load is the primary's Threads_running, this run's session left out.
func (m *MariaDB) Load(ctx context.Context) (int, error) {
	conn, err := m.primary(ctx)
	if err != nil {
		return 0, err
	}
	var name string
	var n int
	if err := conn.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &n); err != nil {
		return 0, err
	}
	return max(0, n-1), nil
}

// onReplica runs f under a limit: a replica that stops answering (a
// frozen host, a link cut without a reset) fails there, and is lost,
// instead of holding the run for ever (the driver closes a connection
// whose context ends).
func onReplica(ctx context.Context, limit time.Duration, f func(context.Context) error) error {
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := f(rctx)
	if err != nil && ctx.Err() == nil && rctx.Err() != nil {
		return fmt.Errorf("no answer within %v: %w", limit, err)
	}
	return err
}

// waitGTID waits until the replica has applied the primary's pos.
func waitGTID(ctx context.Context, db *sql.DB, pos string, timeout time.Duration) error {
	var waited int
	if err := db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout.Seconds()).Scan(&waited); err != nil {
		return fmt.Errorf("wait for %s: %w", pos, err)
	}
	if waited != 0 {
		return fmt.Errorf("did not reach the primary's %s within %v", pos, timeout)
	}
	return nil
}

// Lag is the largest Seconds_Behind_Master of the replicas.
func (m *MariaDB) Lag(ctx context.Context) (time.Duration, error) {
	var worst time.Duration
	for _, r := range m.Replicas() {
		db, err := m.pool(r)
		if err != nil {
			return 0, m.lose(r, err)
		}
		var lag time.Duration
		err = onReplica(ctx, m.WaitTimeout, func(ctx context.Context) (err error) {
			lag, err = secondsBehind(ctx, db)
			return err
		})
		if err != nil {
			return 0, m.lose(r, fmt.Errorf("read its lag: %w", err))
		}
		worst = max(worst, lag)
	}
	return worst, nil
}

func secondsBehind(ctx context.Context, db *sql.DB) (time.Duration, error) {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	if !rows.Next() {
		return 0, errors.New("not a replica")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return 0, err
	}
	i := slices.Index(cols, "Seconds_Behind_Master")
	if i < 0 || !vals[i].Valid {
		return 0, errors.New("replication is not running (Seconds_Behind_Master is NULL)")
	}
	s, err := strconv.Atoi(vals[i].String)
	return time.Duration(s) * time.Second, err
}
