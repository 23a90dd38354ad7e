package mysql

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-mysql-org/go-mysql/replication"
)

// eventReader reads a binlog file event by event through one large buffer:
// an event is returned in place (no copy) unless it straddles a refill.
type eventReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // the unread part of buf
	off        int64 // file offset of buf[start]
	eof        bool
}

const readBuffer = 4 << 20

func newEventReader(r io.Reader, off int64) *eventReader {
	return &eventReader{r: r, buf: make([]byte, readBuffer), off: off}
}

// fill makes n bytes readable unless the file ends first.
func (er *eventReader) fill(n int) error {
	for er.end-er.start < n {
		if er.eof {
			return io.EOF
		}
		if er.start+n > len(er.buf) { // make room: move the rest down, grow if needed
			if n > len(er.buf) {
				nb := make([]byte, max(n, 2*len(er.buf)))
				er.end = copy(nb, er.buf[er.start:er.end])
				er.buf = nb
			} else {
				er.end = copy(er.buf, er.buf[er.start:er.end])
			}
			er.start = 0
		}
		m, err := er.r.Read(er.buf[er.end:])
		er.end += m
		if errors.Is(err, io.EOF) {
			er.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// errTorn: the file ends inside an event (a crash, or a stream still
// writing it).
var errTorn = errors.New("file ends inside an event")

// next returns the next event and its offset. ev is valid until the next
// call. io.EOF at a clean end of file.
func (er *eventReader) next() (h header, ev []byte, off int64, err error) {
	if err := er.fill(headerSize); err != nil {
		if errors.Is(err, io.EOF) && er.end == er.start {
			return header{}, nil, er.off, io.EOF
		}
		return header{}, nil, er.off, tornOr(err)
	}
	if h, err = parseHeader(er.buf[er.start:er.end]); err != nil {
		return h, nil, er.off, err
	}
	if err := er.fill(int(h.Size)); err != nil {
		return h, nil, er.off, tornOr(err)
	}
	ev = er.buf[er.start : er.start+int(h.Size)]
	off = er.off
	er.start += int(h.Size)
	er.off += int64(h.Size)
	return h, ev, off, nil
}

func tornOr(err error) error {
	if errors.Is(err, io.EOF) {
		return errTorn
	}
	return err
}

// scanner turns a store file's events into transactions: it reads the
// Format_description event, the Gtid_list (or Previous_gtids) event that
// records the file's start position, verifies checksums and feeds the
// assembler.
type scanner struct {
	asm       assembler
	haveFmt   bool
	start     state
	haveStart bool
	// safe is the offset just past the last event that left no transaction
	// open: the file may be cut there.
	safe int64
}

func (s *scanner) event(h header, ev []byte, off int64) (step, error) {
	if h.Type == typeFormat {
		f, err := parseFormat(ev)
		if err != nil {
			return step{}, fmt.Errorf("at offset %d: %w", off, err)
		}
		s.asm.f, s.haveFmt = f, true
		s.safe = off + int64(h.Size)
		return step{}, nil
	}
	if !s.haveFmt {
		return step{}, fmt.Errorf("event type %d at offset %d before any Format_description event", h.Type, off)
	}
	if s.asm.f.checksum {
		if err := checkCRC(ev); err != nil {
			return step{}, fmt.Errorf("event type %d at offset %d: %w", h.Type, off, err)
		}
	}
	if (h.Type == typeGTIDList || h.Type == typePreviousGTIDs) && !s.haveStart && !s.asm.inside() {
		st, err := decodeList(s.asm.f.flavor, body(ev, s.asm.f.checksum))
		if err != nil {
			return step{}, fmt.Errorf("at offset %d: %w", off, err)
		}
		s.start, s.haveStart = st, true
	}
	st, err := s.asm.feed(h, ev, off)
	if err != nil {
		return step{}, err
	}
	if !st.inside {
		s.safe = off + int64(h.Size)
	}
	return st, nil
}

// scanResult is where a scan ended.
type scanResult struct {
	safe      int64 // see scanner.safe
	start     state
	haveStart bool
	format    format
}

// scanFile walks the data file at path and calls fn for each complete
// transaction at or after offset from (0 or 4: all). The file's header
// events (Format_description, Gtid_list) are always read first. It stops at
// the first error, returning what it found so far with it: errTorn when
// the file ends inside an event, a checksum or decoding error otherwise. A
// transaction still open at the end is not reported.
func scanFile(path string, from int64, fn func(Txn) error) (scanResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return scanResult{}, err
	}
	defer f.Close()
	magic := make([]byte, len(replication.BinLogFileHeader))
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, replication.BinLogFileHeader) {
		return scanResult{}, fmt.Errorf("%s: not a binlog file (no fe 62 69 6e header)", path)
	}
	er := newEventReader(f, int64(len(magic)))
	var s scanner
	s.safe = er.off
	err = scanEvents(er, &s, from, fn)
	res := scanResult{safe: s.safe, start: s.start, haveStart: s.haveStart, format: s.asm.f}
	if err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}

func scanEvents(er *eventReader, s *scanner, from int64, fn func(Txn) error) error {
	for {
		h, ev, off, err := er.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("at offset %d: %w", off, err)
		}
		if off < from && s.haveStart && h.Type != typeFormat {
			if err := er.skipTo(from); err != nil {
				return err
			}
			s.safe = from // from is the end of a complete transaction
			continue
		}
		st, err := s.event(h, ev, off)
		if err != nil {
			return err
		}
		if st.done && fn != nil {
			if err := fn(st.txn); err != nil {
				return err
			}
		}
	}
}

// skipTo moves the reader to offset to (the start of an event) without
// decoding what lies between.
func (er *eventReader) skipTo(to int64) error {
	if to <= er.off {
		return nil
	}
	if to-er.off <= int64(er.end-er.start) {
		er.start += int(to - er.off)
		er.off = to
		return nil
	}
	skip := to - er.off - int64(er.end-er.start)
	er.start, er.end = 0, 0
	if sk, ok := er.r.(io.Seeker); ok {
		if _, err := sk.Seek(skip, io.SeekCurrent); err != nil {
			return err
		}
	} else if _, err := io.CopyN(io.Discard, er.r, skip); err != nil {
		return tornOr(err)
	}
	er.off = to
	return nil
}

// ScanFile walks one binlog file (a store's, or any MariaDB/MySQL binlog
// with GTIDs) event by event, verifying checksums, and calls fn for each
// complete transaction in file order. It returns fn's first error, or an
// error saying where the file is corrupt or ends inside an event. A
// transaction left open at the end of the file is not reported (a stream
// may still be writing it).
func ScanFile(path string, fn func(Txn) error) error {
	_, err := scanFile(path, 0, fn)
	return err
}
