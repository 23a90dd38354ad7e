package postgres

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// The store's layout under its directory (see doc.go).
const (
	walSubdir      = "wal"
	arrivalsSubdir = "arrivals"
	identityFile   = "wal-store.json"
	lockFile       = "wal.lock"
)

// identity says which cluster a store's WAL came from. A store never mixes
// the WAL of two clusters, nor two segment sizes.
type identity struct {
	SystemID    string    `json:"system_id"`
	SegmentSize int64     `json:"segment_size"`
	Created     time.Time `json:"created"`
}

// ErrNoStore: the directory holds no WAL store (no stream has connected).
var ErrNoStore = errors.New("no WAL store")

func readIdentity(dir string) (identity, error) {
	var id identity
	raw, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, fmt.Errorf("%s: %w (has `dbha stream run` connected to the primary yet?)", dir, ErrNoStore)
	}
	if err != nil {
		return id, fmt.Errorf("read store identity: %w", err)
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return id, fmt.Errorf("read %s: %w", filepath.Join(dir, identityFile), err)
	}
	if _, err := parseSegmentSize(fmt.Sprintf("%dB", id.SegmentSize)); err != nil {
		return id, fmt.Errorf("read %s: %w", filepath.Join(dir, identityFile), err)
	}
	return id, nil
}

// checkIdentity compares what a server says with the store, recording it
// in a new store. A mismatch is a broken stream: the operator pointed dbha
// at another cluster, or the cluster was rebuilt.
func checkIdentity(dir string, info serverInfo, addr string, now time.Time) error {
	id, err := readIdentity(dir)
	if errors.Is(err, ErrNoStore) {
		raw, err := json.MarshalIndent(identity{SystemID: info.SystemID, SegmentSize: int64(info.Seg), Created: now.UTC()}, "", "  ")
		if err != nil {
			return err
		}
		return writeFileSync(filepath.Join(dir, identityFile), append(raw, '\n'))
	}
	if err != nil {
		return err
	}
	if id.SystemID != info.SystemID {
		return &brokenError{reason: fmt.Sprintf("%s is PostgreSQL system %s, but the store %s holds WAL of system %s: "+
			"it is another cluster (or the cluster was re-created). dbha will not mix them: point the stream at the "+
			"right primary, or move the store directory aside to start a new one", addr, info.SystemID, dir, id.SystemID)}
	}
	if id.SegmentSize != int64(info.Seg) {
		return &brokenError{reason: fmt.Sprintf("%s has wal_segment_size %d, the store %s was written with %d: "+
			"move the store directory aside to start a new one", addr, int64(info.Seg), dir, id.SegmentSize)}
	}
	return nil
}

// makeStore creates the store's directories.
func makeStore(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, walSubdir), filepath.Join(dir, arrivalsSubdir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("create WAL store: %w", err)
		}
	}
	return nil
}

// lockStore takes the store's lock, so that two streams never write one
// store. The kernel releases it when the process dies.
func lockStore(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock WAL store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock WAL store %s: another dbha process streams into it: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// listing is what a store's wal directory holds.
type listing struct {
	Segments  []segFile // sorted by segment number, then timeline
	Histories []uint32  // timelines with a history file, ascending
}

// list reads a store's wal directory. Names it does not know (temporary
// files of an interrupted write) are ignored.
func list(walDir string, seg segments) (listing, error) {
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return listing{}, fmt.Errorf("list WAL store: %w", err)
	}
	var l listing
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if f, ok := seg.parse(e.Name()); ok {
			l.Segments = append(l.Segments, f)
		} else if tli, ok := parseHistoryName(e.Name()); ok {
			l.Histories = append(l.Histories, tli)
		}
	}
	slices.SortFunc(l.Segments, func(a, b segFile) int {
		if a.SegNo != b.SegNo {
			return cmp.Compare(a.SegNo, b.SegNo)
		}
		return cmp.Compare(a.TLI, b.TLI)
	})
	slices.Sort(l.Histories)
	return l, nil
}
