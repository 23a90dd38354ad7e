package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Job is one backup to take.
type Job struct {
	Repo    Repository
	ID      string
	Cluster string
	Source  string // host:port of the instance to copy
	User    string // an account with REPLICATION (PostgreSQL)
	// Password goes to the tool in a private file, never its argv.
	Password string
	// TLS encrypts the tool's connection to Source as every connection
	// to the cluster is (nil: clear text).
	TLS *tlsconfig.Settings
	// DataDir (MariaDB) is the server's datadir on its host: mariadb-backup
	// reads the files themselves, there.
	DataDir string
	// Remote (MariaDB; backup.remote_command) reaches the source's host,
	// e.g. [ssh, -o, BatchMode=yes, "{host}"]: it gets one shell command
	// line as its last argument. None: the source's files are on this host.
	Remote   []string
	Progress *Meter // bytes copied, of the expected total; may be nil
	// MaxRate bounds how fast the source's files are read, in bytes per
	// second (pg_basebackup --max-rate; mariadb-backup --throttle, in MiB
	// per second); 0: as fast as it goes.
	MaxRate int64
	// Scratch holds a PostgreSQL backup on its way to a repository that is
	// not a plain local directory (the temporary directory when empty).
	Scratch string
	Now     func() time.Time
}

// RunPostgres takes a base backup of job.Source with pg_basebackup over the
// replication protocol (no access to the server's host needed): tar format,
// WAL streamed alongside, compressed with zstd on dbha's side, with a
// backup manifest. The position comes from the manifest's WAL range.
// pg_basebackup writes into the backup's directory when the repository is
// a plain local one, else into a scratch directory (job.Scratch) from
// which each file goes to the repository (encrypted, when it encrypts).
// The entry is saved as running first, then done (or failed, with its
// files removed); it is returned in every case.
func RunPostgres(ctx context.Context, job Job) (Entry, error) {
	return run(ctx, job, topology.Postgres, func(e *Entry) error {
		dir, inPlace := job.Repo.localDir(job.Cluster, job.ID)
		if !inPlace {
			scratch, err := os.MkdirTemp(job.Scratch, "dbha-backup-"+job.ID+"-")
			if err != nil {
				return fmt.Errorf("scratch directory: %w", err)
			}
			defer os.RemoveAll(scratch)
			dir = scratch
		}
		data := filepath.Join(dir, "data")
		if err := basebackup(ctx, job, data); err != nil {
			return err
		}
		if err := noTablespaces(data); err != nil {
			return err
		}
		walBytes, err := compressWAL(ctx, data)
		if err != nil {
			return err
		}
		if err := describePostgres(e, data); err != nil {
			return err
		}
		e.Bytes += walBytes
		if inPlace {
			e.Files, err = hashFiles(dir, "data")
		} else {
			e.Files, err = storeFiles(ctx, job, dir, "data")
		}
		for _, f := range e.Files {
			e.CompressedBytes += f.Size
		}
		return err
	})
}

// run is a backup's life in the catalog: its place claimed, its entry
// saved as running; then take writes its files into the repository and
// fills in the entry, which is saved done, or failed with the reason and
// every file of this backup removed. The entry is returned in every case.
func run(ctx context.Context, job Job, engine topology.Engine, take func(e *Entry) error) (Entry, error) {
	now := job.Now
	if now == nil {
		now = time.Now
	}
	e := Entry{ID: job.ID, Cluster: job.Cluster, Engine: engine, Source: job.Source, Started: now(), Status: Running}
	if job.Repo.Encrypted() {
		e.Encryption = "age"
	}
	if err := claim(ctx, job.Repo, job.Cluster, job.ID); err != nil {
		return Entry{}, err
	}
	e.Heartbeat = e.Started
	if err := Save(ctx, job.Repo, e); err != nil {
		return e, err
	}
	stopBeat := heartbeat(ctx, job.Repo, e, now)
	err := take(&e)
	stopBeat()
	e.Finished = now()
	e.Heartbeat = e.Finished
	if err != nil {
		e.Status, e.Error = Failed, err.Error()
		// The context may be what ended the run: the clean-up gets its own.
		cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if rerr := removeFiles(cleanup, job.Repo, e); rerr != nil {
			err = fmt.Errorf("%w (and removing its files failed: %v)", err, rerr)
		}
		return e, errorsJoin(err, Save(cleanup, job.Repo, e))
	}
	e.Status = Done
	return e, Save(ctx, job.Repo, e)
}

// heartbeat saves the running entry with a fresh heartbeat every
// HeartbeatEvery until the returned function is called (which waits for a
// save in progress), so that a run that dies is found by its silence.
func heartbeat(ctx context.Context, repo Repository, e Entry, now func() time.Time) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(HeartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				e.Heartbeat = now()
				Save(ctx, repo, e) // a lost beat is made up by the next
			}
		}
	}()
	return func() { cancel(); <-done }
}

// removeFiles removes what a failed run wrote, all but its entry.
func removeFiles(ctx context.Context, repo Repository, e Entry) error {
	keys, err := repo.objects.List(ctx, entryKey(e.Cluster, e.ID))
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if name := strings.TrimPrefix(k, entryKey(e.Cluster, e.ID)); name != entryFile && name != claimName {
			errs = append(errs, repo.objects.Remove(ctx, k))
		}
	}
	return errors.Join(errs...)
}

// storeFiles copies the files under dir/sub into the backup's place in
// the repository, by path relative to dir, with their SHA-256 computed as
// they are copied.
func storeFiles(ctx context.Context, job Job, dir, sub string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name, _ := filepath.Rel(dir, path)
		f, err := storeFile(ctx, job, path, filepath.ToSlash(name))
		out = append(out, f)
		return err
	})
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

func storeFile(ctx context.Context, job Job, path, name string) (File, error) {
	in, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	w, err := job.Repo.create(ctx, job.Cluster, job.ID, name)
	if err != nil {
		return File{}, fmt.Errorf("store %s: %w", name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), in)
	if err != nil {
		w.Abort()
		return File{}, fmt.Errorf("store %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return File{}, fmt.Errorf("store %s: %w", name, err)
	}
	return File{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func basebackup(ctx context.Context, job Job, data string) error {
	bin, err := toolPath("pg_basebackup")
	if err != nil {
		return err
	}
	host, port, err := splitAddr(job.Source)
	if err != nil {
		return err
	}
	args := []string{"-h", host, "-p", port, "-U", job.User, "-w",
		"-D", data, "-F", "t", "-X", "stream", "-c", "fast", "--compress=client-zstd",
		"--manifest-checksums=SHA256", "-l", "dbha " + job.ID, "-P"}
	if job.MaxRate > 0 {
		// pg_basebackup takes 32 kB/s to 1 GB/s.
		args = append(args, fmt.Sprintf("--max-rate=%dk", min(max(job.MaxRate/1024, 32), 1024*1024)))
	}
	pass, cleanup, err := passFile(host, port, job.User, job.Password)
	if err != nil {
		return err
	}
	defer cleanup()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "PGPASSFILE="+pass, "PGAPPNAME=dbha-backup"), libpqTLS(job.TLS)...)
	var stderr strings.Builder
	cmd.Stderr = io.MultiWriter(&stderr, basebackupProgress{job.Progress})
	// pg_basebackup streams the WAL from a child process of its own, which
	// writes into the backup's directory too. Both run in a group of their
	// own: a cancelled run kills the group, and every run ends it before
	// returning, so that nothing still writes there, or holds the space of
	// a file already removed, when a failed run removes its files.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err = cmd.Run()
	if cmd.Process != nil {
		endGroup(cmd.Process.Pid, 5*time.Second)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pg_basebackup from %s stopped: %w", job.Source, context.Cause(ctx))
		}
		return fmt.Errorf("pg_basebackup from %s: %w: %s", job.Source, err, lastLine(stderr.String()))
	}
	return nil
}

// endGroup kills what is left of the process group pgid and waits, at most
// bound, until none of it is left. A process that already exited closes
// its output before its other files, so its parent's Wait can return
// while it still holds a file open.
func endGroup(pgid int, bound time.Duration) {
	syscall.Kill(-pgid, syscall.SIGKILL)
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if syscall.Kill(-pgid, 0) == syscall.ESRCH {
			return
		}
	}
}

// basebackupProgress reads pg_basebackup's -P lines ("123/4567 kB (2%),
// 0/1 tablespace") into a meter.
type basebackupProgress struct{ m *Meter }

var basebackupLine = regexp.MustCompile(`(\d+)/(\d+) kB`)

func (p basebackupProgress) Write(b []byte) (int, error) {
	if p.m == nil {
		return len(b), nil
	}
	all := basebackupLine.FindAllSubmatch(b, -1)
	if len(all) > 0 {
		last := all[len(all)-1]
		done, _ := strconv.ParseInt(string(last[1]), 10, 64)
		total, _ := strconv.ParseInt(string(last[2]), 10, 64)
		p.m.Set(done*1024, total*1024)
	}
	return len(b), nil
}

// compressWAL compresses the WAL that pg_basebackup streamed beside the
// base (it compresses only the base itself) with zstd, and returns its
// size before compression.
func compressWAL(ctx context.Context, data string) (int64, error) {
	wal := filepath.Join(data, "pg_wal.tar")
	st, err := os.Stat(wal)
	if err != nil {
		return 0, fmt.Errorf("the backup's WAL: %w", err)
	}
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		return 0, fmt.Errorf("zstd not found: install it (make deps): %w", err)
	}
	if out, err := exec.CommandContext(ctx, zstd, "-q", "--rm", "-3", wal).CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("compress the backup's WAL: %w", context.Cause(ctx))
		}
		return 0, fmt.Errorf("compress the backup's WAL: %w: %s", err, lastLine(string(out)))
	}
	return st.Size(), nil
}

// manifest is the part of a PostgreSQL backup_manifest dbha reads.
type manifest struct {
	Files []struct {
		Path string `json:"Path"`
		Size int64  `json:"Size"`
	} `json:"Files"`
	WALRanges []struct {
		Timeline uint32 `json:"Timeline"`
		Start    string `json:"Start-LSN"`
		End      string `json:"End-LSN"`
	} `json:"WAL-Ranges"`
}

// ErrTablespaces: the cluster has tablespaces besides its data directory,
// which dbha does not restore yet: a backup of it is refused.
var ErrTablespaces = errors.New("the cluster has tablespaces outside its data directory")

// noTablespaces refuses a base backup that holds a tablespace (pg_basebackup
// writes one <oid>.tar per tablespace beside base.tar): dbha restores the
// base alone, and the base's tablespace_map names the live tablespaces'
// paths, which a throwaway server on the restored copy would then write
// into.
func noTablespaces(data string) error {
	names, err := os.ReadDir(data)
	if err != nil {
		return err
	}
	var extra []string
	for _, n := range names {
		switch n.Name() {
		case "base.tar.zst", "base.tar", "pg_wal.tar", "pg_wal.tar.zst", "backup_manifest":
		default:
			extra = append(extra, n.Name())
		}
	}
	if len(extra) > 0 {
		return fmt.Errorf("%w (%s): dbha does not restore tablespaces yet, and a restore of the base alone would point at the live tablespaces' paths; the backup is refused", ErrTablespaces, strings.Join(extra, ", "))
	}
	return nil
}

// describePostgres fills the entry from the backup's files and manifest.
func describePostgres(e *Entry, data string) error {
	raw, err := os.ReadFile(filepath.Join(data, "backup_manifest"))
	if err != nil {
		return fmt.Errorf("read the backup manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("parse the backup manifest: %w", err)
	}
	if len(m.WALRanges) == 0 {
		return fmt.Errorf("the backup manifest has no WAL range")
	}
	w := m.WALRanges[len(m.WALRanges)-1]
	start, err := topology.ParseLSN(w.Start)
	if err != nil {
		return fmt.Errorf("manifest Start-LSN: %w", err)
	}
	end, err := topology.ParseLSN(w.End)
	if err != nil {
		return fmt.Errorf("manifest End-LSN: %w", err)
	}
	e.Position, e.StopPosition = topology.PostgresAt(start, w.Timeline), topology.PostgresAt(end, w.Timeline)
	for _, f := range m.Files {
		e.Bytes += f.Size
	}
	e.Tools = map[string]string{"pg_basebackup": toolVersion("pg_basebackup")}
	return nil
}

// hashFiles lists the files under dir/sub with their SHA-256, by path
// relative to dir.
func hashFiles(dir, sub string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := hashFile(path)
		if err != nil {
			return err
		}
		f.Name, _ = filepath.Rel(dir, path)
		out = append(out, f)
		return nil
	})
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

func hashFile(path string) (File, error) {
	in, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer in.Close()
	h := sha256.New()
	n, err := io.Copy(h, in)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// toolPath finds a PostgreSQL program in the newest version's bin
// directory, else on $PATH.
func toolPath(name string) (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: install the PostgreSQL client programs (make deps)", name)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// toolVersion is the first line a program prints for --version (on
// stdout or stderr), or "" when it cannot say.
func toolVersion(name string) string {
	p, err := toolPath(name)
	if err != nil {
		return ""
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func splitAddr(addr string) (host, port string, err error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", "", fmt.Errorf("%q is not host:port", addr)
	}
	return addr[:i], addr[i+1:], nil
}

// lastLine is what a tool's output says went wrong: its lines that say
// "error" (the first is often the cause, the last its consequence), else
// its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	var errs []string
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs[max(0, len(errs)-3):], "; ")
	}
	return lines[len(lines)-1]
}

func errorsJoin(a, b error) error {
	if b == nil {
		return a
	}
	return fmt.Errorf("%w (and recording it failed: %v)", a, b)
}

// passFile writes a libpq password file (mode 0600) with one line, for
// host, port and user, and returns its path and what removes it: the
// password reaches the tool neither in its arguments nor in its
// environment. A backslash or a colon in a field is escaped; a line break
// cannot be written in the format, and is refused.
// libpqTLS is the environment that makes a libpq tool encrypt as t says,
// with libpq's own meanings of the modes (which are dbha's). Disabled:
// nothing, as before. Pure.
func libpqTLS(t *tlsconfig.Settings) []string {
	if !t.Enabled() {
		return nil
	}
	env := []string{"PGSSLMODE=" + string(t.Mode)}
	if t.Files.CA != "" {
		env = append(env, "PGSSLROOTCERT="+t.Files.CA)
	}
	if t.Files.Cert != "" {
		env = append(env, "PGSSLCERT="+t.Files.Cert, "PGSSLKEY="+t.Files.Key)
	}
	return env
}

func passFile(host, port, user, password string) (string, func(), error) {
	if strings.ContainsAny(user+password, "\r\n") {
		return "", nil, errors.New("a PostgreSQL user or password with a line break cannot be given to pg_basebackup")
	}
	f, err := os.CreateTemp("", "dbha-pgpass-*")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace
	_, err = fmt.Fprintf(f, "%s:%s:*:%s:%s\n", esc(host), esc(port), esc(user), esc(password))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}
