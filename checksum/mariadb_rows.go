package checksum

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Naming the rows of a differing MariaDB chunk: the method of the chunks,
// one row at a time. An INSERT ... SELECT logged as a statement writes
// each row's key and checksum into RowsTable, on the primary and, when
// each replica applies it, on the replica, from the same point of history
// on both; the two lists are then read and compared here. A row differs
// when its checksum does, or when one side lacks it.

// RowsTable holds the rows' checksums of the chunks being narrowed.
const RowsTable = "rows"

// namePiece is how many rows one INSERT ... SELECT covers: a differing
// chunk is narrowed in pieces, so that no statement holds its locks
// longer than a small chunk would.
const namePiece = 5000

func rowsTable() string { return quoteMy(ResultsSchema) + "." + quoteMy(RowsTable) }

// keyExpr is the row's key as text: each column's bytes in hex (its
// textual form for numbers and dates, as the driver reads a Key), joined
// by commas.
func keyExpr(key []string) string {
	hexed := make([]string, len(key))
	for i, c := range key {
		hexed[i] = "HEX(CAST(" + quoteMy(c) + " AS BINARY))"
	}
	return "CONCAT_WS(','," + strings.Join(hexed, ",") + ")"
}

// parseKeyText reverses keyExpr.
func parseKeyText(s string) (Key, error) {
	parts := strings.Split(s, ",")
	k := make(Key, len(parts))
	for i, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("row key %q: %w", s, err)
		}
		k[i] = string(b)
	}
	return k, nil
}

// NameRows names the differing rows of each differing chunk (Keys), for
// the replicas that differ on it. A chunk's rows are compared as they are
// now: a row that changed back since the chunk was checked is not named,
// and RowsNote says when none was.
func (m *MariaDB) NameRows(ctx context.Context, t Table, diffs []Difference) ([]Difference, error) {
	if len(t.Key) == 0 {
		return diffs, nil // one chunk without a key: no row can be named
	}
	conn, err := m.primary(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+rowsTable()+` (
  db CHAR(64) NOT NULL, tbl CHAR(64) NOT NULL, chunk INT NOT NULL, row_key VARBINARY(3072) NOT NULL, this_crc INT UNSIGNED NOT NULL,
  INDEX db_tbl_chunk (db, tbl, chunk)) ENGINE=InnoDB`); err != nil {
		return nil, fmt.Errorf("create %s on the primary: %w", rowsTable(), err)
	}
	out := slices.Clone(diffs)
	for _, n := range differingChunks(diffs) {
		i := slices.IndexFunc(out, func(d Difference) bool { return d.Chunk == n })
		c := Chunk{N: n, Lower: out[i].Lower, Upper: out[i].Upper}
		if err := m.rowChecksums(ctx, conn, t, c); err != nil {
			return nil, fmt.Errorf("chunk %d: %w", n, err)
		}
		primary, err := readRowChecksums(ctx, conn, t, n)
		if err != nil {
			return nil, fmt.Errorf("chunk %d on the primary: %w", n, err)
		}
		var pos string
		if err := conn.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			return nil, fmt.Errorf("the primary's position: %w", err)
		}
		for j := range out {
			if out[j].Chunk != n {
				continue
			}
			var replica map[string]uint32
			err := onReplica(ctx, m.WaitTimeout+time.Minute, func(ctx context.Context) (err error) {
				replica, err = m.replicaRowChecksums(ctx, out[j].Replica, t, n, pos)
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("chunk %d on %s: %w", n, out[j].Replica, err)
			}
			out[j].Keys = differingKeys(primary, replica)
			if len(out[j].Keys) == 0 {
				out[j].RowsNote = "no row differs any more: the chunk changed since it was checked"
			}
		}
	}
	return out, nil
}

// differingChunks are the chunks of diffs, each once, in order. Pure.
func differingChunks(diffs []Difference) []int {
	var ns []int
	for _, d := range diffs {
		ns = append(ns, d.Chunk)
	}
	slices.Sort(ns)
	return slices.Compact(ns)
}

// rowChecksums writes the chunk's row checksums on the primary (and,
// replicated, on every replica), piece by piece.
func (m *MariaDB) rowChecksums(ctx context.Context, conn *sql.Conn, t Table, c Chunk) error {
	if _, err := conn.ExecContext(ctx, "DELETE FROM "+rowsTable()+" WHERE db = ? AND tbl = ? AND chunk = ?", t.Schema, t.Name, c.N); err != nil {
		return err
	}
	var isnull []string
	for _, col := range t.Columns {
		isnull = append(isnull, "ISNULL("+quoteMy(col)+")")
	}
	crc := fmt.Sprintf("CRC32(CONCAT_WS('#', %s, CONCAT(%s)))", quoteAll(t.Columns, quoteMy), strings.Join(isnull, ", "))
	lower := c.Lower
	for {
		upper, err := boundaryWithin(ctx, conn, t, Chunk{Lower: lower, Upper: c.Upper}, namePiece)
		if err != nil {
			return err
		}
		piece := Chunk{Lower: lower, Upper: upper}
		if upper == nil {
			piece.Upper = c.Upper
		}
		where, args := piece.Where(t.Key, quoteMy, myPlaceholder, 1)
		q := fmt.Sprintf("INSERT INTO %s (db, tbl, chunk, row_key, this_crc) SELECT ?, ?, ?, %s, %s FROM %s.%s FORCE INDEX (%s) WHERE %s",
			rowsTable(), keyExpr(t.Key), crc, quoteMy(t.Schema), quoteMy(t.Name), quoteMy(t.Index), where)
		if err := execRetrying(ctx, conn, q, append([]any{t.Schema, t.Name, c.N}, args...)...); err != nil {
			return err
		}
		if upper == nil {
			return nil
		}
		lower = upper
	}
}

// boundaryWithin is the key of the size-th row of c in key order, or nil
// when c holds fewer (Boundary's, and a narrowing's pieces).
func boundaryWithin(ctx context.Context, conn *sql.Conn, t Table, c Chunk, size int) (Key, error) {
	where, args := c.Where(t.Key, quoteMy, myPlaceholder, 1)
	cols := quoteAll(t.Key, quoteMy)
	q := fmt.Sprintf("SELECT %s FROM %s.%s FORCE INDEX (%s) WHERE %s ORDER BY %s LIMIT 1 OFFSET %d",
		cols, quoteMy(t.Schema), quoteMy(t.Name), quoteMy(t.Index), where, cols, size-1)
	return scanKey(conn.QueryRowContext(ctx, q, args...), len(t.Key))
}

func readRowChecksums(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, t Table, chunk int) (map[string]uint32, error) {
	rows, err := q.QueryContext(ctx, "SELECT row_key, this_crc FROM "+rowsTable()+" WHERE db = ? AND tbl = ? AND chunk = ?", t.Schema, t.Name, chunk)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint32{}
	for rows.Next() {
		var k string
		var crc uint32
		if err := rows.Scan(&k, &crc); err != nil {
			return nil, err
		}
		out[k] = crc
	}
	return out, rows.Err()
}

// replicaRowChecksums reads the replica's row checksums of the chunk once
// it has applied the primary's pos.
func (m *MariaDB) replicaRowChecksums(ctx context.Context, replica string, t Table, chunk int, pos string) (map[string]uint32, error) {
	db, err := m.pool(replica)
	if err != nil {
		return nil, err
	}
	if err := waitGTID(ctx, db, pos, m.WaitTimeout); err != nil {
		return nil, err
	}
	return readRowChecksums(ctx, db, t, chunk)
}

// differingKeys are the keys whose checksums differ or that one side
// lacks, sorted by their text. Pure.
func differingKeys(primary, replica map[string]uint32) []Key {
	var texts []string
	for k, crc := range primary {
		if rc, ok := replica[k]; !ok || rc != crc {
			texts = append(texts, k)
		}
	}
	for k := range replica {
		if _, ok := primary[k]; !ok {
			texts = append(texts, k)
		}
	}
	slices.Sort(texts)
	keys := make([]Key, 0, len(texts))
	for _, s := range texts {
		k, err := parseKeyText(s)
		if err != nil {
			k = Key{s} // shown as read
		}
		keys = append(keys, k)
	}
	return keys
}
