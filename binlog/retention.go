package binlog

import "time"

// StoreFile is one file of a store, oldest first, as retention sees it.
type StoreFile struct {
	Name string
	Size int64
	// Newest is the time of the newest thing the file holds.
	Newest time.Time
}

// Retention bounds a store.
type Retention struct {
	MaxAge  time.Duration
	MaxSize int64
}

// Prune decides how many of the oldest files to delete. files is ordered
// oldest first; needed is the index of the first file holding something a
// replica (or anything else) still lacks, so files[needed:] are kept
// whatever the bounds say. The newest file, which a stream may be writing,
// is always kept. A file goes when it is older than MaxAge or when the
// store is over MaxSize; pruning stops at the first file that may stay.
func Prune(files []StoreFile, needed int, r Retention, now time.Time) int {
	limit := min(needed, len(files)-1)
	var total int64
	for _, f := range files {
		total += f.Size
	}
	n := 0
	for n < limit {
		f := files[n]
		tooOld := r.MaxAge > 0 && now.Sub(f.Newest) > r.MaxAge
		tooBig := r.MaxSize > 0 && total > r.MaxSize
		if !tooOld && !tooBig {
			break
		}
		total -= f.Size
		n++
	}
	return n
}
