package backup

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dbha/dbha/binlog"
	mysqlstream "github.com/dbha/dbha/binlog/mysql"
	pgstream "github.com/dbha/dbha/binlog/postgres"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
)

// Target is where a point-in-time restore stops: a position (MariaDB GTID
// list, PostgreSQL LSN) or a time; the zero Target is the backup's own
// point.
type Target struct {
	Position topology.Position
	Time     time.Time
}

// IsZero reports whether t asks for no replay.
func (t Target) IsZero() bool { return t.Position.IsZero() && t.Time.IsZero() }

func (t Target) String() string {
	if !t.Time.IsZero() {
		return t.Time.Format(time.RFC3339Nano)
	}
	return t.Position.String()
}

// ParseTarget reads --until for engine: a GTID list (MariaDB) or an LSN
// (PostgreSQL), else a time in RFC 3339. It is pure.
func ParseTarget(engine topology.Engine, s string) (Target, error) {
	if s == "" {
		return Target{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Target{Time: t}, nil
	}
	if engine == topology.Postgres {
		lsn, err := topology.ParseLSN(s)
		if err != nil {
			return Target{}, fmt.Errorf("--until %q is neither an LSN (like 0/3000060) nor a time (RFC 3339, like 2026-11-21T02:00:00Z)", s)
		}
		return Target{Position: topology.PostgresAt(lsn, 0)}, nil
	}
	p, err := topology.ParseMariaDB(s)
	if err != nil || p.IsZero() {
		return Target{}, fmt.Errorf("--until %q is neither a GTID position (like 0-1-1500) nor a time (RFC 3339, like 2026-11-21T02:00:00Z)", s)
	}
	return Target{Position: p}, nil
}

// RestoreOptions say where a backup goes and how far it is replayed.
type RestoreOptions struct {
	To    string // the data directory to create (absent or empty)
	Until Target
	Store string // dbha's change-stream store of the cluster, for Until
	Owner Owner
	Roles []string // see VerifyOptions.Roles
	// Progress sees the compressed bytes read while unpacking.
	Progress func(int64)
	// besides names one entry that may be in To already: where a reseed
	// put a mount point's former files.
	besides string
}

// Restored says what a restore produced.
type Restored struct {
	Dir string `json:"dir"`
	// Position is the point the data directory holds: the backup's, or
	// the one replay reached.
	Position topology.Position `json:"position"`
	// Replayed counts the transactions (MariaDB) or bytes of WAL
	// (PostgreSQL) replayed from the store beyond the backup.
	Replayed int64  `json:"replayed"`
	Detail   string `json:"detail"`
}

// Restore makes o.To a data directory from backup e: unpacked (every file
// checked against the catalog's SHA-256 as it is read) and prepared, and, with o.Until, replayed from dbha's
// change-stream store up to that point on a throwaway server, which is
// then shut down cleanly. A MariaDB directory then has gtid_slave_pos at
// the point it holds, so that it replicates on from there. On failure
// o.To is emptied again.
func Restore(ctx context.Context, repo Repository, e Entry, o RestoreOptions) (Restored, error) {
	r, err := restore(ctx, repo, e, o)
	if err != nil {
		emptyOut(o.To, o.besides)
		return Restored{}, fmt.Errorf("restore %s into %s: %w", e.ID, o.To, err)
	}
	return r, nil
}

func restore(ctx context.Context, repo Repository, e Entry, o RestoreOptions) (Restored, error) {
	if err := unpack(ctx, repo, e, o.To, o.Owner, o.Progress, false, o.besides); err != nil {
		return Restored{}, err
	}
	r := Restored{Dir: o.To, Position: e.Position, Detail: "the backup's own point"}
	if e.Engine == topology.Postgres {
		r.Position = e.StopPosition
	}
	if o.Until.IsZero() {
		return r, nil
	}
	if o.Store == "" {
		return r, fmt.Errorf("a point-in-time restore replays dbha's change-stream store, and none is configured")
	}
	if !o.Until.Time.IsZero() && o.Until.Time.Before(e.Started) {
		return r, fmt.Errorf("backup %s was started at %s, after %s: restore an older backup", e.ID, e.Started.Format(time.RFC3339), o.Until)
	}
	if e.Engine == topology.Postgres {
		return replayWAL(ctx, e, o, r)
	}
	return replayBinlog(ctx, e, o, r)
}

// emptyOut removes what a failed restore wrote into dir, all but the
// entry besides.
func emptyOut(dir, besides string) {
	entries, _ := os.ReadDir(dir)
	for _, d := range entries {
		if besides == "" || d.Name() != besides {
			os.RemoveAll(filepath.Join(dir, d.Name()))
		}
	}
}

// replayBinlog brings a restored MariaDB directory from the backup's GTID
// position to o.Until with the transactions dbha's binlog store holds.
func replayBinlog(ctx context.Context, e Entry, o RestoreOptions, r Restored) (Restored, error) {
	st, err := mysqlstream.OpenStore(o.Store)
	if err != nil {
		return r, err
	}
	if order, err := topology.Compare(e.Position, st.Start()); st.Start().IsZero() || err != nil || order == topology.Behind || order == topology.Diverged {
		return r, fmt.Errorf("dbha's binlog store starts at %s, which the backup's position %s does not reach: the transactions in between are not held; restore a newer backup", st.Start(), e.Position)
	}
	status, err := binlog.ReadStatus(o.Store)
	if err != nil && !o.Until.Time.IsZero() {
		return r, fmt.Errorf("a time target needs to know until when dbha's stream heard from the primary: %w", err)
	}
	upto, n, err := replayEnd(e.Position, st.Position(), st.All(), o.Until, status.LastMessage)
	if err != nil {
		return r, err
	}
	if n == 0 {
		r.Detail = "nothing to replay: the backup is at the point asked for"
		return r, setSlavePos(ctx, r, o, upto)
	}
	files := make([]string, 0, len(st.Files()))
	for _, f := range st.Files() {
		files = append(files, filepath.Join(st.Dir(), f))
	}
	srv, err := StartServer(ctx, e.Engine, o.To, ServerOptions{Owner: o.Owner})
	if err != nil {
		return r, err
	}
	defer srv.Stop()
	user, password := srv.Account()
	c := mysql.NewController(topology.MariaDB, user, password, "", "")
	defer c.Close()
	c.SetApplyAccount(user, password)
	if err := c.ApplyBinlog(ctx, srv.Addr, files, e.Position, upto); err != nil {
		return r, err
	}
	if err := appliedAsPlanned(ctx, srv, e.Position, upto); err != nil {
		return r, err
	}
	if err := finishMariaDB(ctx, srv, upto); err != nil {
		return r, err
	}
	r.Position, r.Replayed = upto, n
	r.Detail = fmt.Sprintf("replayed %d transactions from dbha's binlog store, from %s to %s", n, e.Position, upto)
	return r, srv.Stop()
}

// replayEnd decides how far a replay goes from the backup's position
// from, given every transaction the store holds (txns, in binlog order,
// those the backup already has included; walked twice, one at a time),
// what it holds (held), and when its stream last heard from the primary
// (heard). It returns the position after the last transaction the target
// covers and how many transactions that replays, or refuses, saying which
// targets this backup and store can reach: a target is met exactly or not
// at all. It is pure.
//
// A GTID target covers, in each domain, the transactions up to its
// sequence number; it must be at or past the backup's point and within
// what is held. A time target covers the transactions committed at or
// before it. MariaDB's binlog times a transaction to the second, at the
// start of its last statement (the commit of an autocommitted statement,
// or its COMMIT), so one stamped in the target's own second is ambiguous
// when the target has a fraction: it is refused, with the GTIDs that would
// settle it. Replay stops at the first transaction stamped after the
// target (the binlog is in commit order); a target after everything held
// must be no later than the stream's last word from the primary, else
// what was committed in between is not held.
func replayEnd(from, held topology.Position, txns iter.Seq2[binlog.Transaction, error], until Target, heard time.Time) (topology.Position, int64, error) {
	if !until.Position.IsZero() {
		switch order, err := topology.Compare(until.Position, from); {
		case err != nil:
			return from, 0, err
		case order == topology.Behind || order == topology.Diverged:
			return from, 0, fmt.Errorf("the backup is at %s, past or beside %s: restore an older backup (this one reaches positions from %s to %s)", from, until.Position, from, held)
		}
		if order, err := topology.Compare(until.Position, held); err != nil || order == topology.Ahead || order == topology.Diverged {
			return from, 0, fmt.Errorf("dbha's binlog store holds up to %s, not %s (this backup reaches positions from %s to %s)", held, until.Position, from, held)
		}
	}
	newestIn, err := newestHeld(from, txns)
	if err != nil {
		return from, 0, err
	}
	if !until.Time.IsZero() && !newestIn.IsZero() && stampedAgainst(newestIn, until.Time) != stampedBefore {
		return from, 0, fmt.Errorf("the backup holds transactions committed in the second %s, not before %s: restore an older backup (this one reaches times from %s)",
			newestIn.Format(time.RFC3339), until, newestIn.Add(time.Second).Format(time.RFC3339))
	}
	upto := from
	var n int64
	for t, err := range txns {
		if err != nil {
			return from, 0, err
		}
		g, err := topology.ParseMariaDB(t.Position)
		if err != nil {
			return from, 0, err
		}
		if o, err := topology.Compare(g, from); err != nil || o == topology.Behind || o == topology.Equal {
			continue // the backup has it
		}
		if until.Time.IsZero() {
			if o, err := topology.Compare(g, until.Position); err != nil || o == topology.Ahead || o == topology.Diverged {
				continue // beyond the target in its domain
			}
		} else {
			switch stampedAgainst(t.Time, until.Time) {
			case stampedAfter:
				return upto, n, nil // replay ends before the first later commit
			case stampedWithin:
				return from, 0, fmt.Errorf("%s was committed in the second %s, and MariaDB's binlog times transactions to the second: whether it was committed by %s cannot be told; give a whole second, or a GTID (%s to include it)",
					t.Position, t.Time.Format(time.RFC3339), until, t.Position)
			}
		}
		if upto, err = topology.Union(upto, g); err != nil {
			return from, 0, err
		}
		n++
	}
	if !until.Time.IsZero() && until.Time.After(heard) {
		reach := "its own point"
		if !newestIn.IsZero() {
			reach = newestIn.Add(time.Second).Format(time.RFC3339)
		}
		return from, 0, fmt.Errorf("dbha's binlog store heard from the primary last at %s, before %s: what was committed in between is not held (this backup reaches times from %s to %s)",
			heard.Format(time.RFC3339Nano), until, reach, heard.Format(time.RFC3339Nano))
	}
	return upto, n, nil
}

// newestHeld is the latest binlog time of the transactions held that the
// backup at from has; zero when the store holds none of them.
func newestHeld(from topology.Position, txns iter.Seq2[binlog.Transaction, error]) (time.Time, error) {
	var newest time.Time
	for t, err := range txns {
		if err != nil {
			return time.Time{}, err
		}
		g, err := topology.ParseMariaDB(t.Position)
		if err != nil {
			return time.Time{}, err
		}
		if o, err := topology.Compare(g, from); err == nil && (o == topology.Behind || o == topology.Equal) && t.Time.After(newest) {
			newest = t.Time
		}
	}
	return newest, nil
}

// stamp is where a transaction's binlog time (whole seconds) lies
// against a target.
type stamp int

const (
	stampedBefore stamp = iota // its second ends no later than the target
	stampedWithin              // the target falls inside its second
	stampedAfter               // its second starts after the target, or at a whole-second target
)

func (s stamp) String() string {
	return [...]string{"before", "in the same second as", "after"}[s]
}

// stampedAgainst: a transaction stamped with second sec was committed in
// [sec, sec+1s). It is pure.
func stampedAgainst(sec, target time.Time) stamp {
	switch {
	case !sec.Add(time.Second).After(target):
		return stampedBefore
	case !sec.Before(target):
		return stampedAfter
	}
	return stampedWithin
}

// appliedAsPlanned reads back what the throwaway server applied (its
// binlog, which records each replayed transaction with its GTID, on top
// of the backup's from) and fails unless it is exactly plan.
func appliedAsPlanned(ctx context.Context, srv *Server, from, plan topology.Position) error {
	db, err := srv.DB("")
	if err != nil {
		return err
	}
	defer db.Close()
	var got string
	if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&got); err != nil {
		return fmt.Errorf("read back what the replay applied: %w", err)
	}
	logged, err := topology.ParseMariaDB(got)
	if err != nil {
		return fmt.Errorf("read back what the replay applied: %w", err)
	}
	applied, err := topology.Union(from, logged)
	if err != nil {
		return err
	}
	if o, err := topology.Compare(applied, plan); err != nil || o != topology.Equal {
		return fmt.Errorf("the restored server applied up to %s, not the %s planned: the restore is not the point asked for", applied, plan)
	}
	return nil
}

// setSlavePos records pos as gtid_slave_pos in a restored MariaDB
// directory (a throwaway server started and stopped for it).
func setSlavePos(ctx context.Context, r Restored, o RestoreOptions, pos topology.Position) error {
	srv, err := StartServer(ctx, topology.MariaDB, r.Dir, ServerOptions{Owner: o.Owner})
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := finishMariaDB(ctx, srv, pos); err != nil {
		return err
	}
	return srv.Stop()
}

// finishMariaDB leaves the server at pos for replication and drops the
// temporary account, so that the restored directory holds nothing of
// dbha's.
func finishMariaDB(ctx context.Context, srv *Server, pos topology.Position) error {
	db, err := srv.DB("")
	if err != nil {
		return err
	}
	defer db.Close()
	user, _ := srv.Account()
	for _, q := range []string{
		"SET GLOBAL gtid_slave_pos = '" + pos.String() + "'",
		"DROP USER IF EXISTS '" + user + "'@'127.0.0.1'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(q)[0]+" "+strings.Fields(q)[1], err)
		}
	}
	return nil
}

// replayWAL brings a restored PostgreSQL directory from the end of the
// backup to o.Until with the WAL dbha's store holds: archive recovery on a
// throwaway server, fetching from a staged copy of the store, pausing at
// the target; then recovery ends (a new timeline) and the server stops
// cleanly.
func replayWAL(ctx context.Context, e Entry, o RestoreOptions, r Restored) (Restored, error) {
	st, err := pgstream.OpenStore(o.Store)
	if err != nil {
		return r, err
	}
	end := st.Position()
	if until := o.Until.Position; !until.IsZero() {
		switch {
		case until.LSN() < e.StopPosition.LSN():
			return r, fmt.Errorf("backup %s is consistent only from %s, after %s: restore an older backup (this one reaches LSNs from %s to %s)", e.ID, e.StopPosition.LSN(), until.LSN(), e.StopPosition.LSN(), end.LSN())
		case end.IsZero() || until.LSN() > end.LSN():
			return r, fmt.Errorf("dbha's WAL store holds up to %s, not %s (this backup reaches LSNs from %s to %s)", end.LSN(), until.LSN(), e.StopPosition.LSN(), end.LSN())
		}
	}
	staged, err := os.MkdirTemp("", "dbha-restore-wal-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(staged)
	if _, err := st.Stage(staged, e.StopPosition); err != nil {
		return r, err
	}
	if err := o.Owner.Chown(staged); err != nil {
		return r, err
	}
	if err := os.WriteFile(filepath.Join(o.To, "recovery.signal"), nil, 0o600); err != nil {
		return r, err
	}
	if err := o.Owner.Chown(filepath.Join(o.To, "recovery.signal")); err != nil {
		return r, err
	}
	settings := map[string]string{
		"restore_command":           fmt.Sprintf("cp '%s/%%f' '%%p'", staged),
		"recovery_target_inclusive": "on",
		"recovery_target_action":    "pause",
		"recovery_target_timeline":  "latest",
	}
	if o.Until.Time.IsZero() {
		settings["recovery_target_lsn"] = o.Until.Position.LSN().String()
	} else {
		// PostgreSQL's own timestamp form, to the microsecond it keeps
		// ("T" and "Z" are refused in this setting).
		settings["recovery_target_time"] = o.Until.Time.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
	}
	srv, err := StartServer(ctx, e.Engine, o.To, ServerOptions{Owner: o.Owner, Roles: o.Roles, Settings: settings})
	if err != nil {
		return r, err
	}
	defer srv.Stop()
	db, err := srv.DB("")
	if err != nil {
		return r, err
	}
	defer db.Close()
	// Paused at the target, or exited: recovery that ends before the
	// target is fatal, and the log says why.
	var reached string
	for deadline := time.Now().Add(time.Hour); ; {
		var state string
		err := db.QueryRowContext(ctx, "SELECT pg_get_wal_replay_pause_state(), pg_last_wal_replay_lsn()::text").Scan(&state, &reached)
		if err == nil && state == "paused" {
			break
		}
		select {
		case <-srv.exited:
			return r, fmt.Errorf("replay stopped before %s (this backup reaches from its end at %s, and dbha's WAL store holds up to %s): %s", o.Until, e.StopPosition.LSN(), end.LSN(), srv.Log())
		case <-ctx.Done():
			return r, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("replay has not reached %s within an hour: %s", o.Until, srv.Log())
		}
	}
	lsn, err := topology.ParseLSN(reached)
	if err != nil {
		return r, err
	}
	if err := replayedAsAsked(ctx, db, o.Until, lsn); err != nil {
		return r, err
	}
	if _, err := db.ExecContext(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		return r, err
	}
	for deadline := time.Now().Add(time.Minute); ; {
		var inRecovery bool
		if err := db.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err == nil && !inRecovery {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("recovery did not end within a minute after the target: %s", srv.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return r, err
	}
	db.Close()
	// Replay followed the store's newest timeline (recovery_target_timeline
	// latest): the target lies on the one of its lineage current there.
	r.Position = topology.PostgresAt(lsn, end.TimelineAt(lsn))
	r.Replayed = int64(lsn - e.StopPosition.LSN())
	r.Detail = fmt.Sprintf("replayed WAL from dbha's store from %s to %s", e.StopPosition, r.Position)
	return r, srv.Stop()
}

// replayedAsAsked reads back where a paused recovery stands: past an LSN
// target (recovery stops after the record that reaches it), or, for a time
// target, with no transaction replayed that committed after it.
func replayedAsAsked(ctx context.Context, db *sql.DB, until Target, reached topology.LSN) error {
	if until.Time.IsZero() {
		if reached < until.Position.LSN() {
			return fmt.Errorf("recovery paused at %s, before the %s asked for", reached, until.Position.LSN())
		}
		return nil
	}
	var last sql.NullTime
	if err := db.QueryRowContext(ctx, "SELECT pg_last_xact_replay_timestamp()").Scan(&last); err != nil {
		return fmt.Errorf("read back the last replayed commit: %w", err)
	}
	if last.Valid && last.Time.After(until.Time) {
		return fmt.Errorf("recovery replayed a transaction committed at %s, after the %s asked for", last.Time.Format(time.RFC3339Nano), until)
	}
	return nil
}
