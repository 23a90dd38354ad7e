package postgres

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/dbha/dbha/topology"
)

// LSN is a WAL location; the package uses topology's type throughout.
type LSN = topology.LSN

// partialSuffix marks a segment that is not complete, as pg_receivewal does.
const partialSuffix = ".partial"

// segments is the WAL segment arithmetic for one segment size, which is a
// power of two between 1 MiB and 1 GiB (the server's wal_segment_size).
type segments uint64

// no is the number of the segment holding lsn.
func (s segments) no(lsn LSN) uint64 { return uint64(lsn) / uint64(s) }

// start is the first LSN of segment segno.
func (s segments) start(segno uint64) LSN { return LSN(segno * uint64(s)) }

// floor is the start of the segment holding lsn.
func (s segments) floor(lsn LSN) LSN { return s.start(s.no(lsn)) }

// offset is where lsn lies inside its segment.
func (s segments) offset(lsn LSN) int64 { return int64(uint64(lsn) % uint64(s)) }

// perXLogID is how many segments one "xlogid" (4 GiB of WAL) holds: the
// middle and last 8 hex digits of a segment name split the segment number
// at that boundary (XLogFileName in PostgreSQL).
func (s segments) perXLogID() uint64 { return 0x100000000 / uint64(s) }

// name is the file name of segment segno on timeline tli.
func (s segments) name(tli uint32, segno uint64) string {
	return fmt.Sprintf("%08X%08X%08X", tli, segno/s.perXLogID(), segno%s.perXLogID())
}

// segFile is one segment file in a store directory.
type segFile struct {
	TLI     uint32
	SegNo   uint64
	Partial bool
}

// parse reads a segment file name ("000000010000000000000003" or the same
// with ".partial"). ok is false for anything else, including names whose
// low part does not fit the segment size.
func (s segments) parse(file string) (f segFile, ok bool) {
	base, partial := strings.CutSuffix(file, partialSuffix)
	if len(base) != 24 || strings.ToUpper(base) != base {
		return segFile{}, false
	}
	var v [3]uint64
	for i := range v {
		n, err := strconv.ParseUint(base[8*i:8*i+8], 16, 32)
		if err != nil {
			return segFile{}, false
		}
		v[i] = n
	}
	if v[0] == 0 || v[2] >= s.perXLogID() {
		return segFile{}, false
	}
	return segFile{TLI: uint32(v[0]), SegNo: v[1]*s.perXLogID() + v[2], Partial: partial}, true
}

// fileName is f's name in the store.
func (s segments) fileName(f segFile) string {
	n := s.name(f.TLI, f.SegNo)
	if f.Partial {
		n += partialSuffix
	}
	return n
}

// historyName is the name of timeline tli's history file.
func historyName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// parseHistoryName reads "00000002.history".
func parseHistoryName(file string) (uint32, bool) {
	base, ok := strings.CutSuffix(file, ".history")
	if !ok || len(base) != 8 || strings.ToUpper(base) != base {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 16, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// parseSegmentSize reads the server's wal_segment_size as SHOW prints it
// ("16MB", "1GB"), and checks it is a power of two from 1 MiB to 1 GiB.
func parseSegmentSize(v string) (segments, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(v, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			break
		}
		size := n * u.mult
		if size < 1<<20 || size > 1<<30 || size&(size-1) != 0 {
			return 0, fmt.Errorf("wal_segment_size %q is not a power of two from 1MB to 1GB", v)
		}
		return segments(size), nil
	}
	return 0, fmt.Errorf("wal_segment_size %q: not a size", v)
}
