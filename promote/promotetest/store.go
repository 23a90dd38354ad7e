package promotetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dbha/dbha/promote"
)

// Store is an in-memory promote.Store shared by every manager of a test:
// one lock per cluster, the anti-flap block, records (copied in and out,
// as a real store serialises them) and the endpoints. It is safe for
// concurrent use.
type Store struct {
	mu           sync.Mutex
	holder       map[string]string // cluster → lock owner
	blocks       map[string]promote.Block
	pauses       map[string]promote.Pause
	inconsistent map[string]map[string]string
	records      map[string]map[string]*promote.Record // cluster → id → record
	latest       map[string]string                     // cluster → id of the latest record
	writer       map[string]string
	readers      map[string][]string
	// Moves lists every writer move, in order, as "cluster=addr".
	Moves []string
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{holder: map[string]string{}, blocks: map[string]promote.Block{}, pauses: map[string]promote.Pause{},
		records: map[string]map[string]*promote.Record{}, latest: map[string]string{},
		writer: map[string]string{}, readers: map[string][]string{}}
}

type lease struct {
	s       *Store
	cluster string
	owner   string
}

func (l lease) ID() string { return l.owner }

func (l lease) Check() error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.holder[l.cluster] != l.owner {
		return errors.New("lock lost")
	}
	return nil
}

func (l lease) Release() error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.holder[l.cluster] == l.owner {
		delete(l.s.holder, l.cluster)
	}
	return nil
}

// Acquire takes the cluster's lock, or fails wrapping promote.ErrLocked.
func (s *Store) Acquire(_ context.Context, cluster, owner string) (promote.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.holder[cluster]; ok {
		return nil, fmt.Errorf("%w: held by %s", promote.ErrLocked, h)
	}
	s.holder[cluster] = owner
	return lease{s: s, cluster: cluster, owner: owner}, nil
}

// Hold takes the cluster's lock for owner, as another manager would; the
// returned function releases it.
func (s *Store) Hold(cluster, owner string) func() {
	l, err := s.Acquire(context.Background(), cluster, owner)
	if err != nil {
		panic(err) // a test's own mistake
	}
	return func() { l.Release() }
}

func (s *Store) Blocked(_ context.Context, cluster string) (promote.Block, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blocks[cluster]
	return b, ok, nil
}

func (s *Store) Paused(_ context.Context, cluster string) (promote.Pause, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pauses[cluster]
	return p, ok, nil
}

// Inconsistent returns what SetInconsistent set.
func (s *Store) Inconsistent(_ context.Context, cluster string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inconsistent[cluster], nil
}

// SetInconsistent sets the replicas consistency checks found different.
func (s *Store) SetInconsistent(cluster string, m map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inconsistent == nil {
		s.inconsistent = map[string]map[string]string{}
	}
	s.inconsistent[cluster] = m
}

// SetPaused puts the cluster in maintenance mode; a zero Pause lifts it.
func (s *Store) SetPaused(cluster string, p promote.Pause) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == (promote.Pause{}) {
		delete(s.pauses, cluster)
		return
	}
	s.pauses[cluster] = p
}

func (s *Store) SetBlocked(_ context.Context, cluster string, b promote.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocks[cluster] = b
	return nil
}

// ClearBlocked lifts the cluster's anti-flap block, as `dbha recover ack`
// does.
func (s *Store) ClearBlocked(cluster string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blocks, cluster)
}

// Save stores a copy of r and makes it the cluster's latest.
func (s *Store) Save(_ context.Context, r *promote.Record) error {
	c, err := clone(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.records[r.Cluster] == nil {
		s.records[r.Cluster] = map[string]*promote.Record{}
	}
	s.records[r.Cluster][r.ID] = c
	s.latest[r.Cluster] = r.ID
	return nil
}

// Unfinished returns the latest record when it is not done.
func (s *Store) Unfinished(ctx context.Context, cluster string) (*promote.Record, error) {
	r, err := s.Latest(ctx, cluster)
	if err != nil || r == nil || r.Done {
		return nil, err
	}
	return r, nil
}

// Latest returns a copy of the cluster's latest record, or nil.
func (s *Store) Latest(_ context.Context, cluster string) (*promote.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.latest[cluster]
	if !ok {
		return nil, nil
	}
	return clone(s.records[cluster][id])
}

// Records returns copies of the cluster's records, in id (time) order.
func (s *Store) Records(cluster string) []*promote.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.records[cluster]))
	for id := range s.records[cluster] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*promote.Record
	for _, id := range ids {
		c, _ := clone(s.records[cluster][id])
		out = append(out, c)
	}
	return out
}

func (s *Store) Writer(_ context.Context, cluster string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.writer[cluster]; ok {
		return []string{w}, nil
	}
	return nil, nil
}

func (s *Store) SetWriter(_ context.Context, cluster, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writer[cluster] != addr {
		s.Moves = append(s.Moves, cluster+"="+addr)
	}
	s.writer[cluster] = addr
	return nil
}

func (s *Store) SetReaders(_ context.Context, cluster string, addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readers[cluster] = slices.Clone(addrs)
	return nil
}

// Readers returns the reader endpoint's instances.
func (s *Store) Readers(cluster string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.readers[cluster])
}

func clone(r *promote.Record) (*promote.Record, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var c promote.Record
	return &c, json.Unmarshal(b, &c)
}
