package mysql

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func maria(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResumable(t *testing.T) {
	journal := func(state string) rewindJournal {
		return rewindJournal{Addr: "db1:3306", Primary: "db2:3306", State: state, File: "/s/rewind-db1_3306-x.bin",
			Before: maria(t, "0-1-20"), Tail: maria(t, "0-1-20"), From: maria(t, "0-1-10"), Kept: maria(t, "0-1-10")}
	}
	tests := []struct {
		name    string
		state   string
		own     string
		primary string
		finish  bool
		refused string
	}{
		{name: "interrupted while undoing", state: journalUndoing, own: "0-1-20", primary: "0-1-10,0-2-15",
			refused: "interrupted while undoing"},
		{name: "undone, nothing reset yet", state: journalUndone, own: "0-1-20", primary: "0-1-10,0-2-15", finish: true},
		{name: "undone, binlog reset", state: journalUndone, own: "", primary: "0-1-10,0-2-15", finish: true},
		{name: "undone, GTID state set", state: journalUndone, own: "0-1-10", primary: "0-1-10,0-2-15", finish: true},
		{name: "undone, and a later primary lacks what it went back to", state: journalUndone, own: "0-1-20", primary: "0-3-9",
			refused: "which the primary db3:3306 lacks"},
		{name: "undone, replicating since", state: journalUndone, own: "0-1-10,0-2-17", primary: "0-1-10,0-2-17"},
		{name: "undoing, but reseeded since", state: journalUndoing, own: "0-2-15", primary: "0-1-10,0-2-15"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			finish, err := resumable(journal(tc.state), maria(t, tc.own), maria(t, tc.primary), "db3:3306")
			if tc.refused != "" {
				if !errors.Is(err, ErrCannotRewind) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v, want ErrCannotRewind saying %q", err, tc.refused)
				}
				return
			}
			if err != nil || finish != tc.finish {
				t.Fatalf("finish %v, %v; want %v", finish, err, tc.finish)
			}
		})
	}
}

func TestReadyToUndo(t *testing.T) {
	fenced := rewindState{readOnly: true, binlogFormat: "ROW", rowImage: "FULL",
		links: []*topology.Replication{{Source: "db2:3306"}}} // configured, stopped
	tests := []struct {
		name    string
		edit    func(*rewindState)
		refused bool // a refusal (ErrCannotRewind) rather than a precondition
		want    string
	}{
		{name: "fenced and idle", edit: func(*rewindState) {}},
		{name: "writable", edit: func(s *rewindState) { s.readOnly = false }, want: "fence it first"},
		{name: "replicating", edit: func(s *rewindState) { s.links[0].SQLRunning = true }, want: "it replicates (from db2:3306)"},
		{name: "statement logging", edit: func(s *rewindState) { s.binlogFormat = "MIXED" }, refused: true, want: "binlog_format is MIXED"},
		{name: "minimal images", edit: func(s *rewindState) { s.rowImage = "MINIMAL" }, refused: true, want: "binlog_row_image is MINIMAL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fenced
			st.links = []*topology.Replication{{Source: "db2:3306"}}
			tc.edit(&st)
			err := st.readyToUndo("db1:3306")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrCannotRewind) != tc.refused {
				t.Fatalf("err = %v; want one saying %q, a refusal: %v", err, tc.want, tc.refused)
			}
		})
	}
}

func TestRewindJournal(t *testing.T) {
	dir := t.TempDir()
	if j, err := readJournal(dir, "[::1]:3306"); j != nil || err != nil {
		t.Fatalf("no journal yet: %v, %v", j, err)
	}
	j := rewindJournal{Addr: "[::1]:3306", Primary: "[::1]:3307", State: journalUndone, Time: time.Unix(1, 0).UTC(),
		Before: maria(t, "0-1-20"), Tail: maria(t, "0-1-20"), From: maria(t, "0-1-10"), Kept: maria(t, "0-1-10,0-2-5"),
		File: "f.bin", Transactions: 10, Events: 40}
	if err := writeJournal(dir, j); err != nil {
		t.Fatal(err)
	}
	got, err := readJournal(dir, "[::1]:3306")
	if err != nil || got.State != j.State || got.Kept.String() != "0-1-10,0-2-5" || got.From.String() != "0-1-10" || got.Transactions != 10 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 || filepath.Base(names[0]) != "rewind-___1__3306.json" {
		t.Errorf("files %v, want only the journal", names)
	}
	if st, err := os.Stat(names[0]); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if p := tailPath(dir, "db1:3306", time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)); filepath.Base(p) != "rewind-db1_3306-20260102T030405.006Z.bin" {
		t.Errorf("tail path %s", p)
	}
}

func TestTupleList(t *testing.T) {
	in, args := tupleList([]string{"a.t", "b.u"})
	if in != "((?, ?), (?, ?))" || len(args) != 4 || args[0] != "a" || args[1] != "t" || args[2] != "b" || args[3] != "u" {
		t.Errorf("tupleList = %q %v", in, args)
	}
	for rule, want := range map[string]bool{"RESTRICT": false, "NO ACTION": false, "CASCADE": true, "SET NULL": true, "SET DEFAULT": true} {
		if cascades(rule) != want {
			t.Errorf("cascades(%q) = %v", rule, !want)
		}
	}
}
