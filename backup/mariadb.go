package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sync/atomic"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
	"github.com/dbha/dbha/topology/mysql"
)

// gtidLine is how mariadb-backup reports the backup's consistent point.
var gtidLine = regexp.MustCompile(`GTID of the last change '([^']*)'`)

// SourceDataDir asks a MariaDB server where its files are. That is only
// where mariadb-backup will look: the backup proves, on the server's host,
// that the directory there is the server's (proveDataDirScript).
func SourceDataDir(ctx context.Context, addr, user, password string, t *tlsconfig.Settings) (string, error) {
	db, err := mysql.Open(addr, user, password, t)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var dir sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT @@datadir").Scan(&dir); err != nil {
		return "", fmt.Errorf("ask %s for its datadir: %w", addr, err)
	}
	if dir.String == "" {
		return "", fmt.Errorf("%s gave no datadir", addr)
	}
	return dir.String, nil
}

// RunMariaDB takes a backup of job.Source with mariadb-backup, which reads
// the server's files and so runs where they are: on this host, or through
// job.Remote on the source's. job.DataDir is the server's datadir there
// (SourceDataDir); before anything is read, a script on that host proves
// that it is the directory of the process serving job.Source, else the
// backup is refused with ErrNotTheSource. The stream (xbstream) comes back
// on the command's output and is compressed with zstd into the repository
// as it comes; the position is the GTID the tool reports for the
// consistent point. The account needs mariadb-backup's privileges (RELOAD,
// PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR); its password
// reaches the tool on the command's input, into a private option file
// that lives as long as the run.
func RunMariaDB(ctx context.Context, job Job) (Entry, error) {
	return run(ctx, job, topology.MariaDB, func(e *Entry) error {
		bytes, gtid, file, err := streamMariaDB(ctx, job, mariadbFile)
		if err != nil {
			return err
		}
		if e.Position, err = topology.ParseMariaDB(gtid); err != nil {
			return err
		}
		file.Name = mariadbFile
		e.Files, e.Bytes, e.CompressedBytes = []File{file}, bytes, file.Size
		e.Tools = map[string]string{"mariadb-backup": toolVersion("mariadb-backup"), "zstd": toolVersion("zstd")}
		return nil
	})
}

// mariadbFile is a MariaDB backup's one file: the compressed stream.
const mariadbFile = "backup.xb.zst"

// streamMariaDB runs mariadb-backup | zstd into the repository's file
// name and returns the bytes of the stream, the GTID of the consistent
// point, and the file's size and SHA-256 (before any encryption),
// computed as it is written (one pass over the data, not two).
func streamMariaDB(ctx context.Context, job Job, name string) (int64, string, File, error) {
	if _, err := exec.LookPath("zstd"); err != nil {
		return 0, "", File{}, fmt.Errorf("zstd not found: install it (make deps): %w", err)
	}
	host, port, err := splitAddr(job.Source)
	if err != nil {
		return 0, "", File{}, err
	}
	script, err := mariadbBackupScript(ctx, job, host, port)
	if err != nil {
		return 0, "", File{}, err
	}
	f, err := job.Repo.create(ctx, job.Cluster, job.ID, name)
	if err != nil {
		return 0, "", File{}, fmt.Errorf("backup file: %w", err)
	}
	kept := false
	defer func() {
		if !kept {
			f.Abort()
		}
	}()

	tt, err := mysql.ServerHostToolTLS(job.TLS)
	if err != nil {
		return 0, "", File{}, err
	}
	backup := onHost(ctx, job.Remote, host, script)
	backup.Stdin = bytes.NewReader(mysql.ClientOptions(job.User, job.Password, host, port, tt))
	compress := exec.CommandContext(ctx, "zstd", "-q", "-3", "-c")
	compressed, err := compress.StdoutPipe()
	if err != nil {
		return 0, "", File{}, err
	}
	h := sha256.New()
	var written int64
	var writeErr error
	writeDone := make(chan struct{})
	stdin, err := compress.StdinPipe()
	if err != nil {
		return 0, "", File{}, err
	}
	stdout, err := backup.StdoutPipe()
	if err != nil {
		return 0, "", File{}, err
	}
	logPipe, err := backup.StderrPipe()
	if err != nil {
		return 0, "", File{}, err
	}
	if err := compress.Start(); err != nil {
		return 0, "", File{}, fmt.Errorf("start zstd: %w", err)
	}
	go func() {
		defer close(writeDone)
		written, writeErr = io.Copy(io.MultiWriter(f, h), compressed)
		if writeErr != nil {
			io.Copy(io.Discard, compressed) // let the tools finish; the run fails
		}
	}()
	if err := backup.Start(); err != nil {
		stdin.Close()
		compress.Wait()
		return 0, "", File{}, fmt.Errorf("start mariadb-backup on %s's host: %w", job.Source, err)
	}
	var gtid, last atomic.Value
	gtid.Store("")
	last.Store("")
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(logPipe)
		for sc.Scan() {
			line := sc.Text()
			last.Store(line)
			if m := gtidLine.FindStringSubmatch(line); m != nil {
				gtid.Store(m[1])
			}
		}
	}()
	if len(job.Remote) == 0 {
		total, _ := binlog.DirBytes(job.DataDir) // what the backup copies, near enough for an estimate
		job.Progress.SetTotal(total)
	}
	n, copyErr := io.Copy(stdin, countingReader(stdout, job.Progress.Add))
	stdin.Close()
	<-logDone
	backupErr := backup.Wait()
	<-writeDone
	compressErr := compress.Wait()
	switch {
	case ctx.Err() != nil:
		return n, "", File{}, fmt.Errorf("mariadb-backup from %s stopped: %w", job.Source, context.Cause(ctx))
	case writeErr != nil:
		return n, "", File{}, fmt.Errorf("write the backup file: %w", writeErr)
	case backupErr != nil:
		if err := refusal(last.Load().(string)); err != nil {
			return n, "", File{}, fmt.Errorf("backup of %s: %w", job.Source, err)
		}
		return n, "", File{}, fmt.Errorf("mariadb-backup from %s: %w: %s", job.Source, backupErr, last.Load())
	case copyErr != nil || compressErr != nil:
		return n, "", File{}, fmt.Errorf("compress the backup stream: %v %v", copyErr, compressErr)
	case gtid.Load().(string) == "":
		return n, "", File{}, fmt.Errorf("mariadb-backup reported no GTID for the consistent point")
	}
	kept = true
	if err := f.Close(); err != nil {
		return n, "", File{}, fmt.Errorf("backup file: %w", err)
	}
	return n, gtid.Load().(string), File{Size: written, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// mariadbBackupScript is what runs on the source's host: prove job.DataDir
// is the source's, write the option file read from the input into a
// private directory removed on exit, and stream the backup to the output.
func mariadbBackupScript(ctx context.Context, job Job, host, port string) (string, error) {
	addrs, err := listenAddrs(ctx, host, port)
	if err != nil {
		return "", err
	}
	args := []string{"--backup", "--stream=xbstream", "--datadir=" + job.DataDir, "--slave-info"}
	if job.MaxRate > 0 {
		// --throttle counts 1 MiB read operations per second.
		args = append(args, fmt.Sprintf("--throttle=%d", max(job.MaxRate>>20, 1)))
	}
	return "set -eu\n" +
		proveDataDirScript(addrs, port, job.DataDir) +
		`command -v mariadb-backup >/dev/null || { echo "mariadb-backup is not installed on $(hostname)" >&2; exit 127; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dbha-backup.XXXXXX")
trap 'rm -rf "$work"' EXIT
(umask 077 && cat > "$work/client.cnf")
mariadb-backup --defaults-extra-file="$work/client.cnf" --target-dir="$work/target" ` + shellLine(args) + "\n", nil
}
