package binlog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DirBytes is the size of the regular files under dir, 0 when dir is
// absent. Files removed during the walk (by retention, or a tool still
// writing) are skipped. What cannot be read is skipped too and the walk goes
// on: the error returned is the first such failure, with the size of all
// that could be read, so a caller that only estimates may ignore it.
func DirBytes(dir string) (int64, error) {
	var (
		total int64
		first error
	)
	note := func(err error) {
		if first == nil && !errors.Is(err, os.ErrNotExist) {
			first = err
		}
	}
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			note(err)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			note(err)
			return nil
		}
		total += info.Size()
		return nil
	})
	if first != nil {
		return total, fmt.Errorf("size of %s: %w", dir, first)
	}
	return total, nil
}
