package promote

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"

	"github.com/dbha/dbha/topology"
)

// AckMemory keeps the commit settings each instance last answered with
// beyond one process, so that a failover planned by a fresh process
// (`dbha promote` after the primary died) judges its old primary's
// lossless settings as a running `dbha run` saw them. Load returns what
// was kept (empty, no error, when nothing was); Save replaces it. A
// Keeper calls them from one goroutine at a time; an error only costs the
// lossless layer its knowledge, never a recovery.
type AckMemory interface {
	Load() (map[string]topology.Acknowledgement, error)
	Save(acks map[string]topology.Acknowledgement) error
}

// AckFile is an AckMemory in a JSON file (state_dir/acks/<cluster>.json),
// replaced atomically.
type AckFile struct{ Path string }

// Load reads the file; a missing file is an empty memory.
func (f AckFile) Load() (map[string]topology.Acknowledgement, error) {
	raw, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]topology.Acknowledgement{}, nil
	}
	if err != nil {
		return nil, err
	}
	acks := map[string]topology.Acknowledgement{}
	if err := json.Unmarshal(raw, &acks); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Path, err)
	}
	return acks, nil
}

// Save writes the file through a temporary one and a rename.
func (f AckFile) Save(acks map[string]topology.Acknowledgement) error {
	raw, err := json.MarshalIndent(acks, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o700); err != nil {
		return err
	}
	return renameio.WriteFile(f.Path, raw, 0o600, renameio.WithTempDir(filepath.Dir(f.Path)))
}
