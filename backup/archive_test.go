package backup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The archiver uploads new and changed files, descriptions before data
// and lists last, follows retention's removals, and FetchStore gives back
// the store with MariaDB's file list written from the data it fetched and
// the newest file's index dropped.
func TestArchiveAndFetchStore(t *testing.T) {
	dir, root := t.TempDir(), t.TempDir()
	repo := Dir(root)
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write("dbha-bin.000001", "one")
	write("dbha-bin.000001.idx", "i1")
	write("dbha-bin.000002", "two")
	write("dbha-bin.000002.idx", "i2")
	write("dbha-bin.index", "./dbha-bin.000001\n./dbha-bin.000002\n./dbha-bin.000003\n")
	write("status.json", "{}")
	write("stream.lock", "")
	a := &Archiver{Repo: repo, Cluster: "c", Dir: dir}
	if up, gone, err := a.Pass(t.Context()); err != nil || up != 6 || gone != 0 {
		t.Fatalf("first pass: %d up, %d gone, %v; want 6, 0", up, gone, err)
	}
	order, _ := archiveOrder(dir)
	var names []string
	for _, f := range order {
		names = append(names, f.path)
	}
	if want := []string{"dbha-bin.000001.idx", "dbha-bin.000002.idx", "dbha-bin.000001", "dbha-bin.000002", "dbha-bin.index", "status.json"}; !slices.Equal(names, want) {
		t.Errorf("upload order %v, want %v", names, want)
	}
	if up, gone, err := a.Pass(t.Context()); err != nil || up != 0 || gone != 0 {
		t.Fatalf("a pass with nothing new: %d up, %d gone, %v", up, gone, err)
	}
	time.Sleep(10 * time.Millisecond) // a new modification time
	write("dbha-bin.000002", "two, grown")
	os.Remove(filepath.Join(dir, "dbha-bin.000001"))
	os.Remove(filepath.Join(dir, "dbha-bin.000001.idx"))
	if up, gone, err := a.Pass(t.Context()); err != nil || up != 1 || gone != 2 {
		t.Fatalf("after growth and retention: %d up, %d gone, %v; want 1, 2", up, gone, err)
	}
	// A new archiver (a restarted daemon) starts from the manifest.
	b := &Archiver{Repo: repo, Cluster: "c", Dir: dir}
	if up, _, err := b.Pass(t.Context()); err != nil || up != 0 {
		t.Fatalf("a restarted archiver uploaded %d again (%v)", up, err)
	}
	dst := filepath.Join(t.TempDir(), "store")
	n, err := FetchStore(t.Context(), repo, "c", dst)
	if err != nil || n != 4 {
		t.Fatalf("FetchStore = %d, %v; want 4 files", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "dbha-bin.000002")); string(b) != "two, grown" {
		t.Errorf("fetched data file: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "dbha-bin.index")); strings.TrimSpace(string(b)) != "dbha-bin.000002" {
		t.Errorf("fetched file list: %q, want only the data fetched", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "dbha-bin.000002.idx")); !os.IsNotExist(err) {
		t.Errorf("the newest file's index was kept: %v", err)
	}
	if _, err := FetchStore(t.Context(), repo, "other", t.TempDir()); err == nil {
		t.Error("fetched a store that was never archived")
	}
}
