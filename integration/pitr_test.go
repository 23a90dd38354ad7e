package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/backup"
	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// commitAt is one row a writer committed: when its statement was sent and
// when the commit returned, and its GTID.
type commitAt struct {
	id         int
	start, end time.Time
	gtid       string
}

// pitrTables are written from two sessions in two GTID domains.
var pitrTables = []struct {
	name   string
	domain int
}{{"dbha_pitr_a", 0}, {"dbha_pitr_b", 7}}

// TestMariaDBPointInTimeIsExact restores one backup to GTID and time
// targets, before and after a failover that dbha's binlog store records,
// with two GTID domains written at once, and checks that every table holds
// exactly the rows committed up to the target: none missing, none beyond.
// Targets the store cannot settle (a sub-second time inside a second with
// commits; a time after the store last heard from the primary; a time
// before the backup) are refused with what it can reach.
func TestMariaDBPointInTimeIsExact(t *testing.T) {
	bin := dbhaBinary(t)
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	startDbhaRun(t, bin, l, "pitr-watcher")
	first := addr(t, l, "mariadb-1")
	waitPublishedWriter(t, c, mariadbCluster, first)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	store := binlog.Dir(filepath.Join(l.Dir, "state"), mariadbCluster)

	primary := mysqlDB(t, l, "mariadb-1")
	for _, tb := range pitrTables {
		mustExec(t, primary, "CREATE TABLE dbha_lab."+tb.name+" (id INT PRIMARY KEY)")
	}
	waitReplicasHave(ctx, t, l, "mariadb-1")
	e := backupRunCLI(t, bin, l, mariadbCluster)
	t.Logf("backup %s at %s", e.ID, e.Position)

	phase1, q1, busy1 := pitrPhase(ctx, t, primary, 1)
	storeHolds(t, l, store, "mariadb-1")

	killTree(t, l, "mariadb-1")
	rec := waitRecoveryOf(t, bin, l, mariadbCluster, first, 60*time.Second)
	next := nodeName(t, l, rec.Plan.NewPrimary)
	waitPublishedWriter(t, c, mariadbCluster, rec.Plan.NewPrimary)
	phase2, q2, _ := pitrPhase(ctx, t, mysqlDB(t, l, next), 100000)
	storeHolds(t, l, store, next)

	owner, err := backup.LookupOwner(backup.DefaultOwner(topology.MariaDB))
	if err != nil {
		t.Fatal(err)
	}
	byTime := func(at time.Time, phases ...map[string][]commitAt) map[string][]int {
		want := map[string][]int{}
		for _, p := range phases {
			for table, cs := range p {
				for _, c := range cs {
					if !c.start.After(at) && c.end.After(at) {
						t.Fatalf("row %d of %s was in flight at %s: the target is not a clean one", c.id, table, at)
					}
					if !c.end.After(at) {
						want[table] = append(want[table], c.id)
					}
				}
			}
		}
		return want
	}

	// Time targets: the quiet second itself, and half a second into it,
	// before the failover; a quarter second into the quiet second after it.
	for _, at := range []time.Time{q1, q1.Add(500 * time.Millisecond)} {
		restoreAndCompare(ctx, t, labRepo(l), e, owner, store, at.Format(time.RFC3339Nano), byTime(at, phase1))
	}
	at2 := q2.Add(250 * time.Millisecond)
	restoreAndCompare(ctx, t, labRepo(l), e, owner, store, at2.Format(time.RFC3339Nano), byTime(at2, phase1, phase2))

	// A GTID target in both domains, past the failover: each table up to
	// its writer's middle commit of the second phase.
	target := topology.Position{}
	want := map[string][]int{}
	for _, tb := range pitrTables {
		cs := phase2[tb.name]
		mid := cs[len(cs)/2]
		g, err := topology.ParseMariaDB(mid.gtid)
		if err != nil {
			t.Fatal(err)
		}
		if target, err = topology.Union(target, g); err != nil {
			t.Fatal(err)
		}
		for _, c := range phase1[tb.name] {
			want[tb.name] = append(want[tb.name], c.id)
		}
		for _, c := range cs[:len(cs)/2+1] {
			want[tb.name] = append(want[tb.name], c.id)
		}
	}
	if got := restoreAndCompare(ctx, t, labRepo(l), e, owner, store, target.String(), want); got.Position.String() != target.String() {
		t.Errorf("restore reports %s, want %s", got.Position, target)
	}

	// Verify reports the window this backup supports with the store.
	v, err := backup.Verify(ctx, backup.Dir(labRepo(l)), e, backup.VerifyOptions{Owner: owner, Store: store})
	if err != nil || v.Verification.PITR == nil || v.Verification.PITR.From.String() != e.Position.String() {
		t.Fatalf("verify with the store: %v (%+v)", err, v.Verification)
	}
	if o, err := topology.Compare(v.Verification.PITR.To, target); err != nil || o == topology.Behind {
		t.Errorf("the window ends at %s, before %s which the store holds", v.Verification.PITR.To, target)
	}
	t.Logf("verify: %s", v.Verification.Detail)
	// A store that began after the backup does not reach back to it: the
	// backup supports no point-in-time restore from it, and verify fails.
	late := t.TempDir()
	startMariaStream(t, l, late, next)
	mariaHolds(t, l, late, next)
	mustExec(t, mysqlDB(t, l, next), "INSERT INTO dbha_lab.dbha_pitr_a VALUES (999999)")
	storeHolds(t, l, late, next)
	if _, err := backup.Verify(ctx, backup.Dir(labRepo(l)), e, backup.VerifyOptions{Owner: owner, Store: late}); !errors.Is(err, backup.ErrNoWindow) {
		t.Errorf("verify with a store that starts after the backup: %v; want ErrNoWindow", err)
	}

	// Refused: what the store cannot settle.
	for _, tc := range []struct{ target, why string }{
		{busy1.Add(500 * time.Millisecond).Format(time.RFC3339Nano), "cannot be told"},
		{time.Now().Add(time.Hour).Format(time.RFC3339Nano), "not held"},
		{e.Started.Add(-time.Minute).Format(time.RFC3339Nano), "restore an older backup"},
	} {
		until, err := backup.ParseTarget(topology.MariaDB, tc.target)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(reachableDir(t), "refused")
		_, err = backup.Restore(ctx, backup.Dir(labRepo(l)), e, backup.RestoreOptions{To: dir, Owner: owner, Until: until, Store: store})
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("restore to %s: %v; want it refused (%s)", tc.target, err, tc.why)
			continue
		}
		t.Logf("refused %s: %v", tc.target, err)
	}
}

// restoreAndCompare restores e to target and checks each table's ids.
func restoreAndCompare(ctx context.Context, t *testing.T, repo string, e backup.Entry, owner backup.Owner, store, target string, want map[string][]int) backup.Restored {
	t.Helper()
	until, err := backup.ParseTarget(topology.MariaDB, target)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(reachableDir(t), "pitr")
	start := time.Now()
	r, err := backup.Restore(ctx, backup.Dir(repo), e, backup.RestoreOptions{To: dir, Owner: owner, Until: until, Store: store})
	if err != nil {
		t.Fatalf("restore to %s: %v", target, err)
	}
	t.Logf("restore to %s in %v: %s", target, time.Since(start).Round(time.Millisecond), r.Detail)
	srv, err := backup.StartServer(ctx, topology.MariaDB, dir, backup.ServerOptions{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	db := serverDB(t, srv, topology.MariaDB)
	for _, tb := range pitrTables {
		var ids []int
		rows, err := db.QueryContext(ctx, "SELECT id FROM dbha_lab."+tb.name+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		w := slices.Sorted(slices.Values(want[tb.name]))
		if got, wantRanges := ranges(ids), ranges(w); got != wantRanges {
			t.Errorf("restored to %s: %s holds %s, want %s", target, tb.name, got, wantRanges)
		}
	}
	return r
}

// pitrPhase writes both tables at once, from ids base.., for about five
// seconds, with a quiet whole second in which no statement begins (from
// 300 ms before it to 300 ms after it), and returns the commits, that
// second, and a later whole second the writers kept busy.
func pitrPhase(ctx context.Context, t *testing.T, db *sql.DB, base int) (map[string][]commitAt, time.Time, time.Time) {
	t.Helper()
	quiet := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	busy := quiet.Add(2 * time.Second)
	until := quiet.Add(3 * time.Second)
	var mu sync.Mutex
	out := map[string][]commitAt{}
	var errs []error
	var wg sync.WaitGroup
	for _, tb := range pitrTables {
		wg.Go(func() {
			cs, err := pitrWriter(ctx, db, tb.name, tb.domain, base, quiet.Add(-300*time.Millisecond), quiet.Add(1300*time.Millisecond), until)
			mu.Lock()
			defer mu.Unlock()
			out[tb.name] = cs
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", tb.name, err))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for table, cs := range out {
		inBusy := slices.ContainsFunc(cs, func(c commitAt) bool { return !c.start.Before(busy) && c.start.Before(busy.Add(time.Second)) })
		if len(cs) < 20 || !inBusy {
			t.Fatalf("%s: %d commits, none begun in the busy second %s: the load is too thin to test", table, len(cs), busy)
		}
	}
	return out, quiet, busy
}

// pitrWriter inserts rows from its own session in domain until the time
// until, beginning none in [quietFrom, quietTo); at most 3000 rows.
func pitrWriter(ctx context.Context, db *sql.DB, table string, domain, base int, quietFrom, quietTo, until time.Time) ([]commitAt, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET SESSION gtid_domain_id = %d", domain)); err != nil {
		return nil, err
	}
	var out []commitAt
	for id := base; id < base+3000; id++ {
		now := time.Now()
		if !now.Before(until) {
			break
		}
		if !now.Before(quietFrom) && now.Before(quietTo) {
			time.Sleep(time.Until(quietTo))
		}
		c := commitAt{id: id, start: time.Now()}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("INSERT INTO dbha_lab.%s VALUES (%d)", table, id)); err != nil {
			return out, err
		}
		c.end = time.Now()
		if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&c.gtid); err != nil {
			return out, err
		}
		out = append(out, c)
		time.Sleep(5 * time.Millisecond)
	}
	return out, nil
}

// waitReplicasHave waits until every running replica has the node's
// binlog position.
func waitReplicasHave(ctx context.Context, t *testing.T, l *Lab, node string) {
	t.Helper()
	pos := mariaBinlogPos(t, l, node)
	for _, n := range l.nodesOfKind(KindMariaDB) {
		if n.Name == node {
			continue
		}
		db := mysqlDB(t, l, n.Name)
		waitUntil(t, time.Minute, n.Name+" to have "+pos, func() error { return replicaCaughtUp(ctx, db, pos) })
	}
}

// storeHolds waits until dbha's store holds node's binlog position.
func storeHolds(t *testing.T, l *Lab, store, node string) {
	t.Helper()
	want, err := topology.ParseMariaDB(mariaBinlogPos(t, l, node))
	if err != nil {
		t.Fatal(err)
	}
	waitMariaStatus(t, store, "the store to hold "+node+"'s "+want.String(), func(st binlog.Status) error {
		if o, err := topology.Compare(st.Position, want); err != nil || o == topology.Behind || o == topology.Diverged {
			return fmt.Errorf("store at %s, %s at %s", st.Position, node, want)
		}
		return nil
	})
}
