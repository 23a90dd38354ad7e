package mysql

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// prune removes the oldest files that retention allows and no kept position
// still needs, and never the newest.
func TestWriterPrune(t *testing.T) {
	old := binlog.Retention{MaxAge: time.Hour}
	now := t0.Add(10 * 24 * time.Hour) // every transaction is days old
	cases := []struct {
		name string
		keep []string
		r    binlog.Retention
		want []string // files left
	}{
		{"no replica known: age alone decides", nil, old, []string{fileName(3)}},
		{"a replica at the end of file 1 keeps files 2 and 3", []string{"0-1-12,1-2-4"}, old, []string{fileName(2), fileName(3)}},
		{"a replica lacking one transaction of file 1 keeps everything", []string{"0-1-11,1-2-4"}, old, []string{fileName(1), fileName(2), fileName(3)}},
		{"the slowest of several replicas counts", []string{"0-3-15,1-2-6", "0-1-13,1-2-5"}, old, []string{fileName(2), fileName(3)}},
		{"a caught-up replica keeps only the newest", []string{"0-3-15,1-2-6"}, old, []string{fileName(3)}},
		{"within the bounds nothing goes", nil, binlog.Retention{MaxAge: 30 * 24 * time.Hour, MaxSize: 1 << 30}, []string{fileName(1), fileName(2), fileName(3)}},
		{"no bounds: nothing goes", nil, binlog.Retention{}, []string{fileName(1), fileName(2), fileName(3)}},
		{"the size bound", nil, binlog.Retention{MaxSize: 1500}, []string{fileName(2), fileName(3)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := twoDomainStore(t)
			w := &writer{dir: s.dir, flavor: "mariadb", names: s.Files(), pos: s.pos, log: discard}
			if _, err := w.prune(states(t, tc.keep...), tc.r, now); err != nil {
				t.Fatal(err)
			}
			listed, _ := readIndexFile(s.dir)
			if !slices.Equal(w.names, tc.want) || !slices.Equal(listed, tc.want) {
				t.Errorf("files left %v (index file %v), want %v", w.names, listed, tc.want)
			}
			for _, name := range []string{fileName(1), fileName(2), fileName(3)} {
				_, err := os.Stat(filepath.Join(s.dir, name+idxSuffix))
				if exists := err == nil; exists != slices.Contains(tc.want, name) {
					t.Errorf("%s exists: %v", name, exists)
				}
			}
		})
	}
}

// keepPositions turns KeepFor's answer into what prune keeps for; anything
// it cannot trust skips retention this round (an error).
func TestKeepPositions(t *testing.T) {
	pos := func(s string) topology.Position {
		p, err := topology.ParseMariaDB(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	answer := func(ps []topology.Position, err error) binlog.KeepFunc {
		return func(context.Context) ([]topology.Position, error) { return ps, err }
	}
	cases := []struct {
		name    string
		keepFor binlog.KeepFunc
		want    []string
		wantErr bool
	}{
		{"no KeepFor: age and size alone", nil, nil, false},
		{"no replicas: age and size alone", answer(nil, nil), nil, false},
		{"the replicas' positions", answer([]topology.Position{pos("0-1-5"), pos("0-1-7,1-2-3")}, nil), []string{"0-1-5", "0-1-7,1-2-3"}, false},
		{"KeepFor cannot say now", answer(nil, errors.New("no discovery yet")), nil, true},
		{"an unknown position", answer([]topology.Position{pos("0-1-5"), {}}, nil), nil, true},
		{"a position of another engine", answer([]topology.Position{topology.PostgresAt(0x3000, 1)}, nil), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &Stream{cfg: Config{Flavor: "mariadb", KeepFor: tc.keepFor}}
			keep, err := s.keepPositions(t.Context())
			if (err != nil) != tc.wantErr {
				t.Fatalf("keepPositions: %v, want error %v", err, tc.wantErr)
			}
			var got []string
			for _, st := range keep {
				got = append(got, st.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("kept for %q, want %q", got, tc.want)
			}
		})
	}
}
