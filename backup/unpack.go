package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dbha/dbha/topology"
)

// ErrAltered means a backup's files are not what the catalog recorded.
var ErrAltered = errors.New("the backup's files differ from the catalog")

// CheckFiles compares a backup's files with the SHA-256 and sizes the
// catalog recorded, and names the first file that is missing or altered.
func CheckFiles(ctx context.Context, repo Repository, e Entry) error {
	if err := checkPresent(ctx, repo, e); err != nil {
		return err
	}
	src := sources{ctx: ctx, repo: repo, e: e}
	for _, f := range e.Files {
		err := src.read(f.Name, func(r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// unpack turns a backup into a data directory at dir, which must be
// empty or absent, owned by owner. Every file of the backup is checked
// against the catalog's SHA-256 and size as it is read (one read, not
// two), and a difference fails the unpack naming the file. PostgreSQL: the
// base and its WAL are extracted, and with checkManifest pg_verifybackup
// checks them against the manifest; MariaDB: the stream is extracted and
// prepared (mariadb-backup --prepare), which applies the redo the copy
// took. progress, when set, sees the bytes read.
func unpack(ctx context.Context, repo Repository, e Entry, dir string, owner Owner, progress func(int64), checkManifest bool, besides string) error {
	if err := checkPresent(ctx, repo, e); err != nil {
		return err
	}
	if err := owner.CanEnter(dir); err != nil {
		return err
	}
	if err := emptyDir(dir, besides); err != nil {
		return err
	}
	src := sources{ctx: ctx, repo: repo, e: e, progress: progress}
	var err error
	if e.Engine == topology.Postgres {
		err = unpackPostgres(ctx, src, dir, checkManifest)
	} else {
		err = unpackMariaDB(ctx, src, dir)
	}
	if err != nil {
		return fmt.Errorf("unpack backup %s into %s: %w", e.ID, dir, err)
	}
	return owner.Chown(dir)
}

// checkPresent checks, before anything is unpacked, that the backup is
// done and that every file the catalog lists is there.
func checkPresent(ctx context.Context, repo Repository, e Entry) error {
	if e.Status != Done {
		return fmt.Errorf("backup %s is %s, not done: nothing to restore", e.ID, e.Status)
	}
	if len(e.Files) == 0 {
		return fmt.Errorf("backup %s: %w: the catalog lists no files", e.ID, ErrAltered)
	}
	if e.Encryption != "" && !repo.Encrypted() {
		return fmt.Errorf("backup %s: %w (%s): set backup.encryption_key_file", e.ID, ErrNoKey, e.Encryption)
	}
	for _, f := range e.Files {
		ok, err := repo.objects.Exists(ctx, fileKey(e.Cluster, e.ID, f.Name))
		switch {
		case err != nil:
			return fmt.Errorf("backup %s: file %s: %w", e.ID, f.Name, err)
		case !ok:
			return fmt.Errorf("backup %s: %w: file %s is missing", e.ID, ErrAltered, f.Name)
		}
	}
	return nil
}

// sources reads a backup's files, each checked against the catalog.
type sources struct {
	ctx      context.Context
	repo     Repository
	e        Entry
	progress func(int64)
}

// read streams the backup file name (relative to the backup's place),
// decrypted when it is encrypted, into use and then compares its size and
// SHA-256 with the catalog's.
func (s sources) read(name string, use func(io.Reader) error) error {
	i := slices.IndexFunc(s.e.Files, func(f File) bool { return f.Name == name })
	if i < 0 {
		return fmt.Errorf("backup %s: %w: the catalog does not list %s", s.e.ID, ErrAltered, name)
	}
	in, err := s.repo.open(s.ctx, s.e.Cluster, s.e.ID, name)
	if err != nil {
		return fmt.Errorf("backup %s: %w", s.e.ID, err)
	}
	defer in.Close()
	h := sha256.New()
	var n int64
	tee := io.TeeReader(in, h)
	useErr := use(countingReader(tee, func(k int64) {
		n += k
		if s.progress != nil {
			s.progress(k)
		}
	}))
	if useErr != nil {
		// An altered file often breaks the tool first; the hash of the
		// whole file says whether that is the cause.
		k, err := io.Copy(io.Discard, tee)
		if err != nil {
			return useErr
		}
		n += k
	}
	want := s.e.Files[i]
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 || n != want.Size {
		return fmt.Errorf("backup %s: %w: file %s has %d bytes and SHA-256 %s; the catalog recorded %d and %s", s.e.ID, ErrAltered, name, n, got, want.Size, want.SHA256)
	}
	return useErr
}

// emptyDir makes sure dir exists and holds nothing (but the entry
// besides, when named): a restore never mixes with or overwrites files
// already there.
func emptyDir(dir, besides string) error {
	entries, err := os.ReadDir(dir)
	if besides != "" {
		entries = slices.DeleteFunc(entries, func(d os.DirEntry) bool { return d.Name() == besides })
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Directories above it must let the server's account through.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		return os.Mkdir(dir, 0o700)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: restore into a new or empty directory", dir)
	}
	return os.Chmod(dir, 0o700)
}

func unpackPostgres(ctx context.Context, src sources, dir string, checkManifest bool) error {
	if err := src.read("data/base.tar.zst", func(r io.Reader) error { return untar(ctx, r, dir) }); err != nil {
		return err
	}
	// A base that maps tablespaces (pg_basebackup writes the map empty
	// when there are none) would send a server started on it to the live
	// tablespaces' paths: never started (see noTablespaces).
	if st, err := os.Stat(filepath.Join(dir, "tablespace_map")); err == nil && st.Size() > 0 {
		return fmt.Errorf("%w: the backup's tablespace_map names the live tablespaces' paths; it is not restored", ErrTablespaces)
	}
	wal := filepath.Join(dir, "pg_wal")
	if err := os.MkdirAll(wal, 0o700); err != nil {
		return err
	}
	if err := src.read("data/pg_wal.tar.zst", func(r io.Reader) error { return untar(ctx, r, wal) }); err != nil {
		return err
	}
	manifest := filepath.Join(dir, "backup_manifest")
	err := src.read("data/backup_manifest", func(r io.Reader) error {
		b, err := io.ReadAll(r)
		if err == nil {
			err = os.WriteFile(manifest, b, 0o600)
		}
		return err
	})
	if err != nil {
		return err
	}
	if checkManifest {
		bin, err := toolPath("pg_verifybackup")
		if err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, bin, "--quiet", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("pg_verifybackup: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	// A copy of a standby would come up as a standby of its old primary,
	// and a backup is no archive recovery: it starts as a server of its own.
	for _, f := range []string{"standby.signal", "recovery.signal", "backup_manifest"} {
		os.Remove(filepath.Join(dir, f))
	}
	return nil
}

// untar extracts a zstd-compressed tar stream into dir (zstd | tar, as an
// operator would by hand).
func untar(ctx context.Context, in io.Reader, dir string) error {
	return pipeline(ctx, in,
		exec.CommandContext(ctx, "zstd", "-q", "-d", "-c"),
		exec.CommandContext(ctx, "tar", "-x", "--no-same-owner", "-C", dir, "-f", "-"))
}

func unpackMariaDB(ctx context.Context, src sources, dir string) error {
	err := src.read("backup.xb.zst", func(r io.Reader) error {
		return pipeline(ctx, r,
			exec.CommandContext(ctx, "zstd", "-q", "-d", "-c"),
			exec.CommandContext(ctx, "mbstream", "-x", "-C", dir))
	})
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
	if err := second.Start(); err != nil {
		first.Process.Kill()
		first.Wait()
		return err
	}
	// Only second reads the pipe now: if it dies, first must see a broken
	// pipe rather than block on a pipe this process still holds open.
	pipe.Close()
	secondWait := second.Wait()
	firstWait := first.Wait()
	var errs []string
	if firstWait != nil {
		errs = append(errs, fmt.Sprintf("%s: %v: %s", filepath.Base(first.Path), firstWait, lastLine(firstErr.String())))
	}
	if secondWait != nil {
		errs = append(errs, fmt.Sprintf("%s: %v: %s", filepath.Base(second.Path), secondWait, lastLine(secondErr.String())))
	}
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case len(errs) > 0:
		return errors.New(strings.Join(errs, "; "))
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
