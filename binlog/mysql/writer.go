package mysql

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// writer appends what a primary sends to a store. One writer lives for one
// replication session: it is opened (repairing the store's tail) when the
// session starts and closed when it ends, so every session resumes from
// what is on disk.
//
// append and startFile are called from the session's event handler only;
// sync may run at the same time from the flusher. syncMu is taken before
// mu by whatever fsyncs or closes a file, so that a file is never closed
// under a running fsync.
type writer struct {
	dir         string
	flavor      string
	maxFileSize int64
	log         *slog.Logger

	syncMu sync.Mutex
	mu     sync.Mutex
	names  []string // data files, oldest first: the index file's content
	next   int      // number of the next data file
	cur    *file    // nil until the session's first Format_description event
	pos    state    // after the last complete transaction written
	last   time.Time
	dirty  bool // written since the last sync
	// durable is what the last successful fsync covered.
	durable     state
	durableTime time.Time
	scratch     []byte
}

// openWriter opens the store in dir for appending, repairing its tail
// first (see repairStore).
func openWriter(dir, flavor string, maxFileSize int64, log *slog.Logger) (*writer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	rep, err := repairStore(dir, flavor, log)
	if err != nil {
		return nil, err
	}
	w := &writer{dir: dir, flavor: flavor, maxFileSize: maxFileSize, log: log, names: rep.names, next: rep.next,
		pos: rep.pos, last: rep.last, durable: rep.pos.clone(), durableTime: rep.last}
	return w, nil
}

// empty reports whether the store holds no file at all: a first start.
func (w *writer) empty() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.names) == 0
}

// position returns the position written so far (not necessarily durable).
func (w *writer) position() state {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pos.clone()
}

// setStart gives an empty store its first position (the primary's, on a
// first start).
func (w *writer) setStart(st state) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pos, w.durable = st.clone(), st.clone()
}

// synced returns the durable position and the commit time of its newest
// transaction.
func (w *writer) synced() (state, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durable.clone(), w.durableTime
}

// fileNames returns the data files, oldest first.
func (w *writer) fileNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.names...)
}

// onFormat handles a Format_description event from the primary: the first
// of a session, or the first of the primary's next binlog after a Rotate.
// A new store file starts then, unless the current one holds no
// transaction yet (the same session sending the format again).
func (w *writer) onFormat(ev []byte, rotated bool) error {
	w.mu.Lock()
	keepCurrent := w.cur != nil && !rotated && w.cur.txns == 0
	w.mu.Unlock()
	if keepCurrent {
		return nil
	}
	return w.startFile(ev)
}

// startFile closes the current file and starts the next one with the given
// Format_description event: magic, the event (in-use flag set), a
// Gtid_list (MySQL: Previous_gtids) event with the position so far, and an
// index with the same start position. A previous file without any
// transaction is removed first: it holds nothing the new one does not
// start from.
func (w *writer) startFile(fde []byte) error {
	f, err := parseFormat(fde)
	if err != nil {
		return err
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != nil {
		if err := w.closeFileLocked(); err != nil {
			return err
		}
	}
	if err := w.dropEmptyNewestLocked(); err != nil {
		return err
	}
	nf, err := createFile(w.dir, fileName(w.next), f, w.pos.clone(), time.Now())
	if err != nil {
		return err
	}
	w.names = append(w.names, nf.name)
	if err := writeIndexFile(w.dir, w.names); err != nil {
		nf.discard()
		w.names = w.names[:len(w.names)-1]
		return err
	}
	w.next++
	w.cur = nf
	return nil
}

// dropEmptyNewestLocked removes the newest file when it holds no
// transaction (a session that received nothing).
func (w *writer) dropEmptyNewestLocked() error {
	if len(w.names) == 0 {
		return nil
	}
	name := w.names[len(w.names)-1]
	_, txns, _, err := readIdx(filepath.Join(w.dir, name+idxSuffix))
	if err != nil || len(txns) > 0 {
		return nil // keep anything not known to be empty
	}
	w.names = w.names[:len(w.names)-1]
	if err := writeIndexFile(w.dir, w.names); err != nil {
		return err
	}
	return removeFiles(w.dir, name)
}

// appended is what one event did to the store.
type appended struct {
	done   bool // the event completed a transaction
	inside bool // a transaction is open after the event
}

// append writes one event, with its log_pos and checksum rewritten for its
// place in the store file, and records the transaction it completes. The
// event's incoming checksum is verified first: nothing corrupt is stored.
func (w *writer) append(ev []byte) (appended, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.cur
	if c == nil {
		return appended{}, errors.New("event before any Format_description event")
	}
	h, err := parseHeader(ev)
	if err != nil || int(h.Size) != len(ev) {
		return appended{}, fmt.Errorf("malformed event (type %d, %d bytes): %v", h.Type, len(ev), err)
	}
	if c.f.checksum {
		if err := checkCRC(ev); err != nil {
			return appended{}, fmt.Errorf("event type %d from the primary: %w", h.Type, err)
		}
	}
	off := c.size
	w.scratch = append(w.scratch[:0], ev...)
	setLogPos(w.scratch, uint32(off+int64(len(ev))), c.f.checksum)
	st, err := c.asm.feed(h, w.scratch, off)
	if err != nil {
		return appended{}, err
	}
	if _, err := c.bw.Write(w.scratch); err != nil {
		return appended{}, fmt.Errorf("write store file %s: %w", c.name, err)
	}
	c.size += int64(len(ev))
	w.dirty = true
	if !st.inside {
		c.safe = c.size
	}
	if !st.done {
		return appended{inside: st.inside}, nil
	}
	c.idxPending = appendRecord(c.idxPending, st.txn)
	c.idxSize += recordSize
	c.txns++
	w.pos.add(st.txn.GTID)
	w.last = st.txn.Time
	return appended{done: true}, nil
}

// full reports whether the current file has reached the size at which the
// next file starts (checked between transactions).
func (w *writer) full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur != nil && w.cur.size >= w.maxFileSize && !w.cur.asm.inside()
}

// rotate starts a new file with the current file's format.
func (w *writer) rotate() error {
	w.mu.Lock()
	raw := w.cur.f.raw
	w.mu.Unlock()
	return w.startFile(raw)
}

// sync makes everything written so far durable: it flushes the buffers,
// fsyncs data then index, and moves the durable position. Only complete
// transactions count; an open one's events are on disk but not in the
// position.
func (w *writer) sync() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	c := w.cur
	if c == nil || !w.dirty {
		w.mu.Unlock()
		return nil
	}
	if err := c.flush(); err != nil {
		w.mu.Unlock()
		return err
	}
	pos, last, size, idxSize := w.pos.clone(), w.last, c.size, c.idxSize
	w.dirty = false
	w.mu.Unlock()

	if err := c.fsync(); err != nil {
		return err
	}
	w.mu.Lock()
	w.durable, w.durableTime = pos, last
	c.syncedSize, c.syncedIdx = size, idxSize
	w.mu.Unlock()
	return nil
}

// closeFileLocked finishes the current file: it cuts a transaction left
// open (the session ended inside it), clears the in-use flag, and fsyncs.
// w.syncMu and w.mu are held.
func (w *writer) closeFileLocked() error {
	c := w.cur
	w.cur = nil
	err := c.finish()
	if cerr := c.closeFiles(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	w.dirty = false
	w.durable, w.durableTime = w.pos.clone(), w.last
	return nil
}

// close ends the session's writing cleanly.
func (w *writer) close() error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil {
		return nil
	}
	return w.closeFileLocked()
}

// abort ends the session after a failed write or fsync: the current file
// is cut back to what the last successful fsync covered, so that nothing
// whose durability is in doubt survives into the next session (which
// fetches it again).
func (w *writer) abort() {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.cur
	if c == nil {
		return
	}
	w.cur = nil
	err := errors.Join(c.data.Truncate(c.syncedSize), c.idx.Truncate(c.syncedIdx), c.data.Sync(), c.idx.Sync())
	if err != nil {
		w.log.Warn("could not cut the store back to its last fsync; the next start repairs it", "file", c.name, "err", err)
	}
	c.closeFiles()
}
