package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dbha/dbha/topology"
)

// ErrAltered means a backup's files are not what the catalog recorded.
var ErrAltered = errors.New("the backup's files differ from the catalog")

// CheckFiles compares a backup's files with the SHA-256 and sizes the
// catalog recorded, and names the first file that is missing or altered.
func CheckFiles(repo string, e Entry) error {
	if e.Status != Done {
		return fmt.Errorf("backup %s is %s, not done: nothing to restore", e.ID, e.Status)
	}
	if len(e.Files) == 0 {
		return fmt.Errorf("backup %s: %w: the catalog lists no files", e.ID, ErrAltered)
	}
	dir := EntryDir(repo, e.Cluster, e.ID)
	for _, want := range e.Files {
		got, err := hashFile(filepath.Join(dir, want.Name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("backup %s: %w: file %s is missing", e.ID, ErrAltered, want.Name)
		case err != nil:
			return fmt.Errorf("backup %s: file %s: %w", e.ID, want.Name, err)
		case got.Size != want.Size || got.SHA256 != want.SHA256:
			return fmt.Errorf("backup %s: %w: file %s has SHA-256 %s and %d bytes; the catalog recorded %s and %d bytes",
				e.ID, ErrAltered, want.Name, got.SHA256, got.Size, want.SHA256, want.Size)
		}
	}
	return nil
}

// Unpack turns a backup into a data directory at dir, which must be empty
// or absent, owned by owner: for PostgreSQL the base and its WAL are
// extracted and checked by pg_verifybackup against the manifest; for
// MariaDB the stream is extracted and prepared (mariadb-backup --prepare),
// which applies the redo the copy took. progress, when set, sees the
// compressed bytes read.
func Unpack(ctx context.Context, repo string, e Entry, dir string, owner Owner, progress func(int64)) error {
	if err := owner.CanEnter(dir); err != nil {
		return err
	}
	if err := emptyDir(dir); err != nil {
		return err
	}
	src := EntryDir(repo, e.Cluster, e.ID)
	var err error
	if e.Engine == topology.Postgres {
		err = unpackPostgres(ctx, src, dir, progress)
	} else {
		err = unpackMariaDB(ctx, src, dir, progress)
	}
	if err != nil {
		return fmt.Errorf("unpack backup %s into %s: %w", e.ID, dir, err)
	}
	return owner.Chown(dir)
}

// emptyDir makes sure dir exists and holds nothing: a restore never mixes
// with or overwrites files already there.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: restore into a new or empty directory", dir)
	}
	return os.Chmod(dir, 0o700)
}

func unpackPostgres(ctx context.Context, src, dir string, progress func(int64)) error {
	if err := untar(ctx, filepath.Join(src, "data", "base.tar.zst"), dir, progress); err != nil {
		return err
	}
	wal := filepath.Join(dir, "pg_wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		return err
	}
	if err := untar(ctx, filepath.Join(src, "data", "pg_wal.tar.zst"), wal, progress); err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(src, "data", "backup_manifest"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "backup_manifest"), manifest, 0o600); err != nil {
		return err
	}
	bin, err := toolPath("pg_verifybackup")
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, bin, "--quiet", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_verifybackup: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// A copy of a standby would come up as a standby of its old primary,
	// and a backup is no archive recovery: it starts as a server of its own.
	for _, f := range []string{"standby.signal", "recovery.signal", "backup_manifest"} {
		os.Remove(filepath.Join(dir, f))
	}
	return nil
}

// untar extracts a zstd-compressed tar file into dir (zstd | tar, as an
// operator would by hand).
func untar(ctx context.Context, file, dir string, progress func(int64)) error {
	in, err := os.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	return pipeline(ctx, countingReader(in, progress),
		exec.CommandContext(ctx, "zstd", "-q", "-d", "-c"),
		exec.CommandContext(ctx, "tar", "-x", "--no-same-owner", "-C", dir, "-f", "-"))
}

func unpackMariaDB(ctx context.Context, src, dir string, progress func(int64)) error {
	in, err := os.Open(filepath.Join(src, "backup.xb.zst"))
	if err != nil {
		return err
	}
	defer in.Close()
	err = pipeline(ctx, countingReader(in, progress),
		exec.CommandContext(ctx, "zstd", "-q", "-d", "-c"),
		exec.CommandContext(ctx, "mbstream", "-x", "-C", dir))
	if err != nil {
		return err
	}
	prepare := exec.CommandContext(ctx, "mariadb-backup", "--prepare", "--target-dir="+dir)
	if out, err := prepare.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-backup --prepare: %w: %s", err, lastLine(string(out)))
	}
	return nil
}

// pipeline runs first | second with in as first's input and reports the
// first failure with the tool's last words.
func pipeline(ctx context.Context, in io.Reader, first, second *exec.Cmd) error {
	for _, c := range []*exec.Cmd{first, second} {
		if c.Err != nil {
			return fmt.Errorf("%s not found: install it (make deps): %w", filepath.Base(c.Path), c.Err)
		}
	}
	var firstErr, secondErr strings.Builder
	first.Stdin, first.Stderr, second.Stderr = in, &firstErr, &secondErr
	pipe, err := first.StdoutPipe()
	if err != nil {
		return err
	}
	second.Stdin = pipe
	if err := first.Start(); err != nil {
		return err
	}
	runErr := second.Run()
	waitErr := first.Wait()
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case waitErr != nil:
		return fmt.Errorf("%s: %w: %s", filepath.Base(first.Path), waitErr, lastLine(firstErr.String()))
	case runErr != nil:
		return fmt.Errorf("%s: %w: %s", filepath.Base(second.Path), runErr, lastLine(secondErr.String()))
	}
	return nil
}

type counting struct {
	r  io.Reader
	fn func(int64)
}

func (c counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.fn(int64(n))
	return n, err
}

func countingReader(r io.Reader, fn func(int64)) io.Reader {
	if fn == nil {
		return r
	}
	return counting{r, fn}
}
