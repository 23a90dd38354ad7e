package binlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/topology"
)

// Dir is the store directory of a cluster's stream.
func Dir(stateDir, cluster string) string { return filepath.Join(stateDir, "streams", cluster) }

// statusFile is where a running stream publishes its Status.
const statusFile = "status.json"

// Status is what a stream says about itself. A running stream writes it to
// its store directory at least once a second and on every change of state,
// so that `dbha stream status` reads it without talking to the process.
type Status struct {
	Cluster string          `json:"cluster"`
	Engine  topology.Engine `json:"engine"`
	PID     int             `json:"pid"` // the process running the stream
	// Connected: a replication connection to Primary is open. Since is when
	// Connected last changed.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	Primary   string    `json:"primary"` // host:port followed
	// Position is the last position held on disk (fsynced): MariaDB the last
	// complete transaction's GTID per domain, PostgreSQL the flushed LSN.
	Position topology.Position `json:"position"`
	// LastEventTime is the primary's timestamp of the newest event held;
	// LastMessage is when anything (event, heartbeat, keepalive) last
	// arrived from the primary.
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	LastMessage   time.Time `json:"last_message,omitzero"`
	// Events and Bytes count what this process received: transactions
	// (MariaDB) or WAL messages (PostgreSQL), and their bytes.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// DiskBytes is the size of the store.
	DiskBytes int64 `json:"disk_bytes"`
	// Acknowledging: the primary waits for dbha (semi-sync or synchronous
	// standby) and dbha is sending acknowledgements.
	Acknowledging bool `json:"acknowledging"`
	// Broken names a condition the stream will not get past by itself, such
	// as binlogs the primary purged before dbha had them; an operator must
	// act. Nothing is ever skipped silently.
	Broken    string    `json:"broken,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WriteStatus publishes s in dir atomically (temporary file and rename).
func WriteStatus(dir string, s Status) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, statusFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("write stream status: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, statusFile)); err != nil {
		return fmt.Errorf("write stream status: %w", err)
	}
	return nil
}

// ErrNoStatus means no stream has run in the directory.
var ErrNoStatus = errors.New("no stream status")

// ReadStatus reads what a stream last published in dir.
func ReadStatus(dir string) (Status, error) {
	var s Status
	b, err := os.ReadFile(filepath.Join(dir, statusFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, fmt.Errorf("%s: %w (has `dbha stream run` or `dbha run` run for this cluster?)", dir, ErrNoStatus)
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, statusFile), err)
	}
	return s, nil
}

// Stale reports whether a status was last written longer ago than a
// running stream would allow: its process is gone or hung.
func (s Status) Stale(now time.Time) bool { return now.Sub(s.UpdatedAt) > 5*time.Second }

// Transaction is one unit a store holds: a MariaDB/MySQL transaction, or a
// stretch of PostgreSQL WAL (a segment, or the part of one received so far).
type Transaction struct {
	// Position is the GTID, or the LSN range "start-end" with its timeline.
	Position string    `json:"position"`
	Time     time.Time `json:"time"` // the primary's commit time (MariaDB), or when it arrived (WAL)
	Size     int64     `json:"size"` // bytes
	Events   int       `json:"events,omitempty"`
	File     string    `json:"file"`
	Offset   int64     `json:"offset"`
}

// Lag is how far a replica is behind what the store holds.
type Lag struct {
	Transactions int64 `json:"transactions"` // MariaDB/MySQL
	Bytes        int64 `json:"bytes"`        // PostgreSQL
	// Seconds is now minus the time of the oldest thing held that the
	// replica lacks; 0 when it lacks nothing.
	Seconds float64 `json:"seconds"`
}

// Store is a stream's store on disk as commands read it; opening one does
// not disturb a stream writing to it.
type Store interface {
	// Position is the last complete position held.
	Position() topology.Position
	// Transactions lists what is held after since (all when since is zero),
	// oldest first, at most limit (all when limit <= 0).
	Transactions(since topology.Position, limit int) ([]Transaction, error)
	// Lag says how far a replica at pos is behind the store.
	Lag(pos topology.Position, now time.Time) (Lag, error)
	// DiskBytes is the size of the store.
	DiskBytes() (int64, error)
}

// PrimaryFunc tells a stream which instance is the primary now. A stream
// calls it when it starts, after every disconnect, and every few seconds
// while connected (so that it follows a switchover). An error means no
// primary is known now: the stream waits, with a bounded backoff, and asks
// again.
type PrimaryFunc func(ctx context.Context) (addr string, err error)

// KeepFunc returns the positions whose missing events retention must keep:
// the replicas' (ClusterView.ReplicaPositions gives the last known position
// of every replica, so one that stops answering stays protected). An empty
// answer leaves retention to the store's age and size bounds. A zero
// Position in the answer means "unknown", and an error "cannot say now":
// both keep everything this round.
type KeepFunc func(ctx context.Context) ([]topology.Position, error)

// ErrRunning: a stream is writing into the store.
var ErrRunning = errors.New("the stream is running")

// SetAside moves a cluster's store out of the way, so the next stream
// starts afresh; nothing is deleted. It refuses while a stream publishes
// its status into the store (stop it first). It returns where the store
// now is.
func SetAside(dir string, now time.Time) (string, error) {
	if st, err := ReadStatus(dir); err == nil && !st.Stale(now) {
		return "", fmt.Errorf("%w (pid %d): stop it first", ErrRunning, st.PID)
	}
	aside := fmt.Sprintf("%s.reset-%s", dir, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(dir, aside); err != nil {
		return "", fmt.Errorf("set the store aside: %w", err)
	}
	return aside, nil
}
