package mysql

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/topology"
)

// Store is a read-only view of a stream's store, for commands (`dbha stream
// status|events`) and for promotion. Opening one does not disturb a stream
// writing to the directory: it reads the index files, which list only
// complete transactions, and tolerates a file that retention removes
// meanwhile. The view is taken when it is opened; open another to see
// more.
type Store struct {
	dir    string
	flavor string
	files  []storeFile
	pos    state
}

type storeFile struct {
	name  string
	start state
}

var _ binlog.Store = (*Store)(nil)

// OpenStore opens the store in dir. A directory without any store file is
// an empty store whose Position is unknown.
func OpenStore(dir string) (*Store, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open stream store: %w", err)
	}
	names, err := readIndexFile(dir)
	if errors.Is(err, os.ErrNotExist) {
		return &Store{dir: dir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open stream store %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	for i, name := range names {
		start, err := fileStart(dir, name)
		if errors.Is(err, os.ErrNotExist) && i < len(names)-1 {
			continue // removed by retention since the index was read
		}
		if err != nil {
			return nil, fmt.Errorf("open stream store %s: %w", dir, err)
		}
		s.files = append(s.files, storeFile{name: name, start: start})
		s.flavor = start.flavor
	}
	if len(s.files) > 0 {
		newest := s.files[len(s.files)-1]
		s.pos = newest.start.clone()
		err := s.eachTxn(newest.name, func(t Txn) error { s.pos.add(t.GTID); return nil })
		if err != nil {
			return nil, fmt.Errorf("open stream store %s: %w", dir, err)
		}
	}
	return s, nil
}

// fileStart reads a file's start position from its index, or from the data
// file's Gtid_list event when the index is missing (a stream rebuilds it
// on its next start).
func fileStart(dir, name string) (state, error) {
	start, _, err := walkIdx(filepath.Join(dir, name+idxSuffix), nil)
	if err == nil {
		return start, nil
	}
	res, serr := scanFile(filepath.Join(dir, name), 0, func(Txn) error { return errStop })
	if res.haveStart {
		return res.start, nil
	}
	return state{}, errors.Join(err, serr)
}

// eachTxn calls fn for each complete transaction of a file, from its index
// or, when the index is missing, from the data file.
func (s *Store) eachTxn(name string, fn func(Txn) error) error {
	_, _, err := walkIdx(filepath.Join(s.dir, name+idxSuffix), fn)
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, err = scanFile(filepath.Join(s.dir, name), 0, fn)
	if errors.Is(err, errTorn) {
		return nil // a stream is still writing the file
	}
	return err
}

// Position is the position after the last complete transaction held; the
// zero Position for an empty store.
func (s *Store) Position() topology.Position {
	if len(s.files) == 0 {
		return topology.Position{}
	}
	return s.pos.position()
}

// Start is the position before the oldest transaction held: what a
// replica (or a restored backup) must have to be brought forward from the
// store alone. The zero Position for an empty store.
func (s *Store) Start() topology.Position {
	if len(s.files) == 0 {
		return topology.Position{}
	}
	return s.files[0].start.position()
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Files lists the store's data files, oldest first.
func (s *Store) Files() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.name
	}
	return out
}

func (s *Store) ends() []state {
	starts := make([]state, len(s.files))
	for i, f := range s.files {
		starts[i] = f.start
	}
	return fileEnds(starts, s.pos)
}

// walkFrom calls fn for every transaction in the files from the first one
// holding something p lacks (all files when p is nil).
func (s *Store) walkFrom(p *state, fn func(storeFile, Txn) error) error {
	first := 0
	if p != nil {
		first = firstLacking(s.ends(), *p)
	}
	for i := first; i < len(s.files); i++ {
		f := s.files[i]
		err := s.eachTxn(f.name, func(t Txn) error { return fn(f, t) })
		switch {
		case errors.Is(err, errStop):
			return nil
		case errors.Is(err, os.ErrNotExist) && i < len(s.files)-1:
			continue // pruned meanwhile
		case err != nil:
			return err
		}
	}
	return nil
}

// All yields every transaction the store holds, oldest first, reading one
// index at a time: a walk over a store of any size holds one transaction in
// memory. A failed read ends the walk with the error as the last pair.
func (s *Store) All() iter.Seq2[binlog.Transaction, error] {
	return func(yield func(binlog.Transaction, error) bool) {
		err := s.walkFrom(nil, func(f storeFile, t Txn) error {
			if !yield(binlog.Transaction{Position: t.GTID.String(), Time: t.Time, Size: t.Size, Events: t.Events, File: f.name, Offset: t.Offset}, nil) {
				return errStop
			}
			return nil
		})
		if err != nil {
			yield(binlog.Transaction{}, fmt.Errorf("walk the stream's transactions: %w", err))
		}
	}
}

// Transactions lists the transactions held after since (all when since is
// zero), oldest first, at most limit (all when limit <= 0).
func (s *Store) Transactions(since topology.Position, limit int) ([]binlog.Transaction, error) {
	var p *state
	if !since.IsZero() {
		st, err := s.stateOf(since)
		if err != nil {
			return nil, err
		}
		p = &st
	}
	var out []binlog.Transaction
	err := s.walkFrom(p, func(f storeFile, t Txn) error {
		if p != nil && p.covers(t.GTID) {
			return nil
		}
		out = append(out, binlog.Transaction{Position: t.GTID.String(), Time: t.Time, Size: t.Size, Events: t.Events, File: f.name, Offset: t.Offset})
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list stream transactions: %w", err)
	}
	return out, nil
}

// Lag says how far a replica at pos is behind the store: the transactions
// held that it lacks (per domain, by seq_no), their bytes, and the age of
// the oldest of them.
func (s *Store) Lag(pos topology.Position, now time.Time) (binlog.Lag, error) {
	if pos.IsZero() {
		return binlog.Lag{}, fmt.Errorf("stream lag: %w", topology.ErrUnknownPosition)
	}
	p, err := s.stateOf(pos)
	if err != nil {
		return binlog.Lag{}, err
	}
	c := lagCounter{p: p}
	err = s.walkFrom(&p, func(_ storeFile, t Txn) error { c.add(t); return nil })
	if err != nil {
		return binlog.Lag{}, fmt.Errorf("stream lag of %s: %w", pos, err)
	}
	return c.result(now), nil
}

func (s *Store) stateOf(p topology.Position) (state, error) {
	st, err := stateOf(p)
	if err != nil {
		return state{}, err
	}
	if s.flavor != "" && st.flavor != s.flavor {
		return state{}, fmt.Errorf("position %q is a %s position; the store holds %s binlogs", p, st.flavor, s.flavor)
	}
	return st, nil
}

// DiskBytes is the size of everything in the store directory: data,
// indexes, the file list and the status.
func (s *Store) DiskBytes() (int64, error) { return binlog.DirBytes(s.dir) }
