package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockedFiles are the files a running MariaDB server holds a POSIX lock
// on (InnoDB's system tablespace, Aria's control file): a lock seen there
// is a server at work on the directory, even one in another PID namespace.
var lockedFiles = []string{"ibdata1", "aria_log_control"}

// stillRunning says what shows that a server still works on dir, or ""
// when nothing does: a process on this host whose working directory is dir
// (MariaDB's server and PostgreSQL's postmaster work in their data
// directory), a pid file in dir naming a live process, a lock held on one
// of lockedFiles, or a connection to addr that is accepted.
func stillRunning(addr, dir string) (string, error) {
	want, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return "", err
	}
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		// A process whose working directory cannot be seen (another
		// user's, to a non-root dbha; one outside this namespace) is
		// passed over: the pid files and locks below still speak for the
		// server.
		cwd, err := os.Stat(filepath.Join("/proc", p.Name(), "cwd"))
		if err == nil && os.SameFile(cwd, want) {
			comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
			return fmt.Sprintf("process %s (%s) works in %s", p.Name(), strings.TrimSpace(string(comm)), dir), nil
		}
	}
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, f := range pidFiles {
		if why := livePID(f); why != "" {
			return why, nil
		}
	}
	for _, name := range lockedFiles {
		if locked, err := lockedByOther(filepath.Join(dir, name)); err != nil {
			return "", err
		} else if locked != "" {
			return locked, nil
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond); err == nil {
		c.Close()
		return addr + " still accepts connections", nil
	}
	return "", nil
}

// livePID reports a pid file (MariaDB's, PostgreSQL's postmaster.pid)
// whose first line names a process that exists. A stale file, left by a
// crash, names none (or, rarely, an unrelated process that took its
// number: then the reseed waits and is refused, never wrong).
func livePID(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return ""
	}
	if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return fmt.Sprintf("%s names process %d (%s), which runs", file, pid, strings.TrimSpace(string(comm)))
	}
	return ""
}

// lockedByOther reports a POSIX write lock another process holds on file.
func lockedByOther(file string) (string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return "", fmt.Errorf("ask for locks on %s: %w", file, err)
	}
	if lk.Type == syscall.F_UNLCK {
		return "", nil
	}
	return fmt.Sprintf("process %d holds a lock on %s", lk.Pid, file), nil
}

// waitStopped waits, at most limit, until stillRunning finds nothing.
func waitStopped(ctx context.Context, addr, dir string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		why, err := stillRunning(addr, dir)
		switch {
		case err != nil:
			return err
		case why == "":
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%s is still running after %v: %s", addr, limit, why)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// isMountPoint reports whether dir is the root of a filesystem: it is on
// another device than its parent. Such a directory cannot be renamed.
func isMountPoint(dir string) (bool, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	parent, err := os.Stat(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return false, err
	}
	a, aok := st.Sys().(*syscall.Stat_t)
	b, bok := parent.Sys().(*syscall.Stat_t)
	return aok && bok && a.Dev != b.Dev, nil
}
