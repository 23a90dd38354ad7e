package backup

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Meter reports how far a long run is: bytes done, of how many when the
// total is known, the rate and the time left. On a terminal it redraws
// one line every second; to anything else (a log) it writes a line every
// ten seconds. A nil *Meter does nothing, so runs without progress need no
// checks.
type Meter struct {
	w     io.Writer
	what  string
	tty   bool
	start time.Time
	done  atomic.Int64
	total atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewMeter starts reporting what to w; total may be 0 (unknown) and set
// later. Finish ends it.
func NewMeter(w io.Writer, what string, total int64) *Meter {
	if w == nil {
		return nil
	}
	m := &Meter{w: w, what: what, tty: isTerminal(w), start: time.Now(), stop: make(chan struct{})}
	m.total.Store(total)
	every := 10 * time.Second
	if m.tty {
		every = time.Second
	}
	m.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.print("")
			}
		}
	})
	return m
}

// Add counts n more bytes done.
func (m *Meter) Add(n int64) {
	if m != nil {
		m.done.Add(n)
	}
}

// Set replaces the counts (a tool that reports its own progress).
func (m *Meter) Set(done, total int64) {
	if m != nil {
		m.done.Store(done)
		if total > 0 {
			m.total.Store(total)
		}
	}
}

// SetTotal sets the expected total.
func (m *Meter) SetTotal(total int64) {
	if m != nil {
		m.total.Store(total)
	}
}

// Finish stops the meter and writes the last line.
func (m *Meter) Finish() {
	if m == nil {
		return
	}
	close(m.stop)
	m.wg.Wait()
	m.print("\n")
}

func (m *Meter) print(end string) {
	line := m.what + ": " + FormatProgress(m.done.Load(), m.total.Load(), time.Since(m.start))
	if m.tty {
		fmt.Fprintf(m.w, "\r\033[K%s%s", line, end)
		return
	}
	fmt.Fprintln(m.w, line)
}

// FormatProgress says how far a run is: "1.2 GiB of 2.0 GiB (60%),
// 310.0 MiB/s, 3s left"; without a total, the bytes and the rate. It is pure.
func FormatProgress(done, total int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	if total <= 0 {
		return fmt.Sprintf("%s, %s/s", HumanBytes(done), HumanBytes(int64(rate)))
	}
	pct := 100 * float64(done) / float64(total)
	left := "?"
	switch {
	case done >= total:
		left = "0s"
	case rate > 0:
		left = (time.Duration(float64(total-done) / rate * float64(time.Second))).Round(time.Second).String()
	}
	return fmt.Sprintf("%s of %s (%.0f%%), %s/s, %s left", HumanBytes(done), HumanBytes(total), min(pct, 100), HumanBytes(int64(rate)), left)
}

// HumanBytes writes a size in B, KiB, MiB, GiB...
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
