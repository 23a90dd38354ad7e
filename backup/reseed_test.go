package backup

import (
	"errors"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

func TestChooseReseed(t *testing.T) {
	verified := func(id string, ok bool) Entry {
		return Entry{ID: id, Status: Done, Verification: &Verification{OK: ok}}
	}
	catalog := []Entry{verified("b1", true), verified("b2", true), verified("b3", false), {ID: "b4", Status: Failed}, {ID: "b5", Status: Done}}
	snapshot := func(t *testing.T) topology.Snapshot {
		p := pos(t, "0-1-100")
		broken := replica(t, "db3", "0-1-50", 0)
		broken.Replication.SQLRunning = false
		return topology.Build("c", topology.MariaDB, []topology.Instance{
			{Addr: "db1", Reachable: true, Current: p, History: p},
			replica(t, "db2", "0-1-99", 1), broken, {Addr: "db4", Error: "refused"},
		}, time.Unix(0, 0))
	}
	cases := []struct {
		name, instance, backup string
		force                  bool
		want, wantErr          string
		running                bool
	}{
		{"a broken replica from the newest verified backup", "db3", "", false, "b2", "", true},
		{"a stopped instance", "db4", "", false, "b2", "", false},
		{"a named verified backup", "db3", "b1", false, "b1", "", true},
		{"a named backup whose verification failed", "db3", "b3", false, "", "failed its verification", false},
		{"a named backup never verified", "db3", "b5", false, "", "never verified", false},
		{"a named failed backup", "db3", "b4", false, "", "failed", false},
		{"no such backup", "db3", "b9", false, "", "no backup b9", false},
		{"never the primary", "db1", "", true, "", "is the primary", false},
		{"a healthy replica needs --force", "db2", "", false, "", "--force", false},
		{"a healthy replica with --force", "db2", "", true, "b2", "", true},
		{"not an instance", "db9", "", false, "", "not an instance", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseReseed(snapshot(t), tc.instance, catalog, tc.backup, tc.force)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Backup.ID != tc.want || got.Primary != "db1" || got.Running != tc.running {
				t.Fatalf("ChooseReseed = %+v, %v; want backup %s, running %v", got, err, tc.want, tc.running)
			}
		})
	}
	if _, err := ChooseReseed(snapshot(t), "db3", []Entry{verified("b3", false)}, "", false); err == nil || !strings.Contains(err.Error(), "no verified backup") {
		t.Errorf("without a verified backup: %v", err)
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		engine  topology.Engine
		in      string
		want    string
		wantErr bool
	}{
		{topology.MariaDB, "0-1-1500", "0-1-1500", false},
		{topology.MariaDB, "0-1-15,1-2-7", "0-1-15,1-2-7", false},
		{topology.MariaDB, "2026-11-21T02:00:00Z", "2026-11-21T02:00:00Z", false},
		{topology.MariaDB, "0/3000060", "", true},
		{topology.Postgres, "0/3000060", "0/3000060", false},
		{topology.Postgres, "2026-11-21T02:00:00.5+01:00", "2026-11-21T02:00:00.5+01:00", false},
		{topology.Postgres, "0-1-1500", "", true},
		{topology.Postgres, "yesterday", "", true},
	}
	for _, tc := range cases {
		got, err := ParseTarget(tc.engine, tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseTarget(%s, %q) = %v, want an error", tc.engine, tc.in, got)
			}
			continue
		}
		s := got.String()
		if tc.engine == topology.Postgres && got.Time.IsZero() {
			s = got.Position.LSN().String()
		}
		if err != nil || s != tc.want {
			t.Errorf("ParseTarget(%s, %q) = %q, %v; want %q", tc.engine, tc.in, s, err, tc.want)
		}
	}
	if got, err := ParseTarget(topology.MariaDB, ""); err != nil || !got.IsZero() {
		t.Errorf("an empty --until = %+v, %v; want the zero Target", got, err)
	}
}

func TestReplayEnd(t *testing.T) {
	at := func(sec int) time.Time { return time.Unix(1000+int64(sec), 0) }
	ms := func(sec, milli int) time.Time { return at(sec).Add(time.Duration(milli) * time.Millisecond) }
	// The backup is at 0-1-10 (the store holds its last transaction,
	// stamped at second 0); the store holds 11..14 in domain 0 and one
	// transaction of domain 1, and heard from the primary until second 8.
	txns := []binlog.Transaction{
		{Position: "0-1-10", Time: at(0)},
		{Position: "0-1-11", Time: at(1)}, {Position: "1-2-1", Time: at(2)}, {Position: "0-1-12", Time: at(3)},
		{Position: "0-1-13", Time: at(4)}, {Position: "0-1-14", Time: at(5)},
	}
	from, held, heard := pos(t, "0-1-10"), pos(t, "0-1-14,1-2-1"), at(8)
	cases := []struct {
		name    string
		until   Target
		want    string
		n       int64
		wantErr string
	}{
		{"a GTID in the middle", Target{Position: pos(t, "0-1-12")}, "0-1-12", 2, ""},
		{"a GTID list over two domains", Target{Position: pos(t, "0-1-13,1-2-1")}, "0-1-13,1-2-1", 4, ""},
		{"the backup's own point", Target{Position: pos(t, "0-1-10")}, "0-1-10", 0, ""},
		{"everything held", Target{Position: held}, "0-1-14,1-2-1", 5, ""},
		// Stamped at second 3: committed in [3, 4), so by 4 and not by 3.
		{"a whole second after a commit's", Target{Time: at(4)}, "0-1-12,1-2-1", 3, ""},
		{"a whole second: that second's commit is after it", Target{Time: at(3)}, "0-1-11,1-2-1", 2, ""},
		{"a sub-second time in a second without commits", Target{Time: ms(6, 1)}, "0-1-14,1-2-1", 5, ""},
		{"a sub-second time in a commit's second", Target{Time: ms(3, 500)}, "", 0, "cannot be told"},
		{"the backup's second", Target{Time: ms(0, 500)}, "", 0, "restore an older backup"},
		{"before the backup", Target{Time: at(-5)}, "", 0, "reaches times from 1970-01-01T00:16:41Z"},
		{"right after the backup", Target{Time: at(1)}, "0-1-10", 0, ""},
		{"after everything held, while the stream heard", Target{Time: ms(7, 250)}, "0-1-14,1-2-1", 5, ""},
		{"after the stream last heard", Target{Time: at(9)}, "", 0, "what was committed in between is not held"},
		{"a GTID before the backup", Target{Position: pos(t, "0-1-9")}, "", 0, "restore an older backup"},
		{"a GTID beyond the store", Target{Position: pos(t, "0-1-20")}, "", 0, "holds up to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := replayEnd(from, held, seq2(txns), tc.until, heard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want || n != tc.n {
				t.Fatalf("replayEnd = %s, %d, %v; want %s, %d", got, n, err, tc.want, tc.n)
			}
		})
	}
	// A store that cannot be read to the end settles nothing.
	broken := func(yield func(binlog.Transaction, error) bool) {
		if yield(txns[0], nil) {
			yield(binlog.Transaction{}, errors.New("index torn"))
		}
	}
	if _, _, err := replayEnd(from, held, broken, Target{Position: held}, heard); err == nil || !strings.Contains(err.Error(), "index torn") {
		t.Errorf("a walk that fails: %v", err)
	}
}

func TestFormatProgress(t *testing.T) {
	cases := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{512 << 20, 2 << 30, 2 * time.Second, "512.0 MiB of 2.0 GiB (25%), 256.0 MiB/s, 6s left"},
		{2 << 30, 2 << 30, 8 * time.Second, "2.0 GiB of 2.0 GiB (100%), 256.0 MiB/s, 0s left"},
		{3 << 30, 2 << 30, 8 * time.Second, "3.0 GiB of 2.0 GiB (100%), 384.0 MiB/s, 0s left"},
		{0, 1 << 20, 0, "0 B of 1.0 MiB (0%), 0 B/s, ? left"},
		{10 << 20, 0, 5 * time.Second, "10.0 MiB, 2.0 MiB/s"},
	}
	for _, tc := range cases {
		if got := FormatProgress(tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("FormatProgress(%d, %d, %v) = %q, want %q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	root := t.TempDir()
	repo := Dir(root)
	e := Entry{ID: "b1", Cluster: "c", Status: Done}
	dir := EntryDir(root, "c", "b1")
	for name, body := range map[string]string{"data/a": "alpha", "data/b": "beta"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := hashFiles(dir, "data")
	if err != nil {
		t.Fatal(err)
	}
	e.Files = files
	if err := CheckFiles(t.Context(), repo, e); err != nil {
		t.Fatalf("intact backup: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "data/b"), []byte("betA"), 0o600)
	if err := CheckFiles(t.Context(), repo, e); !errors.Is(err, ErrAltered) || !strings.Contains(err.Error(), "data/b") {
		t.Errorf("altered file: %v", err)
	}
	os.Remove(filepath.Join(dir, "data/a"))
	if err := CheckFiles(t.Context(), repo, e); !errors.Is(err, ErrAltered) || !strings.Contains(err.Error(), "data/a is missing") {
		t.Errorf("missing file: %v", err)
	}
	e.Status = Failed
	if err := CheckFiles(t.Context(), repo, e); err == nil || !strings.Contains(err.Error(), "not done") {
		t.Errorf("failed backup: %v", err)
	}
}

// A base backup with a tablespace archive beside base.tar is refused.
func TestNoTablespaces(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"base.tar.zst", "pg_wal.tar", "backup_manifest"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	if err := noTablespaces(dir); err != nil {
		t.Fatalf("a backup without tablespaces: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "16390.tar.zst"), nil, 0o600)
	if err := noTablespaces(dir); !errors.Is(err, ErrTablespaces) || !strings.Contains(err.Error(), "16390.tar.zst") {
		t.Fatalf("a backup with a tablespace: %v", err)
	}
}

// seq2 yields the transactions with no error, as a store's walk does.
func seq2(txns []binlog.Transaction) iter.Seq2[binlog.Transaction, error] {
	return func(yield func(binlog.Transaction, error) bool) {
		for _, t := range txns {
			if !yield(t, nil) {
				return
			}
		}
	}
}
