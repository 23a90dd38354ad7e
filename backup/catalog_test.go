package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

var t0 = time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)

func entry(id string, daysAgo int, st Status, verified bool) Entry {
	e := Entry{ID: id, Cluster: "c", Status: st, Started: t0.AddDate(0, 0, -daysAgo), Finished: t0.AddDate(0, 0, -daysAgo).Add(time.Hour)}
	if verified {
		e.Verification = &Verification{OK: true}
	}
	return e
}

func TestPrune(t *testing.T) {
	cases := []struct {
		name    string
		entries []Entry
		r       Retention
		want    []string
	}{
		{"keep the newest three", []Entry{entry("a", 5, Done, false), entry("b", 4, Done, false), entry("c", 3, Done, false),
			entry("d", 2, Done, false), entry("e", 1, Done, false)}, Retention{Keep: 3}, []string{"a", "b"}},
		{"beyond Keep only what is too old goes", []Entry{entry("a", 40, Done, false), entry("b", 10, Done, false), entry("c", 1, Done, false)},
			Retention{Keep: 1, MaxAge: 30 * 24 * time.Hour}, []string{"a"}},
		{"never the newest verified backup", []Entry{entry("a", 40, Done, true), entry("b", 10, Done, false), entry("c", 1, Done, false)},
			Retention{Keep: 1}, []string{"b"}},
		{"failed backups go, running ones stay", []Entry{entry("a", 3, Failed, false), entry("b", 2, Done, false), entry("c", 0, Running, false)},
			Retention{Keep: 5}, []string{"a"}},
		{"keep 0 keeps every finished backup", []Entry{entry("a", 400, Done, false), entry("b", 1, Done, false)}, Retention{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Prune(tc.entries, tc.r, t0); !slices.Equal(got, tc.want) {
				t.Fatalf("Prune = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPruneRepository(t *testing.T) {
	root := t.TempDir()
	repo := Dir(root)
	for _, e := range []Entry{entry("a", 40, Done, true), entry("b", 20, Failed, false), entry("c", 10, Done, false),
		entry("d", 1, Done, false), entry("e", 0, Running, false)} {
		if err := Save(t.Context(), repo, e); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := PruneRepository(t.Context(), repo, "c", Retention{Keep: 1}, t0)
	if err != nil || !slices.Equal(deleted, []string{"b", "c"}) {
		t.Fatalf("PruneRepository = %v, %v; want [b c]", deleted, err)
	}
	left, err := List(t.Context(), repo, "c")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range left {
		ids = append(ids, e.ID)
	}
	// a is the newest verified backup, d within Keep, e still running.
	if !slices.Equal(ids, []string{"a", "d", "e"}) {
		t.Fatalf("left in the catalog: %v, want [a d e]", ids)
	}
	for _, id := range []string{"b", "c"} {
		if _, err := os.Stat(EntryDir(root, "c", id)); !os.IsNotExist(err) {
			t.Errorf("backup %s's directory is still there: %v", id, err)
		}
	}

	// A catalog that cannot be read whole is not pruned at all.
	if err := Save(t.Context(), repo, entry("f", 3, Failed, false)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "c", "stray"), 0o750); err != nil {
		t.Fatal(err)
	}
	if deleted, err := PruneRepository(t.Context(), repo, "c", Retention{Keep: 1}, t0); err == nil || deleted != nil {
		t.Fatalf("pruned %v despite a stray directory (%v)", deleted, err)
	}
	if _, err := os.Stat(EntryDir(root, "c", "f")); err != nil {
		t.Fatalf("a failed backup went although the catalog could not be read: %v", err)
	}
}

func TestCatalogRoundTrip(t *testing.T) {
	root := t.TempDir()
	repo := Dir(root)
	p, _ := topology.ParseMariaDB("0-1-42")
	newer := Entry{ID: "b2", Cluster: "c", Engine: topology.MariaDB, Status: Done, Started: t0, Position: p,
		Files: []File{{Name: "backup.xb.zst", Size: 10, SHA256: "ab"}}}
	older := Entry{ID: "b1", Cluster: "c", Engine: topology.MariaDB, Status: Failed, Started: t0.Add(-time.Hour), Error: "source died"}
	for _, e := range []Entry{newer, older} {
		if err := Save(t.Context(), repo, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := List(t.Context(), repo, "c")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "b1" || got[1].ID != "b2" || got[1].Position.String() != "0-1-42" || got[1].Files[0].SHA256 != "ab" {
		t.Fatalf("List = %+v", got)
	}
	// A directory without an entry is reported, not skipped.
	if err := os.MkdirAll(filepath.Join(root, "c", "stray"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := List(t.Context(), repo, "c"); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Fatalf("a stray directory went unreported: %v", err)
	}
	if got, err := List(t.Context(), repo, "nothing-yet"); err != nil || got != nil {
		t.Fatalf("an empty catalog: %v %v", got, err)
	}
}

// Two ids made in one millisecond differ, and ids sort as their backups
// were taken.
func TestNewIDIsUniqueAndSorts(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID(t0)
		if seen[id] {
			t.Fatalf("NewID repeated %s", id)
		}
		seen[id] = true
	}
	if a, b := NewID(t0), NewID(t0.Add(time.Millisecond)); a >= b {
		t.Fatalf("NewID(t0) = %s sorts after NewID(t0+1ms) = %s", a, b)
	}
}

// A run whose id names an existing entry is refused before it writes
// anything: the other backup's entry and files stay as they were. A run
// that fails removes its own partial file, never another entry's.
func TestRunNeverTouchesAnotherEntry(t *testing.T) {
	root := t.TempDir()
	repo := Dir(root)
	first := Entry{ID: "b1", Cluster: "c", Status: Done, Started: t0, Files: []File{{Name: "backup.xb.zst"}}}
	if err := Save(t.Context(), repo, first); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(EntryDir(root, "c", "b1"), "backup.xb.zst")
	if err := os.WriteFile(data, []byte("the first backup"), 0o640); err != nil {
		t.Fatal(err)
	}
	took := false
	failing := func(*Entry) error { took = true; return os.ErrDeadlineExceeded }
	if _, err := run(t.Context(), Job{Repo: repo, ID: "b1", Cluster: "c", Now: func() time.Time { return t0 }}, topology.MariaDB, failing); !errors.Is(err, ErrIDTaken) || took {
		t.Fatalf("run over an existing id: %v (took a backup: %v), want ErrIDTaken before anything", err, took)
	}
	job := Job{Repo: repo, ID: "b2", Cluster: "c", Now: func() time.Time { return t0 }}
	if _, err := run(t.Context(), job, topology.MariaDB, func(*Entry) error {
		w, err := repo.create(t.Context(), "c", "b2", "backup.xb.zst")
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("partial")); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return os.ErrDeadlineExceeded
	}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("failing run: %v", err)
	}
	entries, err := List(t.Context(), repo, "c")
	if err != nil || len(entries) != 2 {
		t.Fatalf("List = %+v, %v; want b1 and the failed b2", entries, err)
	}
	for _, e := range entries {
		if e.ID == "b1" && e.Status != Done || e.ID == "b2" && e.Status != Failed {
			t.Errorf("%s is %s", e.ID, e.Status)
		}
	}
	if b, err := os.ReadFile(data); err != nil || string(b) != "the first backup" {
		t.Errorf("the first backup's file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(EntryDir(root, "c", "b2"), "backup.xb.zst")); !os.IsNotExist(err) {
		t.Errorf("the failed run's partial file is still there: %v", err)
	}
}

// A running entry whose heartbeat stopped more than StaleAfter ago is a
// dead run's: Sweep marks it failed with the reason and removes its
// partial files; a live run's entry and a done one stay as they are.
func TestSweepStaleRuns(t *testing.T) {
	root := t.TempDir()
	repo := Dir(root)
	dead := Entry{ID: "dead", Cluster: "c", Status: Running, Started: t0.Add(-time.Hour), Heartbeat: t0.Add(-10 * time.Minute)}
	alive := Entry{ID: "alive", Cluster: "c", Status: Running, Started: t0.Add(-time.Hour), Heartbeat: t0.Add(-time.Minute)}
	old := Entry{ID: "old", Cluster: "c", Status: Running, Started: t0.Add(-time.Hour)} // from before heartbeats
	done := Entry{ID: "done", Cluster: "c", Status: Done, Started: t0.Add(-time.Hour)}
	for _, e := range []Entry{dead, alive, old, done} {
		if err := Save(t.Context(), repo, e); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"backup.xb.zst", ".backup.xb.zst.partial-123"} {
			if err := os.WriteFile(filepath.Join(EntryDir(root, "c", e.ID), name), []byte("x"), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	swept, err := Sweep(t.Context(), repo, "c", t0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range swept {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"dead", "old"}) {
		t.Fatalf("swept %v, want [dead old]", ids)
	}
	entries, _ := List(t.Context(), repo, "c")
	for _, e := range entries {
		left, _ := os.ReadDir(EntryDir(root, "c", e.ID))
		switch e.ID {
		case "dead", "old":
			if e.Status != Failed || !strings.Contains(e.Error, "left running") || len(left) != 1 {
				t.Errorf("%s: %s %q, files %v", e.ID, e.Status, e.Error, left)
			}
		default:
			if len(left) != 3 || e.Status == Failed {
				t.Errorf("%s was touched: %s, files %v", e.ID, e.Status, left)
			}
		}
	}
}

// Retention keeps from the oldest done backup whose window the store still
// reaches; failed backups and backups whose window is gone do not count.
func TestOldestWindow(t *testing.T) {
	p := func(s string) topology.Position { q, _ := topology.ParseMariaDB(s); return q }
	entries := []Entry{
		{ID: "gone", Status: Done, Position: p("0-1-5")},
		{ID: "failed", Status: Failed, Position: p("0-1-8")},
		{ID: "kept", Status: Done, Position: p("0-1-10")},
		{ID: "newer", Status: Done, Position: p("0-1-20")},
	}
	window := func(e Entry) (*Window, error) {
		if e.ID == "gone" {
			return nil, ErrNoWindow
		}
		return &Window{From: e.Position}, nil
	}
	e, w, ok := OldestWindow(entries, window)
	if !ok || e.ID != "kept" || w.From.String() != "0-1-10" {
		t.Fatalf("OldestWindow = %s, %s, %v; want kept from 0-1-10", e.ID, w.From, ok)
	}
	if _, _, ok := OldestWindow(entries[:2], window); ok {
		t.Fatal("a window from no backup that has one")
	}
}

// Reverify takes a never-verified backup first, else the one verified
// longest ago; never a failed or running one.
func TestOldest(t *testing.T) {
	at := func(h int) *Verification { return &Verification{At: t0.Add(time.Duration(h) * time.Hour), OK: true} }
	entries := []Entry{
		{ID: "failed", Status: Failed},
		{ID: "recent", Status: Done, Verification: at(5)},
		{ID: "old", Status: Done, Verification: at(1)},
		{ID: "running", Status: Running},
	}
	if e, ok := Oldest(entries); !ok || e.ID != "old" {
		t.Fatalf("Oldest = %s, %v; want old", e.ID, ok)
	}
	entries = append(entries, Entry{ID: "never", Status: Done})
	if e, ok := Oldest(entries); !ok || e.ID != "never" {
		t.Fatalf("Oldest = %s, %v; want never", e.ID, ok)
	}
	if _, ok := Oldest(entries[:1]); ok {
		t.Fatal("a backup to verify among failed ones")
	}
}

// A verification cut short (the daemon stopping) records nothing: the
// backup's last verification stands.
func TestVerifyCutShortRecordsNothing(t *testing.T) {
	repo := Dir(t.TempDir())
	e := Entry{ID: "a", Cluster: "c", Engine: topology.Postgres, Status: Done, Started: t0,
		Files:        []File{{Name: "data/base.tar.zst", Size: 10, SHA256: "ab"}},
		Verification: &Verification{At: t0, OK: true, Detail: "fine"}}
	if err := Save(t.Context(), repo, e); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("terminated"))
	if _, err := Verify(ctx, repo, e, VerifyOptions{Scratch: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "cut short: terminated") {
		t.Fatalf("Verify on a stopped context: %v", err)
	}
	got, err := Find(t.Context(), repo, "c", "a")
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Verification; v == nil || !v.OK || v.Detail != "fine" {
		t.Errorf("the last verification became %+v", v)
	}
}
