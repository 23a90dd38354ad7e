package backup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The change-stream store of a cluster is archived in its repository
// under "<cluster>.stream/", apart from the catalog ("<cluster>/"): the
// store's files as they are on disk (encrypted when the repository is),
// so that a point-in-time restore works on a machine that has only the
// repository and the configuration.
func streamPrefix(cluster string) string { return cluster + ".stream/" }

// manifestName records, in the archive, what was uploaded of each file.
const manifestName = ".manifest.json"

// stamp is what a file was when it was uploaded.
type fileStamp struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// Archiver mirrors one cluster's store directory into its repository: a
// file new or changed since its last upload is uploaded again (a store's
// files only grow, and its oldest go by retention, which the archive then
// follows). Within a pass the files that describe others (MariaDB's
// transaction indexes, PostgreSQL's arrival records) go before the files
// they describe, and the lists (MariaDB's file list, the store's identity
// and status) last, so that an archive read at any moment describes no
// more than it holds.
type Archiver struct {
	Repo    Repository
	Cluster string
	Dir     string // the store directory
	Log     *slog.Logger

	done map[string]fileStamp // path under Dir → what was uploaded
}

// skipped are the store's files that are the running stream's, not data.
var skipped = []string{"stream.lock", "wal.lock"}

// Pass uploads what changed since the last pass and removes from the
// archive what the store no longer has; it returns how many files it
// uploaded and removed.
func (a *Archiver) Pass(ctx context.Context) (int, int, error) {
	if a.done == nil {
		a.done = a.readManifest(ctx)
	}
	files, err := archiveOrder(a.Dir)
	if err != nil {
		return 0, 0, err
	}
	var up, gone int
	var errs []error
	here := map[string]bool{}
	for _, f := range files {
		here[f.path] = true
		if prev, ok := a.done[f.path]; ok && prev.Size == f.Size && prev.ModTime.Equal(f.ModTime) {
			continue
		}
		if err := a.upload(ctx, f.path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed by retention since it was listed
			}
			errs = append(errs, err)
			continue
		}
		a.done[f.path] = f.fileStamp
		up++
	}
	for p := range a.done {
		if here[p] {
			continue
		}
		if err := a.Repo.objects.Remove(ctx, streamPrefix(a.Cluster)+p); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(a.done, p)
		gone++
	}
	if up > 0 || gone > 0 {
		errs = append(errs, a.writeManifest(ctx))
	}
	return up, gone, errors.Join(errs...)
}

// Run archives every every until ctx ends.
func (a *Archiver) Run(ctx context.Context, every time.Duration) {
	for {
		up, gone, err := a.Pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			a.Log.Warn("archive the change-stream store", "err", err, "uploaded", up, "removed", gone)
		case up > 0 || gone > 0:
			a.Log.Debug("change-stream store archived", "uploaded", up, "removed", gone)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

type archivedFile struct {
	path string
	fileStamp
	order int
}

// archiveOrder lists the store's files in upload order: descriptions, then
// data, then lists.
func archiveOrder(dir string) ([]archivedFile, error) {
	var out []archivedFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if d.IsDir() || slices.Contains(skipped, d.Name()) || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		order := 1 // data
		switch {
		case strings.HasSuffix(rel, ".idx") || strings.HasPrefix(rel, "arrivals/"):
			order = 0
		case !strings.Contains(rel, "/") && !strings.HasPrefix(d.Name(), "dbha-bin.0"):
			order = 2 // dbha-bin.index, wal-store.json, status.json
		}
		out = append(out, archivedFile{path: rel, fileStamp: fileStamp{Size: info.Size(), ModTime: info.ModTime()}, order: order})
		return nil
	})
	slices.SortStableFunc(out, func(a, b archivedFile) int {
		return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.path, b.path))
	})
	return out, err
}

func (a *Archiver) upload(ctx context.Context, rel string) error {
	in, err := os.Open(filepath.Join(a.Dir, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer in.Close()
	w, err := a.Repo.createKey(ctx, streamPrefix(a.Cluster)+rel)
	if err != nil {
		return fmt.Errorf("archive %s: %w", rel, err)
	}
	if _, err := io.Copy(w, in); err != nil {
		w.Abort()
		return fmt.Errorf("archive %s: %w", rel, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("archive %s: %w", rel, err)
	}
	return nil
}

func (a *Archiver) readManifest(ctx context.Context) map[string]fileStamp {
	m := map[string]fileStamp{}
	rc, err := a.Repo.objects.Open(ctx, streamPrefix(a.Cluster)+manifestName)
	if err != nil {
		return m
	}
	defer rc.Close()
	json.NewDecoder(rc).Decode(&m) // a manifest that does not read: everything is uploaded again
	return m
}

func (a *Archiver) writeManifest(ctx context.Context) error {
	b, err := json.Marshal(a.done)
	if err != nil {
		return err
	}
	w, err := a.Repo.objects.Create(ctx, streamPrefix(a.Cluster)+manifestName)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// ErrNoArchive: the repository holds no archived store of the cluster.
var ErrNoArchive = errors.New("the repository holds no archived change-stream store of the cluster")

// FetchStore copies the store archived in the repository into dst (an
// empty or new directory), decrypted, for a point-in-time restore on a
// machine without the store. MariaDB's file list is written anew from the
// data files fetched, and the newest data file's index dropped (the store
// rebuilds it from the data), so that the copy describes exactly what it
// holds. It returns how many files it fetched.
func FetchStore(ctx context.Context, repo Repository, cluster, dst string) (int, error) {
	prefix := streamPrefix(cluster)
	keys, err := repo.objects.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	var data []string
	for _, k := range keys {
		rel := strings.TrimPrefix(k, prefix)
		if rel == manifestName || strings.Contains("/"+rel, "/.") {
			continue
		}
		to := filepath.Join(dst, filepath.FromSlash(rel))
		if err := fetchOne(ctx, repo, k, to); err != nil {
			return n, err
		}
		if strings.HasPrefix(rel, "dbha-bin.0") && !strings.HasSuffix(rel, ".idx") {
			data = append(data, rel)
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("%w (%s in %s)", ErrNoArchive, cluster, repo)
	}
	if len(data) > 0 {
		slices.Sort(data)
		os.Remove(filepath.Join(dst, data[len(data)-1]+".idx"))
		if err := os.WriteFile(filepath.Join(dst, "dbha-bin.index"), []byte(strings.Join(data, "\n")+"\n"), 0o640); err != nil {
			return n, err
		}
	}
	return n, nil
}

func fetchOne(ctx context.Context, repo Repository, key, to string) error {
	rc, err := repo.openKey(ctx, key)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", key, err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", key, err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("fetch %s: %w", key, err)
	}
	return f.Close()
}
