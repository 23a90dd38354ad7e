package mysql

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// The data file a writer appends to, and its index: creation with the
// header events, flush and fsync, and the clean close.

const writeBuffer = 1 << 20

// file is the data file being written and its index.
type file struct {
	name      string
	start     state
	data, idx *os.File
	bw        *bufio.Writer
	// idxPending holds index records not yet written: they are written
	// only after the data they describe, so that an index never runs ahead
	// of its data file.
	idxPending []byte
	fde        []byte // as written (in-use flag set), for clearing the flag on close
	f          format
	asm        assembler
	size       int64 // data bytes written, buffered included
	idxSize    int64
	txns       int
	// safe is the offset after the last complete transaction (or event
	// outside one): where the file is cut if the session ends mid-way.
	safe int64
	// synced sizes: what the last fsync made durable, for rolling back
	// after a failed write.
	syncedSize, syncedIdx int64
}

// createFile writes a new data file's header events and its index header,
// both fsynced.
func createFile(dir, name string, f format, start state, now time.Time) (*file, error) {
	nf := &file{name: name, start: start, f: f}
	var err error
	if nf.data, err = os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640); err != nil {
		return nil, fmt.Errorf("create store file: %w", err)
	}
	if nf.idx, err = os.OpenFile(filepath.Join(dir, name+idxSuffix), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640); err != nil {
		nf.data.Close()
		os.Remove(filepath.Join(dir, name))
		return nil, fmt.Errorf("create store index: %w", err)
	}
	nf.bw = bufio.NewWriterSize(nf.data, writeBuffer)
	head := fileHeader(f, start, now)
	nf.fde = head[4 : 4+len(f.raw)]
	ih := encodeIdxHeader(start)
	if err := nf.writeSyncedHeader(head, ih); err != nil {
		nf.discard()
		return nil, err
	}
	nf.asm.f = f
	return nf, nil
}

// fileHeader is the start of a store file: magic, the Format_description
// event marked in use, and the event recording the start position.
func fileHeader(f format, start state, now time.Time) []byte {
	head := append([]byte(nil), replication.BinLogFileHeader...)
	fde := append([]byte(nil), f.raw...)
	setInUse(fde, true, false)
	setLogPos(fde, uint32(len(head)+len(fde)), f.checksum)
	head = append(head, fde...)
	list := buildEvent(uint32(now.Unix()), listEventType(f.flavor), f.serverID, 0, 0, start.encodeList(), f.checksum)
	setLogPos(list, uint32(len(head)+len(list)), f.checksum)
	return append(head, list...)
}

func (nf *file) writeSyncedHeader(head, ih []byte) error {
	if _, err := nf.data.Write(head); err != nil {
		return fmt.Errorf("write store file: %w", err)
	}
	if _, err := nf.idx.Write(ih); err != nil {
		return fmt.Errorf("write store index: %w", err)
	}
	if err := nf.data.Sync(); err != nil {
		return fmt.Errorf("fsync store file: %w", err)
	}
	if err := nf.idx.Sync(); err != nil {
		return fmt.Errorf("fsync store index: %w", err)
	}
	nf.size, nf.idxSize = int64(len(head)), int64(len(ih))
	nf.safe, nf.syncedSize, nf.syncedIdx = nf.size, nf.size, nf.idxSize
	return nil
}

// discard closes and removes a file that was never listed.
func (nf *file) discard() {
	dir := filepath.Dir(nf.data.Name())
	nf.data.Close()
	nf.idx.Close()
	removeFiles(dir, nf.name)
}

func removeFiles(dir, name string) error {
	err := os.Remove(filepath.Join(dir, name))
	if ierr := os.Remove(filepath.Join(dir, name+idxSuffix)); !errors.Is(ierr, os.ErrNotExist) {
		err = errors.Join(err, ierr)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

func (c *file) flush() error {
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("write store file %s: %w", c.name, err)
	}
	if len(c.idxPending) == 0 {
		return nil
	}
	if _, err := c.idx.Write(c.idxPending); err != nil {
		return fmt.Errorf("write store index %s: %w", c.name, err)
	}
	c.idxPending = c.idxPending[:0]
	return nil
}

func (c *file) fsync() error {
	if err := c.data.Sync(); err != nil {
		return fmt.Errorf("fsync store file %s: %w", c.name, err)
	}
	if err := c.idx.Sync(); err != nil {
		return fmt.Errorf("fsync store index %s: %w", c.name, err)
	}
	return nil
}

func (c *file) finish() error {
	if err := c.flush(); err != nil {
		return err
	}
	if c.size > c.safe {
		if err := c.data.Truncate(c.safe); err != nil {
			return fmt.Errorf("cut the open transaction off %s: %w", c.name, err)
		}
		c.size = c.safe
	}
	if err := c.fsync(); err != nil {
		return err
	}
	// Only once everything is durable does the file say it was closed
	// cleanly: a file still marked in use is repaired on the next start.
	setInUse(c.fde, false, c.f.checksum)
	if _, err := c.data.WriteAt(c.fde, 4); err != nil {
		return fmt.Errorf("mark %s closed: %w", c.name, err)
	}
	if err := c.data.Sync(); err != nil {
		return fmt.Errorf("fsync store file %s: %w", c.name, err)
	}
	return nil
}

func (c *file) closeFiles() error {
	return errors.Join(c.data.Close(), c.idx.Close())
}
