package mysql

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// repaired is a store as found after repairStore.
type repaired struct {
	names []string // data files, oldest first
	next  int      // number for the next data file
	pos   state    // the position held: start of the newest file plus its transactions
	last  time.Time
}

// repairStore makes a store consistent after whatever ended the last
// writer (a clean stop, a kill -9, a full disk, a power loss):
//   - the file list comes from dbha-bin.index, or from the directory when
//     the index file is lost; files no longer there are dropped from it,
//     and files never listed (created just before a crash) are removed;
//   - the newest file when it is still marked in use (its writer did not
//     close it), and any file whose transaction index is missing or
//     damaged, is scanned from the end of its last good index record: a
//     transaction left incomplete at the end is cut off (see keepRecords
//     and scanner.safe) and missing index records are rebuilt from the
//     data;
//   - the position held is the newest file's start position plus its
//     complete transactions, so a restart resumes with no gap and no
//     duplicate.
func repairStore(dir, flavor string, log *slog.Logger) (repaired, error) {
	names, err := listFiles(dir, log)
	if err != nil {
		return repaired{}, err
	}
	rep := repaired{pos: newState(flavor), next: 1}
	for _, n := range names {
		num, _ := fileNumber(n)
		rep.next = max(rep.next, num+1)
	}
	var kept []string
	for i, name := range names {
		start, _, err := walkIdx(filepath.Join(dir, name+idxSuffix), nil)
		if err != nil || i == len(names)-1 && !closedCleanly(dir, name) {
			fr, ferr := repairFile(dir, name, log)
			if ferr != nil {
				return repaired{}, ferr
			}
			if fr.removed {
				continue
			}
			start = fr.start
		}
		if start.flavor != flavor {
			return repaired{}, fmt.Errorf("store %s holds %s binlogs, not %s", dir, start.flavor, flavor)
		}
		kept = append(kept, name)
	}
	rep.names = kept
	if _, err := os.Stat(filepath.Join(dir, indexName)); err != nil || !slices.Equal(kept, names) {
		if err := writeIndexFile(dir, kept); err != nil {
			return repaired{}, err
		}
	}
	if len(kept) > 0 {
		if rep.pos, err = fileEnd(filepath.Join(dir, kept[len(kept)-1]+idxSuffix)); err != nil {
			return repaired{}, err
		}
		rep.last = lastCommit(dir, kept)
	}
	return rep, nil
}

// fileEnd is the position after a file's last transaction: its start
// position plus every transaction its index lists.
func fileEnd(idxPath string) (state, error) {
	pos, _, err := walkIdx(idxPath, nil)
	if err == nil {
		_, _, err = walkIdx(idxPath, func(t Txn) error { pos.add(t.GTID); return nil })
	}
	if err != nil {
		return state{}, fmt.Errorf("read store index: %w", err)
	}
	return pos, nil
}

// lastCommit is the commit time of the newest transaction the files hold.
func lastCommit(dir string, names []string) time.Time {
	for i := len(names) - 1; i >= 0; i-- {
		if t, ok := lastRecord(filepath.Join(dir, names[i]+idxSuffix)); ok {
			return t.Time
		}
	}
	return time.Time{}
}

// lastRecord reads an index's last record without reading the others.
func lastRecord(idxPath string) (Txn, bool) {
	f, err := os.Open(idxPath)
	if err != nil {
		return Txn{}, false
	}
	defer f.Close()
	_, headerLen, err := readIdxHeader(f)
	fi, serr := f.Stat()
	if err != nil || serr != nil {
		return Txn{}, false
	}
	n := (fi.Size() - headerLen) / recordSize
	for ; n > 0; n-- { // a torn last record: the one before it
		b := make([]byte, recordSize)
		if _, err := f.ReadAt(b, headerLen+(n-1)*recordSize); err != nil {
			return Txn{}, false
		}
		if t, ok := decodeRecord(b); ok {
			return t, true
		}
	}
	return Txn{}, false
}

// closedCleanly reports whether a data file's writer closed it (the in-use
// flag is clear) and its index agrees: whole records, the last of them
// within the data. Otherwise (a crash, a kill -9, a failed write, a damaged
// index) the file is repaired.
func closedCleanly(dir, name string) bool {
	path := filepath.Join(dir, name)
	fi, err := os.Stat(path)
	if err != nil || inUse(path) {
		return false
	}
	f, err := os.Open(path + idxSuffix)
	if err != nil {
		return false
	}
	defer f.Close()
	_, headerLen, err := readIdxHeader(f)
	ii, serr := f.Stat()
	if err != nil || serr != nil || (ii.Size()-headerLen)%recordSize != 0 {
		return false
	}
	last, ok := lastRecord(path + idxSuffix)
	return ii.Size() == headerLen || ok && last.End() <= fi.Size()
}

// inUse reports whether a data file is still marked in use by its writer.
// An unreadable file counts as in use.
func inUse(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	b := make([]byte, 4+headerSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return true
	}
	h, err := parseHeader(b[4:])
	return err != nil || h.Type != typeFormat || h.Flags&replication.LOG_EVENT_BINLOG_IN_USE_F != 0
}

// listFiles returns the data files of a store, oldest first, and removes
// files that were created but never listed.
func listFiles(dir string, log *slog.Logger) ([]string, error) {
	onDisk, err := filepath.Glob(filepath.Join(dir, baseName+".[0-9]*"))
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	var found []string
	for _, p := range onDisk {
		name := filepath.Base(p)
		if _, ok := fileNumber(name); ok {
			present[name] = true
			found = append(found, name)
		}
	}
	slices.Sort(found) // zero-padded numbers sort as text
	names, err := readIndexFile(dir)
	if errors.Is(err, os.ErrNotExist) {
		if len(found) > 0 {
			log.Warn("store index file is missing; rebuilding it from the directory", "dir", dir, "files", len(found))
		}
		return found, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read store index: %w", err)
	}
	listed := map[string]bool{}
	var out []string
	for _, n := range names {
		listed[n] = true
		if present[n] {
			out = append(out, n)
		} else {
			log.Warn("store file listed in the index is gone", "file", n)
		}
	}
	for _, n := range found {
		if !listed[n] {
			log.Warn("removing store file that was created but never listed", "file", n)
			if err := removeFiles(dir, n); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// fileRepair is one file after repairFile.
type fileRepair struct {
	removed bool // the file held nothing usable and is gone
	start   state
}

// repairFile checks a data file against its index, cutting an incomplete
// transaction off its end and rebuilding index records from the data. It
// runs on the newest file (the one a writer may have died in) and on any
// file whose index is unreadable.
func repairFile(dir, name string, log *slog.Logger) (fileRepair, error) {
	path := filepath.Join(dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return fileRepair{}, fmt.Errorf("repair store: %w", err)
	}
	_, recs, _, idxErr := readIdx(path + idxSuffix)
	if idxErr != nil && !errors.Is(idxErr, os.ErrNotExist) {
		log.Warn("store index damaged; rebuilding it from the data file", "file", name, "err", idxErr)
	}
	keep := keepRecords(recs, fi.Size())
	from := int64(0)
	if keep > 0 {
		from = recs[keep-1].End()
	}
	txns := slices.Clone(recs[:keep])
	res, scanErr := scanFile(path, from, func(t Txn) error { txns = append(txns, t); return nil })
	if !res.format.valid() || !res.haveStart {
		log.Warn("removing store file without a readable header (created just before a crash?)", "file", name, "err", scanErr)
		return fileRepair{removed: true}, removeFiles(dir, name)
	}
	if scanErr != nil && !errors.Is(scanErr, errTorn) {
		log.Warn("store file is damaged; cutting it at the last complete transaction", "file", name, "err", scanErr)
	}
	if cut := fi.Size() - res.safe; cut > 0 {
		log.Info("cut an incomplete transaction off the store's last file", "file", name, "bytes", cut, "at", res.safe)
	}
	if err := rewriteFile(path, res, txns); err != nil {
		return fileRepair{}, fmt.Errorf("repair %s: %w", name, err)
	}
	return fileRepair{start: res.start}, nil
}

// keepRecords decides how many of a data file's index records still
// describe data in it: the longest run, in order, of records that lie
// within the file's size and do not overlap. Records past the end (an
// index written ahead of data lost in a power failure) are dropped and the
// data scanned again from the last kept record.
func keepRecords(recs []Txn, dataSize int64) int {
	end := int64(0)
	for i, r := range recs {
		if r.Offset < end || r.Size <= 0 || r.End() > dataSize {
			return i
		}
		end = r.End()
	}
	return len(recs)
}

// rewriteFile cuts the data file at the safe offset, marks it closed, and
// writes its index afresh (temporary file and rename).
func rewriteFile(path string, res scanResult, txns []Txn) error {
	data, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer data.Close()
	if err := data.Truncate(res.safe); err != nil {
		return err
	}
	fde := append([]byte(nil), res.format.raw...)
	setInUse(fde, false, res.format.checksum)
	if _, err := data.WriteAt(fde, 4); err != nil {
		return err
	}
	if err := data.Sync(); err != nil {
		return err
	}
	idx := encodeIdxHeader(res.start)
	for _, t := range txns {
		idx = appendRecord(idx, t)
	}
	tmp := path + idxSuffix + ".tmp"
	if err := writeSynced(tmp, idx); err != nil {
		return err
	}
	if err := os.Rename(tmp, path+idxSuffix); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
