package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dbha/dbha/promote"
)

// RecoveryStore keeps recoveries in Consul (lock, anti-flap block, records
// under dbha/<cluster>/, endpoints) and appends every finished or failed
// record to a local JSON-lines audit file. It implements promote.Store.
type RecoveryStore struct {
	c         *Client
	auditFile string
	lockTTL   time.Duration
	mu        sync.Mutex // serialises appends to the audit file
}

// Recoveries returns the store; auditFile may be "" for none.
func (c *Client) Recoveries(auditFile string) *RecoveryStore {
	return &RecoveryStore{c: c, auditFile: auditFile, lockTTL: 10 * time.Second}
}

// inProgress is the shared state that points at a recovery in progress.
type inProgress struct {
	Recovery string `json:"recovery"`
	Done     bool   `json:"done"`
}

type lease struct{ *Lease }

func (l lease) ID() string { return l.Session }

// Acquire takes the cluster's lock.
func (s *RecoveryStore) Acquire(ctx context.Context, cluster, owner string) (promote.Lease, error) {
	l, err := s.c.AcquireLock(ctx, cluster, owner, s.lockTTL)
	if errors.Is(err, ErrLocked) {
		return nil, fmt.Errorf("%w: %w", promote.ErrLocked, err)
	}
	if err != nil {
		return nil, err
	}
	return lease{l}, nil
}

// Blocked reads the anti-flap block.
func (s *RecoveryStore) Blocked(ctx context.Context, cluster string) (promote.Block, bool, error) {
	b, ok, err := s.c.GetBlock(ctx, cluster)
	return b, ok, err
}

// Paused reads the cluster's maintenance mode.
func (s *RecoveryStore) Paused(ctx context.Context, cluster string) (promote.Pause, bool, error) {
	return s.c.GetPause(ctx, cluster)
}

// SetBlocked records the anti-flap block.
func (s *RecoveryStore) SetBlocked(ctx context.Context, cluster string, b promote.Block) error {
	return s.c.SetBlock(ctx, cluster, b)
}

// Save stores the record and the pointer to it; a finished or failed
// record also goes to the audit file.
func (s *RecoveryStore) Save(ctx context.Context, r *promote.Record) error {
	if err := s.c.PutRecovery(ctx, r.Cluster, r.ID, r); err != nil {
		return err
	}
	if err := s.c.PutState(ctx, r.Cluster, inProgress{Recovery: r.ID, Done: r.Done}); err != nil {
		return err
	}
	if r.Done || r.Error != "" {
		return s.audit(r)
	}
	return nil
}

// Unfinished returns the recovery in progress, if any.
func (s *RecoveryStore) Unfinished(ctx context.Context, cluster string) (*promote.Record, error) {
	var st inProgress
	ok, err := s.c.GetState(ctx, cluster, &st)
	if err != nil || !ok || st.Done || st.Recovery == "" {
		return nil, err
	}
	var r promote.Record
	ok, err = s.c.GetRecovery(ctx, cluster, st.Recovery, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("recovery %s is marked in progress but has no record", st.Recovery)
	}
	return &r, nil
}

// Latest returns the cluster's most recent recovery, or nil.
func (s *RecoveryStore) Latest(ctx context.Context, cluster string) (*promote.Record, error) {
	var st inProgress
	ok, err := s.c.GetState(ctx, cluster, &st)
	if err != nil || !ok || st.Recovery == "" {
		return nil, err
	}
	return s.Record(ctx, cluster, st.Recovery)
}

// Record reads one recovery.
func (s *RecoveryStore) Record(ctx context.Context, cluster, id string) (*promote.Record, error) {
	var r promote.Record
	ok, err := s.c.GetRecovery(ctx, cluster, id, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no recovery %s in cluster %s", id, cluster)
	}
	return &r, nil
}

// Writer returns the instances the writer endpoint names.
func (s *RecoveryStore) Writer(ctx context.Context, cluster string) ([]string, error) {
	return s.c.Writer(ctx, cluster)
}

// SetWriter moves the writer endpoint.
func (s *RecoveryStore) SetWriter(ctx context.Context, cluster, addr string) error {
	return s.c.SetWriter(ctx, cluster, addr)
}

// SetReaders sets the reader endpoint.
func (s *RecoveryStore) SetReaders(ctx context.Context, cluster string, addrs []string) error {
	return s.c.SetReaders(ctx, cluster, addrs)
}

func (s *RecoveryStore) audit(r *promote.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return AppendAudit(s.auditFile, r)
}

// AppendAudit appends v as one JSON line to the audit file (none when
// file is ""), synced before it returns.
func AppendAudit(file string, v any) error {
	if file == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit file %s: %w", file, err)
	}
	return nil
}

// Inconsistent are the replicas the cluster's checksum runs found
// different from the primary, with why (promote.Store).
func (s *RecoveryStore) Inconsistent(ctx context.Context, cluster string) (map[string]string, error) {
	return s.c.Inconsistent(ctx, cluster)
}
