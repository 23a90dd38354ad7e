package mysql

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// syntheticStore writes a store of index files only (no data: the Store
// reads indexes): files[i] lists the GTIDs of file i; transaction n of
// the store committed at t0 + n seconds and is 100 bytes.
func syntheticStore(t *testing.T, start string, files [][]string) string {
	t.Helper()
	dir := t.TempDir()
	pos, err := parseState("mariadb", start)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	n := 0
	for i, gs := range files {
		name := fileName(i + 1)
		b := encodeIdxHeader(pos)
		for j, g := range gs {
			st, err := parseState("mariadb", g)
			if err != nil {
				t.Fatal(err)
			}
			gtid := st.list()[0]
			b = appendRecord(b, Txn{GTID: gtid, Time: t0.Add(time.Duration(n) * time.Second), Offset: int64(300 + 100*j), Size: 100, Events: 4})
			pos.add(gtid)
			n++
		}
		os.WriteFile(filepath.Join(dir, name+idxSuffix), b, 0o644)
		os.WriteFile(filepath.Join(dir, name), make([]byte, 300+100*len(gs)), 0o644)
		names = append(names, name)
	}
	if err := writeIndexFile(dir, names); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustPos(t *testing.T, s string) topology.Position {
	t.Helper()
	p, err := topology.ParseMariaDB(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Two domains interleaved over three files; the store started at
// 0-1-10,1-2-3.
func twoDomainStore(t *testing.T) *Store {
	dir := syntheticStore(t, "0-1-10,1-2-3", [][]string{
		{"0-1-11", "0-1-12", "1-2-4"}, // t0, t0+1s, t0+2s
		{"0-1-13", "1-2-5", "1-2-6"},  // t0+3s ...
		{"0-3-14", "0-3-15"},          // a switchover: server 3 writes domain 0 now
	})
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreLag(t *testing.T) {
	s := twoDomainStore(t)
	if got := s.Position().String(); got != "0-3-15,1-2-6" {
		t.Fatalf("Position = %q", got)
	}
	now := t0.Add(time.Minute)
	cases := []struct {
		name string
		pos  string
		want binlog.Lag
	}{
		{"caught up", "0-3-15,1-2-6", binlog.Lag{}},
		{"ahead of the store", "0-3-20,1-2-9", binlog.Lag{}},
		{"at the store's start", "0-1-10,1-2-3", binlog.Lag{Transactions: 8, Bytes: 800, Seconds: 60}},
		{"behind in one domain", "0-3-15,1-2-4", binlog.Lag{Transactions: 2, Bytes: 200, Seconds: 56}},
		{"behind in both", "0-1-12,1-2-5", binlog.Lag{Transactions: 4, Bytes: 400, Seconds: 57}},
		{"lacks a domain entirely", "0-3-15", binlog.Lag{Transactions: 3, Bytes: 300, Seconds: 58}},
		{"gtid_binlog_state form (several servers in a domain)", "0-1-13,0-3-14,1-2-6", binlog.Lag{Transactions: 1, Bytes: 100, Seconds: 53}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Lag(mustPos(t, tc.pos), now)
			if err != nil || got != tc.want {
				t.Errorf("Lag(%s) = %+v, %v; want %+v", tc.pos, got, err, tc.want)
			}
		})
	}
	if _, err := s.Lag(topology.Position{}, now); err == nil {
		t.Errorf("Lag of an unknown position did not fail")
	}
	if got, _ := s.Lag(mustPos(t, "0-1-10,1-2-3"), t0.Add(-time.Hour)); got.Seconds != 0 {
		t.Errorf("with a clock behind the primary's, Seconds = %v; want 0", got.Seconds)
	}
}

func TestStoreTransactions(t *testing.T) {
	s := twoDomainStore(t)
	cases := []struct {
		name  string
		since string
		limit int
		want  []string
	}{
		{"everything", "", 0, []string{"0-1-11", "0-1-12", "1-2-4", "0-1-13", "1-2-5", "1-2-6", "0-3-14", "0-3-15"}},
		{"a limit", "", 2, []string{"0-1-11", "0-1-12"}},
		{"since a position", "0-1-12,1-2-5", 0, []string{"0-1-13", "1-2-6", "0-3-14", "0-3-15"}},
		{"since, with a limit across files", "0-1-12,1-2-4", 3, []string{"0-1-13", "1-2-5", "1-2-6"}},
		{"since the end", "0-3-15,1-2-6", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var since topology.Position
			if tc.since != "" {
				since = mustPos(t, tc.since)
			}
			txs, err := s.Transactions(since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tx := range txs {
				got = append(got, tx.Position)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Transactions = %v, want %v", got, tc.want)
			}
		})
	}
	txs, _ := s.Transactions(mustPos(t, "0-3-14,1-2-6"), 0)
	if len(txs) != 1 || txs[0] != (binlog.Transaction{Position: "0-3-15", Time: t0.Add(7 * time.Second), Size: 100, Events: 4, File: fileName(3), Offset: 400}) {
		t.Errorf("transaction fields: %+v", txs)
	}
	if _, err := s.Transactions(mustMySQL(t), 0); err == nil {
		t.Errorf("a MySQL position was accepted by a MariaDB store")
	}
}

func mustMySQL(t *testing.T) topology.Position {
	p, err := topology.ParseMySQL("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenStore(t *testing.T) {
	t.Run("empty directory", func(t *testing.T) {
		s, err := OpenStore(t.TempDir())
		if err != nil || !s.Position().IsZero() {
			t.Fatalf("OpenStore: %v, position %q", err, s.Position())
		}
		if txs, err := s.Transactions(topology.Position{}, 0); err != nil || len(txs) != 0 {
			t.Errorf("Transactions: %v, %v", txs, err)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		if _, err := OpenStore(filepath.Join(t.TempDir(), "nothing")); !os.IsNotExist(unwrapAll(err)) {
			t.Errorf("OpenStore of a missing directory: %v", err)
		}
	})
	t.Run("a file removed by retention after the index was read", func(t *testing.T) {
		s := twoDomainStore(t)
		os.Remove(filepath.Join(s.dir, fileName(1)+idxSuffix))
		os.Remove(filepath.Join(s.dir, fileName(1)))
		txs, err := s.Transactions(topology.Position{}, 0)
		if err != nil || len(txs) != 5 {
			t.Errorf("Transactions: %d, %v; want the 5 of the remaining files", len(txs), err)
		}
	})
	t.Run("a walk of every transaction", func(t *testing.T) {
		s := twoDomainStore(t)
		want, err := s.Transactions(topology.Position{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []binlog.Transaction
		for tx, err := range s.All() {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, tx)
		}
		if !slices.Equal(got, want) || len(got) == 0 {
			t.Errorf("All yields %d transactions, Transactions lists %d", len(got), len(want))
		}
		for range s.All() {
			break // a walk ended early stops reading
		}
	})
	t.Run("disk bytes", func(t *testing.T) {
		s := twoDomainStore(t)
		n, err := s.DiskBytes()
		if err != nil || n < 3*300+8*100 {
			t.Errorf("DiskBytes = %d, %v", n, err)
		}
	})
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
