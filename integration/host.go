package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrMissingBinary is wrapped by the error returned when a server or tool the lab needs is not
// installed. The message names the binary and says how to install it.
var ErrMissingBinary = errors.New("binary not found")

type missingBinaryError struct {
	name  string
	where string
}

func (e *missingBinaryError) Error() string {
	return fmt.Sprintf("%s not found (looked in %s): run \"make deps\"", e.name, e.where)
}

func (e *missingBinaryError) Unwrap() error { return ErrMissingBinary }

// labUserName is the system user that runs the database servers when the lab is started by
// root: MariaDB and PostgreSQL refuse to run as root.
const labUserName = "dbhalab"

// labUser is the OS user the database servers run as.
type labUser struct {
	Name string `json:"name"`
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
}

// lookBinary finds one of the programs the lab runs. PostgreSQL programs come from one
// version's bin directory so that initdb, postgres and pg_basebackup match (Debian's
// /usr/bin wrappers are avoided).
func lookBinary(name string) (string, error) {
	var dirs []string
	switch name {
	case "consul":
		if p := os.Getenv("DBHA_CONSUL_BIN"); p != "" {
			return checkExecutable(name, p, "$DBHA_CONSUL_BIN")
		}
		if root := moduleRoot(); root != "" {
			dirs = append(dirs, filepath.Join(root, "bin"))
		}
	case "minio", "alertmanager":
		if root := moduleRoot(); root != "" {
			dirs = append(dirs, filepath.Join(root, "bin"))
		}
	case "initdb", "postgres", "pg_basebackup", "pg_rewind":
		if d := os.Getenv("DBHA_PG_BINDIR"); d != "" {
			return checkExecutable(name, filepath.Join(d, name), "$DBHA_PG_BINDIR")
		}
		dirs = postgresBinDirs()
	case "mariadbd":
		dirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"}
	}
	for _, d := range dirs {
		if p, err := checkExecutable(name, filepath.Join(d, name), d); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", &missingBinaryError{name: name, where: strings.Join(append(dirs, "$PATH"), ", ")}
}

func checkExecutable(name, path, where string) (string, error) {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", &missingBinaryError{name: name, where: where}
	}
	return path, nil
}

// requireBinaries checks every program `up` will run before anything is started.
func requireBinaries() error {
	var errs []error
	for _, name := range []string{"mariadbd", "mariadb-install-db", "initdb", "postgres", "pg_basebackup", "consul"} {
		if _, err := lookBinary(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// postgresBinDirs lists /usr/lib/postgresql/<version>/bin, newest version first.
func postgresBinDirs() []string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(p)), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return append(matches, "/usr/local/pgsql/bin")
}

// moduleRoot is the nearest directory at or above the working directory that holds go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// resolveLabUser returns the user to run the database servers as: the invoking user, or,
// for root, the system user dbhalab, created on first use.
func resolveLabUser(ctx context.Context) (labUser, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Getuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return labUser{Name: name, UID: os.Getuid(), GID: os.Getgid()}, nil
	}
	u, err := user.Lookup(labUserName)
	if err != nil {
		cmd := exec.CommandContext(ctx, "useradd", "--system", "--user-group", "--no-create-home",
			"--shell", "/usr/sbin/nologin", labUserName)
		out, addErr := cmd.CombinedOutput()
		// A concurrent lab may have created the user in the meantime: look again either way.
		if u, err = user.Lookup(labUserName); err != nil {
			return labUser{}, fmt.Errorf("create system user %s: %v: %s", labUserName, addErr, strings.TrimSpace(string(out)))
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return labUser{Name: u.Username, UID: uid, GID: gid}, nil
}

// credential is what a child runs as: the lab user when we are root and the child is a
// database program, otherwise (nil) the current user.
func (l *Lab) credential(asLabUser bool) *syscall.Credential {
	if !asLabUser || os.Geteuid() != 0 || l.User.UID == 0 {
		return nil
	}
	return &syscall.Credential{Uid: uint32(l.User.UID), Gid: uint32(l.User.GID)}
}

// checkTraversable makes sure the lab user can reach dir: every directory from / down to dir
// must be searchable by it. A lab under /root, for example, is not.
func checkTraversable(dir string, u labUser) error {
	if u.UID == os.Geteuid() {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check lab directory %s: %w", dir, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		perm := st.Mode().Perm()
		bit := perm & 0o001
		switch {
		case int(sys.Uid) == u.UID:
			bit = perm & 0o100
		case int(sys.Gid) == u.GID:
			bit = perm & 0o010
		}
		if bit == 0 {
			return fmt.Errorf("lab directory %s cannot be used: the database servers run as user %s, "+
				"which cannot enter %s (mode %04o, owner uid %d); choose a directory such as /var/tmp/dbha-lab, or chmod o+x %s",
				dir, u.Name, p, perm, sys.Uid, p)
		}
		if p == "/" {
			return nil
		}
	}
}

// mkdirLab creates a directory owned by the lab user with mode 0700: node directories and
// data directories, which the servers must own.
func (l *Lab) mkdirLab(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return l.chownLab(path)
}

// chownLab gives path to the lab user; a no-op when the servers run as the current user.
func (l *Lab) chownLab(path string) error {
	if os.Geteuid() != 0 || l.User.UID == 0 {
		return nil
	}
	if err := os.Lchown(path, l.User.UID, l.User.GID); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, l.User.Name, err)
	}
	return nil
}

// copyTree copies a directory of regular files (a fresh MariaDB data directory), keeping
// modes, owned by the lab user.
func (l *Lab) copyTree(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("copy %s: not a regular file or directory", path)
		}
		return l.chownLab(target)
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// newPassword returns 16 random bytes as 32 hex digits: safe to embed in SQL literals and
// connection strings without quoting.
func newPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// readPassword reads a secret file and insists on the hex alphabet newPassword produces, so a
// hand-edited file can never inject SQL into the statements that embed it.
func readPassword(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	pw := strings.TrimSpace(string(raw))
	if _, err := hex.DecodeString(pw); err != nil || pw == "" {
		return "", fmt.Errorf("secret %s: expected hex digits", path)
	}
	return pw, nil
}

// writeFileAtomic replaces path with data through a temporary file and a rename, so a reader
// never sees half a file.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
