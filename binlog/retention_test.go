package binlog

import (
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	file := func(ageHours int, size int64) StoreFile {
		return StoreFile{Size: size, Newest: now.Add(-time.Duration(ageHours) * time.Hour)}
	}
	files := []StoreFile{file(100, 10), file(50, 10), file(30, 10), file(1, 10)}
	cases := []struct {
		name   string
		files  []StoreFile
		needed int
		r      Retention
		want   int
	}{
		{"within bounds", files, 4, Retention{MaxAge: 200 * time.Hour, MaxSize: 100}, 0},
		{"too old", files, 4, Retention{MaxAge: 40 * time.Hour}, 2},
		{"too big", files, 4, Retention{MaxSize: 25}, 2},
		{"age and size together", files, 4, Retention{MaxAge: 60 * time.Hour, MaxSize: 15}, 3},
		{"a replica still needs the second file", files, 1, Retention{MaxAge: time.Hour}, 1},
		{"a replica needs everything", files, 0, Retention{MaxSize: 1}, 0},
		{"the newest file is never pruned", files, 4, Retention{MaxAge: time.Minute}, 3},
		{"stops at the first file that may stay", []StoreFile{file(100, 10), file(1, 10), file(100, 10), file(0, 10)}, 4,
			Retention{MaxAge: 50 * time.Hour}, 1},
		{"no bounds", files, 4, Retention{}, 0},
		{"empty store", nil, 0, Retention{MaxSize: 1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Prune(tc.files, tc.needed, tc.r, now); got != tc.want {
				t.Fatalf("Prune = %d, want %d", got, tc.want)
			}
		})
	}
}
