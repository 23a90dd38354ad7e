package checksum

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"
)

// SaveReport keeps r in dir as <started>.json (UTC, sortable), beside the
// keep-1 reports before it; older ones are removed. The summary in Consul
// holds what promotion needs; these hold every run's tables, chunks and
// differences, on the machine that ran them.
func SaveReport(dir string, r Report, keep int) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.Started.UTC().Format("20060102T150405.000000000Z")+".json")
	if err := replaceFile(path, b); err != nil {
		return "", err
	}
	return path, pruneReports(dir, keep)
}

// ReadCheckpoint reads a run's checkpoint; nil when there is none.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w (remove it to start over)", path, err)
	}
	return &cp, nil
}

// WriteCheckpoint replaces the checkpoint at path.
func WriteCheckpoint(path string, cp Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return replaceFile(path, b)
}

// replaceFile writes b to path atomically (renameio: a hidden file beside
// it, synced, renamed over it), so that a reader sees the old content or
// the new, never a part; the directory is created when missing.
func replaceFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o600, renameio.WithTempDir(dir))
}

// pruneReports removes all but the newest keep reports of dir.
func pruneReports(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, n := range names[:max(0, len(names)-keep)] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("remove an old report: %w", err)
		}
	}
	return nil
}
