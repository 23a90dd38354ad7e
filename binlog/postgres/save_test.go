package postgres

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbha/dbha/topology"
)

// TestRemoveSuperseded: a later save of the same range (a rejoin that
// failed after its save, tried again) replaces the earlier one; saves of
// another range, instance or cluster, and unfinished ones, stay.
func TestRemoveSuperseded(t *testing.T) {
	m := func(instance, system string, fork, end topology.Position) manifest {
		return manifest{Instance: instance, SystemID: system, Fork: fork, End: end}
	}
	fork := topology.PostgresAt(0x3000148, 1)
	latest := m("127.0.0.1:5433", "7300", fork, topology.PostgresAt(0x3002000, 1))
	cases := []struct {
		name    string
		dir     string
		old     manifest
		removed bool
	}{
		{"the same range, ending earlier", "rewind-127.0.0.1_5433-20260101T000000Z",
			m("127.0.0.1:5433", "7300", fork, topology.PostgresAt(0x3001000, 1)), true},
		{"the same range, ending at the same point", "rewind-127.0.0.1_5433-20260101T000001Z",
			m("127.0.0.1:5433", "7300", fork, topology.PostgresAt(0x3002000, 1)), true},
		{"ending later than the new save", "rewind-127.0.0.1_5433-20260101T000002Z",
			m("127.0.0.1:5433", "7300", fork, topology.PostgresAt(0x3003000, 1)), false},
		{"another fork", "rewind-127.0.0.1_5433-20260101T000003Z",
			m("127.0.0.1:5433", "7300", topology.PostgresAt(0x2000000, 1), topology.PostgresAt(0x3001000, 1)), false},
		{"another cluster", "rewind-127.0.0.1_5433-20260101T000004Z",
			m("127.0.0.1:5433", "9999", fork, topology.PostgresAt(0x3001000, 1)), false},
		{"another instance", "rewind-127.0.0.1_5434-20260101T000005Z",
			m("127.0.0.1:5434", "7300", fork, topology.PostgresAt(0x3001000, 1)), false},
		{"an unfinished save", "rewind-127.0.0.1_5433-20260101T000006Z.partial",
			m("127.0.0.1:5433", "7300", fork, topology.PostgresAt(0x3001000, 1)), false},
	}
	saveDir := t.TempDir()
	keep := filepath.Join(saveDir, "rewind-127.0.0.1_5433-20260101T000009Z")
	for _, tc := range append(cases, struct {
		name    string
		dir     string
		old     manifest
		removed bool
	}{"the new save itself", filepath.Base(keep), latest, false}) {
		raw, err := json.Marshal(tc.old)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(saveDir, tc.dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(saveDir, tc.dir, manifestFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removeSuperseded(saveDir, keep, latest)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := os.Stat(filepath.Join(saveDir, tc.dir))
			if gone := os.IsNotExist(err); gone != tc.removed {
				t.Fatalf("%s removed = %v, want %v (stat: %v)", tc.dir, gone, tc.removed, err)
			}
		})
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the new save: %v", err)
	}
}

// TestCompleteSegments: a save's .partial segments get their plain names,
// which pg_waldump looks for; other files keep theirs.
func TestCompleteSegments(t *testing.T) {
	dir := t.TempDir()
	seg := segments(mib)
	for _, name := range []string{"000000010000000000000003", "000000010000000000000004.partial", manifestFile} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := completeSegments(dir, seg); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"000000010000000000000003", "000000010000000000000004", manifestFile}
	if !slices.Equal(names, want) {
		t.Fatalf("files = %v, want %v", names, want)
	}
}

func TestFileSafe(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"IPv4 and port", "127.0.0.1:5433", "127.0.0.1_5433"},
		{"IPv6 and port", "[::1]:5433", "___1__5433"},
		{"host name", "db-1.example:5432", "db-1.example_5432"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fileSafe(tc.in); got != tc.want {
				t.Fatalf("fileSafe(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSaverExplain(t *testing.T) {
	s := &saver{addr: "db1:5432"}
	removed := &pgconn.PgError{Code: sqlUndefinedFile, Message: "requested WAL segment 000000010000000000000004 has already been removed"}
	cases := []struct {
		name string
		err  error
		want string // in the message; "" for no error
	}{
		{"no error", nil, ""},
		{"WAL removed: says neither save nor pg_rewind can work, and what to do", removed, "pg_rewind cannot rewind it"},
		{"another server error", &pgconn.PgError{Code: "42501", Message: "permission denied"}, "stream from db1:5432"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.explain(tc.err, 0x4000000, 1)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("explain(nil) = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.err) {
				t.Fatalf("explain = %v; want it to say %q and wrap %v", err, tc.want, tc.err)
			}
		})
	}
}
