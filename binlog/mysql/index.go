package mysql

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/google/uuid"
)

// Names in a store directory, as a server names its binlogs.
const (
	baseName  = "dbha-bin"
	indexName = baseName + ".index" // the list of data files, oldest first
	idxSuffix = ".idx"              // a data file's transaction index
	lockName  = "stream.lock"
)

// fileName is the data file with sequence number n.
func fileName(n int) string { return fmt.Sprintf("%s.%06d", baseName, n) }

// fileNumber parses a data file's sequence number.
func fileNumber(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, baseName+".")
	if !ok || len(rest) < 6 {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0
}

// The transaction index of a data file (dbha-bin.NNNNNN.idx) is binary:
//
//	header:  "DBHAIDX\x01", flavor (1 MariaDB, 2 MySQL), 3 zero bytes,
//	         u32 length, the file's start position in text form, u32 CRC32
//	records: 56 bytes each, one per complete transaction, in file order:
//	         u64 seq, u32 domain, u32 server, [16] MySQL source UUID,
//	         u32 commit time (unix seconds), u32 events, u64 offset,
//	         u32 size, u32 CRC32 of the preceding 52 bytes
//
// Fixed-size records with their own checksum make a torn tail after a crash
// obvious (short or failing record: cut there), make the last record one
// read away, and cost a tenth of what JSON lines would for the status and
// lag reads that scan them every second. The start position (what the
// store held before the file's first transaction) is the same state the
// data file's Gtid_list event records, so a lost index is rebuilt from its
// data file alone.
var idxMagic = []byte("DBHAIDX\x01")

const recordSize = 56

func flavorCode(flavor string) byte {
	if flavor == mysql.MySQLFlavor {
		return 2
	}
	return 1
}

func flavorOf(code byte) (string, error) {
	switch code {
	case 1:
		return mysql.MariaDBFlavor, nil
	case 2:
		return mysql.MySQLFlavor, nil
	}
	return "", fmt.Errorf("unknown flavor code %d", code)
}

func encodeIdxHeader(start state) []byte {
	text := start.String()
	b := make([]byte, 0, 20+len(text))
	b = append(b, idxMagic...)
	b = append(b, flavorCode(start.flavor), 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(text)))
	b = append(b, text...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// readIdxHeader reads an index header and returns the start state and the
// header's length.
func readIdxHeader(r io.Reader) (state, int64, error) {
	fixed := make([]byte, 16)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return state{}, 0, fmt.Errorf("read index header: %w", err)
	}
	if !bytes.Equal(fixed[:8], idxMagic) {
		return state{}, 0, errors.New("not a dbha transaction index (bad magic)")
	}
	flavor, err := flavorOf(fixed[8])
	if err != nil {
		return state{}, 0, err
	}
	n := binary.LittleEndian.Uint32(fixed[12:])
	if n > 1<<20 {
		return state{}, 0, fmt.Errorf("index header: start position of %d bytes", n)
	}
	rest := make([]byte, n+4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return state{}, 0, fmt.Errorf("read index header: %w", err)
	}
	all := append(fixed, rest[:n]...)
	if crc32.ChecksumIEEE(all) != binary.LittleEndian.Uint32(rest[n:]) {
		return state{}, 0, errors.New("index header checksum mismatch")
	}
	st, err := parseState(flavor, string(rest[:n]))
	if err != nil {
		return state{}, 0, fmt.Errorf("index header: %w", err)
	}
	return st, int64(len(all) + 4), nil
}

func appendRecord(b []byte, t Txn) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint64(b, t.GTID.Seq)
	b = binary.LittleEndian.AppendUint32(b, t.GTID.Domain)
	b = binary.LittleEndian.AppendUint32(b, t.GTID.Server)
	b = append(b, t.GTID.SID[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(t.Time.Unix()))
	b = binary.LittleEndian.AppendUint32(b, uint32(t.Events))
	b = binary.LittleEndian.AppendUint64(b, uint64(t.Offset))
	b = binary.LittleEndian.AppendUint32(b, uint32(t.Size))
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

// decodeRecord reads one record; false when it is torn or corrupt.
func decodeRecord(b []byte) (Txn, bool) {
	if len(b) < recordSize || crc32.ChecksumIEEE(b[:52]) != binary.LittleEndian.Uint32(b[52:]) {
		return Txn{}, false
	}
	var sid uuid.UUID
	copy(sid[:], b[16:32])
	return Txn{
		GTID: GTID{
			Seq:    binary.LittleEndian.Uint64(b),
			Domain: binary.LittleEndian.Uint32(b[8:]),
			Server: binary.LittleEndian.Uint32(b[12:]),
			SID:    sid,
		},
		Time:   time.Unix(int64(binary.LittleEndian.Uint32(b[32:])), 0).UTC(),
		Events: int(binary.LittleEndian.Uint32(b[36:])),
		Offset: int64(binary.LittleEndian.Uint64(b[40:])),
		Size:   int64(binary.LittleEndian.Uint32(b[48:])),
	}, true
}

// errStop ends a record walk early without an error.
var errStop = errors.New("stop")

// walkIdx reads an index: its start state and header length, then each
// valid record in order until fn returns an error (errStop to end early),
// which walkIdx returns. A torn or corrupt tail ends the walk: a stream may be
// appending. fn may be nil to read the header only.
func walkIdx(path string, fn func(Txn) error) (start state, headerLen int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return state{}, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	start, headerLen, err = readIdxHeader(r)
	if err != nil || fn == nil {
		return start, headerLen, err
	}
	buf := make([]byte, recordSize)
	for {
		if _, err := io.ReadFull(r, buf); err != nil {
			return start, headerLen, nil // the end, or a torn last record
		}
		t, ok := decodeRecord(buf)
		if !ok {
			return start, headerLen, nil
		}
		if err := fn(t); err != nil {
			return start, headerLen, err
		}
	}
}

// readIdx reads an index whole.
func readIdx(path string) (start state, txns []Txn, headerLen int64, err error) {
	start, headerLen, err = walkIdx(path, func(t Txn) error { txns = append(txns, t); return nil })
	return start, txns, headerLen, err
}

// readIndexFile reads dbha-bin.index: data file names, oldest first.
func readIndexFile(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, indexName))
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		name := filepath.Base(strings.TrimSpace(line))
		if _, ok := fileNumber(name); ok {
			names = append(names, name)
		}
	}
	return names, nil
}

// writeIndexFile replaces dbha-bin.index atomically, listing names the way
// a server lists its binlogs ("./dbha-bin.000001").
func writeIndexFile(dir string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("./" + n + "\n")
	}
	tmp := filepath.Join(dir, indexName+".tmp")
	if err := writeSynced(tmp, []byte(b.String())); err != nil {
		return fmt.Errorf("write %s: %w", indexName, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, indexName)); err != nil {
		return fmt.Errorf("replace %s: %w", indexName, err)
	}
	return syncDir(dir)
}

// writeSynced writes a whole file and fsyncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
