package checksum

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	first := Report{Cluster: "c", Primary: "p", Replicas: []string{"r1", "r2"}, Finished: t0, Tables: []TableReport{
		{Table: "a.x", Chunks: 3, Differences: []Difference{{Chunk: 2, Replica: "r1"}, {Chunk: 3, Replica: "r1"}}},
		{Table: "a.y", Chunks: 1},
	}}
	s := Merge(Summary{}, first)
	if got := s.Replicas["r1"]; !reflect.DeepEqual(got.Differing, map[string]int{"a.x": 2}) || got.Chunks() != 2 {
		t.Fatalf("r1 after the first run: %+v", got)
	}
	if len(s.Replicas["r2"].Differing) != 0 || s.LastChunks != 4 || s.LastDifferences != 2 {
		t.Fatalf("summary %+v", s)
	}
	if inc := s.Inconsistent(); len(inc) != 1 || inc["r1"] == "" {
		t.Fatalf("inconsistent %v", inc)
	}
	// A run over a.y alone leaves r1's difference on a.x known; r2 is lost.
	second := Report{Cluster: "c", Primary: "p", Replicas: []string{"r1", "r2"}, Finished: t0.Add(time.Hour),
		Tables: []TableReport{{Table: "a.y", Chunks: 1}}, Lost: []ReplicaProblem{{Replica: "r2", Reason: "gone"}}}
	s = Merge(s, second)
	if got := s.Replicas["r1"].Differing; !reflect.DeepEqual(got, map[string]int{"a.x": 2}) {
		t.Fatalf("r1 after a run over a.y: %v", got)
	}
	// A run that compares a.x again and finds it equal clears it.
	third := Report{Cluster: "c", Primary: "p", Replicas: []string{"r1", "r2"}, Finished: t0.Add(2 * time.Hour),
		Tables: []TableReport{{Table: "a.x", Chunks: 3}}}
	s = Merge(s, third)
	if inc := s.Inconsistent(); len(inc) != 0 {
		t.Fatalf("after a clean run: %v", inc)
	}
	// A table cut short, or chunks left unstable, clear nothing.
	s = Merge(s, first)
	s = Merge(s, Report{Cluster: "c", Primary: "p", Replicas: []string{"r1"}, Finished: t0.Add(3 * time.Hour),
		Tables: []TableReport{{Table: "a.x", Chunks: 1, Error: "dropped"}}})
	if inc := s.Inconsistent(); inc["r1"] == "" {
		t.Fatalf("a table cut short cleared r1: %v", inc)
	}
}

func TestSaveReportKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var last string
	for i := range 5 {
		var err error
		last, err = SaveReport(dir, Report{Cluster: "c", Started: start.Add(time.Duration(i) * time.Hour)}, 3)
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"20261206T120000.000000000Z.json", "20261206T130000.000000000Z.json", "20261206T140000.000000000Z.json"}
	if !slices.Equal(names, want) || filepath.Base(last) != want[2] {
		t.Errorf("kept %v (last %s), want %v", names, last, want)
	}
	b, _ := os.ReadFile(last)
	var r Report
	if err := json.Unmarshal(b, &r); err != nil || !r.Started.Equal(start.Add(4*time.Hour)) {
		t.Errorf("the newest report reads back as %+v, %v", r, err)
	}
}
