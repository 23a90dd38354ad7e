package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	gosql "github.com/go-sql-driver/mysql"

	"github.com/dbha/dbha/topology"
)

// What the stream asks a primary over SQL before and while it streams:
// its server_id and the replicas' (dbha's own must differ), its position
// (where a first start begins), whether semi-sync is on, and, when it
// cannot serve dbha's position, which binlogs it still has.

// primaryInfo is one look at a primary.
type primaryInfo struct {
	serverID uint32
	// binlogPos is where its binlog ends: @@gtid_binlog_pos (MariaDB) or
	// @@gtid_executed (MySQL).
	binlogPos string
	// binlogState lists every server that wrote to its binlog (MariaDB
	// @@gtid_binlog_state): former primaries, whose server_ids are taken.
	binlogState string
	semiSync    bool // rpl_semi_sync_master_enabled (MySQL 8.4: _source_)
	// replicas are the server_ids of registered replicas (SHOW SLAVE
	// HOSTS) other than dbha's own earlier connections; replicasKnown is
	// false when the account may not list them.
	replicas      []uint32
	replicasKnown bool
}

// inspect reads a primaryInfo. host is the name dbha registers under, to
// tell its own registrations from replicas'.
func inspect(ctx context.Context, db *sql.DB, flavor, host string) (primaryInfo, error) {
	var in primaryInfo
	q := "SELECT @@server_id, @@gtid_binlog_pos, @@gtid_binlog_state"
	if flavor == mysql.MySQLFlavor {
		q = "SELECT @@server_id, @@gtid_executed, ''"
	}
	if err := db.QueryRowContext(ctx, q).Scan(&in.serverID, &in.binlogPos, &in.binlogState); err != nil {
		return in, fmt.Errorf("read the primary's server_id and GTID position: %w", err)
	}
	var err error
	if in.semiSync, err = semiSyncEnabled(ctx, db); err != nil {
		return in, err
	}
	in.replicas, in.replicasKnown, err = replicaIDs(ctx, db, host)
	return in, err
}

// semiSyncEnabled reads whether the primary has semi-sync on.
func semiSyncEnabled(ctx context.Context, db *sql.DB) (bool, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('rpl_semi_sync_master_enabled', 'rpl_semi_sync_source_enabled')")
	if err != nil {
		return false, fmt.Errorf("read rpl_semi_sync_master_enabled: %w", err)
	}
	defer rows.Close()
	on := false
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return false, fmt.Errorf("read rpl_semi_sync_master_enabled: %w", err)
		}
		on = on || strings.EqualFold(value, "ON")
	}
	return on, rows.Err()
}

// replicaIDs lists the server_ids in SHOW SLAVE HOSTS, leaving out rows
// registered under host (dbha's own earlier connections). An account
// without REPLICATION MASTER ADMIN (MariaDB) may not run it, and MySQL 8.4
// no longer has it: known is false then.
func replicaIDs(ctx context.Context, db *sql.DB, host string) (ids []uint32, known bool, err error) {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE HOSTS")
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("SHOW SLAVE HOSTS: %w", err)
		}
		return nil, false, nil
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, false, err
	}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, false, fmt.Errorf("SHOW SLAVE HOSTS: %w", err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[strings.ToLower(c)] = vals[i].String
		}
		if row["host"] == host {
			continue
		}
		var id uint32
		if _, err := fmt.Sscan(row["server_id"], &id); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, true, rows.Err()
}

// serverIDConflict says who else uses dbha's server_id ("" when nobody
// known does). A replica registering with a server_id another connection
// uses makes the primary drop the other one, so dbha and that replica
// would keep throwing each other out.
func serverIDConflict(own uint32, addr string, in primaryInfo) string {
	if in.serverID == own {
		return fmt.Sprintf("server_id %d is the primary %s's own server_id", own, addr)
	}
	for _, id := range in.replicas {
		if id == own {
			return fmt.Sprintf("server_id %d is used by a replica of %s (SHOW SLAVE HOSTS)", own, addr)
		}
	}
	for _, id := range allServers(in.binlogState) {
		if id == own {
			return fmt.Sprintf("server_id %d wrote transactions in %s's binlog (@@gtid_binlog_state %s): it belongs to a server of the cluster", own, addr, in.binlogState)
		}
	}
	return ""
}

// allServers lists the server_ids of a gtid_binlog_state list (several per
// domain).
func allServers(list string) []uint32 {
	var out []uint32
	for part := range strings.SplitSeq(list, ",") {
		if g, err := mysql.ParseMariadbGTID(strings.TrimSpace(part)); err == nil {
			out = append(out, g.ServerID)
		}
	}
	return out
}

// mysqlErrorNumber returns the server error number in err (either driver's
// error type), or 0.
func mysqlErrorNumber(err error) uint16 {
	var se *gosql.MySQLError
	if errors.As(err, &se) {
		return se.Number
	}
	var me *mysql.MyError
	if errors.As(err, &me) {
		return me.Code
	}
	return 0
}

// oldestBinlog returns the name of the primary's oldest binlog and the
// GTID position before its first transaction (its Gtid_list event).
func oldestBinlog(ctx context.Context, db *sql.DB) (name, before string, err error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return "", "", fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	if rows.Next() {
		cols, _ := rows.Columns()
		dest := make([]any, len(cols))
		dest[0] = &name
		for i := 1; i < len(dest); i++ {
			dest[i] = new(sql.RawBytes)
		}
		err = rows.Scan(dest...)
	}
	rows.Close()
	if err != nil || name == "" {
		return "", "", fmt.Errorf("SHOW BINARY LOGS: no binlog (%v)", err)
	}
	evs, err := db.QueryContext(ctx, "SHOW BINLOG EVENTS IN '"+strings.ReplaceAll(name, "'", "")+"' LIMIT 4")
	if err != nil {
		return name, "", fmt.Errorf("SHOW BINLOG EVENTS IN %s: %w", name, err)
	}
	defer evs.Close()
	for evs.Next() {
		var logName, typ, info string
		var pos, serverID, end sql.NullInt64
		if err := evs.Scan(&logName, &pos, &typ, &serverID, &end, &info); err != nil {
			return name, "", fmt.Errorf("SHOW BINLOG EVENTS IN %s: %w", name, err)
		}
		if typ == "Gtid_list" {
			return name, strings.Trim(info, "[] "), nil
		}
	}
	return name, "", fmt.Errorf("no Gtid_list event at the start of %s", name)
}

// gapRange names, per domain, the transactions between what dbha holds and
// where the primary's oldest binlog starts: "GTIDs 0-*-58 to 0-1-80 (domain
// 0, seq_no 58 to 80)" (the server_id of the first missing one is not
// known). Empty when nothing is missing that way: the failure is something
// else, such as dbha holding transactions the primary never had.
func gapRange(held, oldest state) []string {
	var out []string
	for _, o := range oldest.list() {
		h, ok := held.domains[o.Domain]
		from := uint64(1)
		if ok {
			from = h.Seq + 1
		}
		if from > o.Seq {
			continue
		}
		out = append(out, fmt.Sprintf("GTIDs %d-*-%d to %s (domain %d, seq_no %d to %d)", o.Domain, from, o, o.Domain, from, o.Seq))
	}
	return out
}

// describeBroken explains a primary refusing dbha's position (ERROR 1236)
// for Status.Broken and the error Run returns.
func describeBroken(addr string, held state, oldestName string, oldest state, primaryPos, serverMsg string) string {
	if missing := gapRange(held, oldest); len(missing) > 0 {
		return fmt.Sprintf("the primary %s no longer has binlogs dbha needs: dbha holds up to %s, the primary's oldest binlog %s starts after %s, "+
			"so %s are missing (server: %s). dbha never skips transactions: restore the purged binlogs on the primary if you still can; "+
			"otherwise accept that the store lacks them and run `dbha stream reset` to start afresh from the primary's current position",
			addr, orEmpty(held.String()), oldestName, orEmpty(oldest.String()), strings.Join(missing, ", "), serverMsg)
	}
	return fmt.Sprintf("the primary %s cannot serve dbha's position %s (server: %s); its binlog ends at %s. "+
		"dbha may hold transactions the primary does not have (lost in a failover, or a different history): "+
		"list them with `dbha stream events --since %s`, then reset the store (`dbha stream reset`) to follow the primary",
		addr, orEmpty(held.String()), serverMsg, orEmpty(primaryPos), orEmpty(primaryPos))
}

// describeBrokenMySQL is describeBroken for MySQL, where the primary says
// what it purged (@@gtid_purged): missing is what it purged that dbha does
// not hold.
func describeBrokenMySQL(addr string, held state, purged, executed, serverMsg string) string {
	var missing string
	if p, err := topology.ParseMySQL(purged); err == nil {
		missing = topology.Errant(p, held.position()).String() // purged minus held
	}
	if missing != "" {
		return fmt.Sprintf("the primary %s no longer has binlogs dbha needs: dbha holds %s, the primary purged %s, so %s are missing (server: %s). "+
			"dbha never skips transactions: restore the purged binlogs if you still can; otherwise run `dbha stream reset` to start afresh",
			addr, orEmpty(held.String()), purged, missing, serverMsg)
	}
	return fmt.Sprintf("the primary %s cannot serve dbha's position %s (server: %s); it has executed %s. "+
		"dbha may hold transactions the primary does not have: list them with `dbha stream events`, then reset the store (`dbha stream reset`)",
		addr, orEmpty(held.String()), serverMsg, orEmpty(executed))
}

func orEmpty(s string) string {
	if s == "" {
		return "(nothing)"
	}
	return s
}
