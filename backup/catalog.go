package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dbha/dbha/topology"
)

// Status is where a backup stands.
type Status string

const (
	Running Status = "running"
	Done    Status = "done"
	Failed  Status = "failed"
)

// Entry is one backup in the catalog.
type Entry struct {
	ID       string          `json:"id"`
	Cluster  string          `json:"cluster"`
	Engine   topology.Engine `json:"engine"`
	Source   string          `json:"source"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished,omitzero"`
	Status   Status          `json:"status"`
	// Heartbeat is when the run last said it was alive (every
	// HeartbeatEvery while it runs): a running entry whose heartbeat has
	// stopped was left by a run that died (Sweep).
	Heartbeat time.Time `json:"heartbeat,omitzero"`
	Error     string    `json:"error,omitempty"`
	// Bytes before compression, and on disk.
	Bytes           int64 `json:"bytes"`
	CompressedBytes int64 `json:"compressed_bytes"`
	// Position is the backup's consistent point (MariaDB: the GTID position
	// of the source's binlog; PostgreSQL: the start LSN and timeline) and
	// StopPosition, for PostgreSQL, the end of the WAL a restore needs.
	Position     topology.Position `json:"position"`
	StopPosition topology.Position `json:"stop_position"`
	// Tools are the versions of the programs that made the backup.
	Tools map[string]string `json:"tools,omitempty"`
	// Encryption is "age" when the backup's files are encrypted.
	Encryption string `json:"encryption,omitempty"`
	// Files are the backup's files with their SHA-256 and size (before
	// encryption), checked by verify.
	Files        []File        `json:"files"`
	Verification *Verification `json:"verification,omitempty"`
}

// File is one file of a backup.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Verification is the outcome of restoring a backup on a scratch server.
type Verification struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Detail  string    `json:"detail"`
	Seconds float64   `json:"seconds"`
	// PITR is the point-in-time window the backup supported when verified.
	PITR *Window `json:"pitr,omitempty"`
}

// Verified reports whether the last verification succeeded.
func (e Entry) Verified() bool { return e.Verification != nil && e.Verification.OK }

const entryFile = "backup.json"

// EntryDir is where a backup's files and its catalog entry live:
// <repo>/<cluster>/<id>.
func EntryDir(repo, cluster, id string) string { return filepath.Join(repo, cluster, id) }

// NewID names a backup taken at now: the time to the millisecond, so that
// ids sort as the backups were taken, and a random part, so that two runs
// in one millisecond (two managers, a retry) never share one.
func NewID(now time.Time) string {
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return now.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// ErrIDTaken: a backup's id names an entry that exists already. The run
// is refused before it writes anything: the other entry and its files stay
// as they are.
var ErrIDTaken = errors.New("a backup entry of that id exists already")

// claim makes the entry's place this run's, failing with ErrIDTaken when
// it exists: only the run that created it writes there, or removes it.
func claim(ctx context.Context, repo Repository, cluster, id string) error {
	err := repo.objects.Claim(ctx, entryKey(cluster, id))
	if errors.Is(err, ErrIDTaken) {
		return fmt.Errorf("backup %s of %s: %w; nothing of it was touched", id, cluster, ErrIDTaken)
	}
	if err != nil {
		return fmt.Errorf("catalog %s: %w", id, err)
	}
	return nil
}

// Save writes the entry into the repository, whole or not at all.
func Save(ctx context.Context, repo Repository, e Entry) error { return repo.saveEntry(ctx, e) }

// List reads a cluster's catalog, oldest first. A backup's place without
// a readable entry is reported, not skipped silently: its files are no
// backup dbha knows.
func List(ctx context.Context, repo Repository, cluster string) ([]Entry, error) {
	return repo.entries(ctx, cluster)
}

// Find reads one backup's entry.
func Find(ctx context.Context, repo Repository, cluster, id string) (Entry, error) {
	entries, err := List(ctx, repo, cluster)
	for _, e := range entries {
		if e.ID == id {
			return e, nil
		}
	}
	if err != nil {
		return Entry{}, err
	}
	return Entry{}, fmt.Errorf("no backup %s of cluster %s in %s", id, cluster, repo)
}

// Retention bounds the catalog.
type Retention struct {
	// Keep is how many finished backups to keep at least; 0 keeps all.
	Keep int
	// MaxAge drops finished backups older than this beyond Keep; 0: none.
	MaxAge time.Duration
}

// Prune decides which backups to delete, oldest first: failed ones, and
// finished ones beyond the newest Keep that are older than MaxAge (or any
// beyond Keep when MaxAge is 0). It never deletes a running backup, nor the
// newest verified one: a cluster always keeps a backup known to restore.
// It is pure.
func Prune(entries []Entry, r Retention, now time.Time) []string {
	lastVerified := -1
	for i, e := range entries {
		if e.Status == Done && e.Verified() {
			lastVerified = i
		}
	}
	done := 0
	keep := map[int]bool{}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Status != Done {
			continue
		}
		done++
		if r.Keep == 0 || done <= r.Keep {
			keep[i] = true
		}
	}
	var out []string
	for i, e := range entries {
		switch {
		case e.Status == Running, i == lastVerified, keep[i]:
		case e.Status == Failed:
			out = append(out, e.ID)
		case r.MaxAge == 0 || now.Sub(e.Finished) > r.MaxAge:
			out = append(out, e.ID)
		}
	}
	return out
}

// PruneRepository deletes a cluster's backups that Prune picks from the
// repository and returns their ids, those deleted before a failure
// included. It prunes nothing when the catalog cannot be read whole.
func PruneRepository(ctx context.Context, repo Repository, cluster string, r Retention, now time.Time) ([]string, error) {
	entries, err := List(ctx, repo, cluster)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, id := range Prune(entries, r, now) {
		if err := deleteBackup(ctx, repo, Entry{Cluster: cluster, ID: id}); err != nil {
			return deleted, fmt.Errorf("delete backup %s: %w", id, err)
		}
		deleted = append(deleted, id)
	}
	return deleted, nil
}

// deleteBackup removes a backup's files first and its entry last, so
// that a catalog read meanwhile finds the entry, or nothing of the backup,
// never files without their entry.
func deleteBackup(ctx context.Context, repo Repository, e Entry) error {
	if err := removeFiles(ctx, repo, e); err != nil {
		return err
	}
	return repo.objects.Remove(ctx, entryKey(e.Cluster, e.ID))
}

// HeartbeatEvery is how often a running backup refreshes its entry's
// heartbeat; StaleAfter is how long a heartbeat may be silent before the
// run is taken for dead.
const (
	HeartbeatEvery = time.Minute
	StaleAfter     = 5 * time.Minute
)

// lastSign is when a run last showed it was alive: its heartbeat, or,
// for an entry from before heartbeats, its start.
func (e Entry) lastSign() time.Time {
	if e.Heartbeat.IsZero() {
		return e.Started
	}
	return e.Heartbeat
}

// Stale picks the running entries whose run has died: no heartbeat (or,
// from before heartbeats, no start) within StaleAfter of now. It is pure.
func Stale(entries []Entry, now time.Time) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Status == Running && now.Sub(e.lastSign()) > StaleAfter {
			out = append(out, e)
		}
	}
	return out
}

// Sweep marks the entries a dead run left running (Stale) failed, with
// the reason, and removes their partial files. It returns what it marked.
func Sweep(ctx context.Context, repo Repository, cluster string, now time.Time) ([]Entry, error) {
	entries, err := List(ctx, repo, cluster)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var swept []Entry
	for _, e := range Stale(entries, now) {
		last := e.lastSign()
		e.Status, e.Finished = Failed, now
		e.Error = fmt.Sprintf("left running: its run last gave a sign of life at %s and then stopped (its manager crashed or was killed); partial files removed", last.UTC().Format(time.RFC3339))
		if err := removeFiles(ctx, repo, e); err != nil {
			errs = append(errs, fmt.Errorf("backup %s: %w", e.ID, err))
			continue
		}
		if err := Save(ctx, repo, e); err != nil {
			errs = append(errs, err)
			continue
		}
		swept = append(swept, e)
	}
	return swept, errors.Join(errs...)
}

// Oldest picks the done backup to verify again: one never verified, else
// the one whose last verification is the oldest. It is pure.
func Oldest(entries []Entry) (Entry, bool) {
	var best *Entry
	for i, e := range entries {
		if e.Status != Done {
			continue
		}
		switch {
		case best == nil:
			best = &entries[i]
		case e.Verification == nil && best.Verification != nil:
			best = &entries[i]
		case e.Verification != nil && best.Verification != nil && e.Verification.At.Before(best.Verification.At):
			best = &entries[i]
		}
	}
	if best == nil {
		return Entry{}, false
	}
	return *best, true
}
