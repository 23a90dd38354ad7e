package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dbha/dbha/topology"
)

// ReseedChoice is what a reseed will do: which backup rebuilds which
// instance, to follow which primary.
type ReseedChoice struct {
	Instance string
	Primary  string
	Backup   Entry
	// Running: the instance answered when the choice was made. Reseed
	// stops it either way: one that does not answer may still run.
	Running bool
}

// ChooseReseed decides a reseed of instance from s and the catalog: never
// the primary; a healthy replica only with force; from the newest
// verified backup (or backupID, which must be done and verified). It is
// pure.
func ChooseReseed(s topology.Snapshot, instance string, entries []Entry, backupID string, force bool) (ReseedChoice, error) {
	in, ok := s.Instance(instance)
	switch {
	case !ok:
		return ReseedChoice{}, fmt.Errorf("%s is not an instance of cluster %s", instance, s.Cluster)
	case s.Primary == "":
		return ReseedChoice{}, fmt.Errorf("cluster %s has no primary now: a reseeded replica would have nothing to follow", s.Cluster)
	case instance == s.Primary:
		return ReseedChoice{}, fmt.Errorf("%s is the primary of %s: reseeding it would throw away the cluster's writes; switch over first", instance, s.Cluster)
	case in.Reachable && healthyReplica(s, in) && !force:
		return ReseedChoice{}, fmt.Errorf("%s is a healthy replica of %s: add --force to rebuild it anyway", instance, s.Primary)
	}
	var chosen *Entry
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if backupID != "" && e.ID != backupID {
			continue
		}
		if e.Status == Done && e.Verified() {
			chosen = &entries[i]
			break
		}
		if backupID != "" {
			return ReseedChoice{}, fmt.Errorf("backup %s is %s and %s: reseed only from a verified backup (dbha backup verify %s)", e.ID, e.Status, verifiedWord(e), e.ID)
		}
	}
	if chosen == nil {
		if backupID != "" {
			return ReseedChoice{}, fmt.Errorf("no backup %s of cluster %s", backupID, s.Cluster)
		}
		return ReseedChoice{}, fmt.Errorf("cluster %s has no verified backup: take one (dbha backup run) and verify it (dbha backup verify)", s.Cluster)
	}
	return ReseedChoice{Instance: instance, Primary: s.Primary, Backup: *chosen, Running: in.Reachable}, nil
}

func verifiedWord(e Entry) string {
	if e.Verification == nil {
		return "never verified"
	}
	if e.Verification.OK {
		return "verified"
	}
	return "failed its verification"
}

func healthyReplica(s topology.Snapshot, in topology.Instance) bool {
	r := in.Replication
	return in.Role == topology.RoleReplica && r != nil && r.Source == s.Primary && r.IORunning && r.SQLRunning && in.Errant.String() == ""
}

// Host stops and starts instances on the host whose files dbha rebuilds.
type Host interface {
	Stop(ctx context.Context, addr string) error
	Start(ctx context.Context, addr string) error
}

// ReseedOptions carry out a ReseedChoice.
type ReseedOptions struct {
	Repo    Repository
	DataDir string // the instance's data directory on this host
	// DataDirGiven: the operator (or the lab, which records whose
	// directory is whose) named DataDir for this instance. An instance
	// that does not answer here cannot say where its files are; its
	// DataDir, when it holds files, is then rebuilt only on this word.
	DataDirGiven bool
	Host         Host
	// Owner owns the rebuilt files when the data directory does not
	// exist yet; otherwise its current owner does.
	Owner Owner
	Roles []string
	// Replication attaches the started instance to the primary, from the
	// backup's position; Discover shows whether it then replicates.
	Replication Replication
	Discover    func(context.Context) (topology.Snapshot, error)
	Now         func() time.Time
}

// Reseeded says what a reseed did.
type Reseeded struct {
	Instance string            `json:"instance"`
	Backup   string            `json:"backup"`
	Primary  string            `json:"primary"`
	Position topology.Position `json:"position"`
	// Previous is where the instance's former data directory was moved;
	// delete it once the instance is known good.
	Previous string `json:"previous,omitempty"`
}

// Reseed rebuilds c.Instance from c.Backup. First it proves that
// o.DataDir is the instance's, by asking the process serving its port on
// this host (proveDataDir), or, when none answers, on o.DataDirGiven;
// then it stops the instance, whether it answered or not (a hung or
// unreachable server may still run), and proves it stopped: no process
// works in the directory, no lock is held on its files, its port takes no
// connection. It moves the data directory aside (nothing is deleted, so
// there is a way back: a mount point's contents go into a hidden directory
// inside it, since the mount point itself cannot move); restores the
// backup in its place, keeping the instance's own configuration files
// (PostgreSQL keeps them in the data directory); starts it and attaches it
// to the primary at the backup's position.
func Reseed(ctx context.Context, c ReseedChoice, o ReseedOptions) (Reseeded, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	out := Reseeded{Instance: c.Instance, Backup: c.Backup.ID, Primary: c.Primary}
	if err := CheckFiles(ctx, o.Repo, c.Backup); err != nil {
		return out, err
	}
	if err := proveOwnDir(ctx, c.Instance, o.DataDir, o.DataDirGiven); err != nil {
		return out, err
	}
	owner, err := ownerOf(o.DataDir, o.Owner)
	if err != nil {
		return out, err
	}
	stopErr := o.Host.Stop(ctx, c.Instance)
	if err := waitStopped(ctx, c.Instance, o.DataDir, time.Minute); err != nil {
		return out, fmt.Errorf("stop %s before rebuilding it: %w", c.Instance, errors.Join(stopErr, err))
	}
	keep, err := ownConfig(c.Backup.Engine, o.DataDir)
	if err != nil {
		return out, err
	}
	stamp := now().UTC().Format("20060102T150405Z")
	aside, err := moveAside(o.DataDir, stamp)
	if err != nil {
		return out, err
	}
	out.Previous = aside
	back := func(err error) error {
		if out.Previous == "" {
			return err
		}
		return fmt.Errorf("%w; the former data directory is at %s (move it back to %s to undo)", err, out.Previous, o.DataDir)
	}
	besides := "" // the former files kept inside a mount point
	if filepath.Dir(aside) == filepath.Clean(o.DataDir) {
		besides = filepath.Base(aside)
	}
	r, err := Restore(ctx, o.Repo, c.Backup, RestoreOptions{To: o.DataDir, Owner: owner, Roles: o.Roles, besides: besides})
	if err != nil {
		return out, back(err)
	}
	out.Position = r.Position
	if c.Backup.Engine == topology.Postgres {
		if err := standbyConfig(o.DataDir, keep, c.Instance, owner); err != nil {
			return out, back(err)
		}
	}
	if err := o.Host.Start(ctx, c.Instance); err != nil {
		return out, back(fmt.Errorf("start %s on its rebuilt files: %w", c.Instance, err))
	}
	if err := attach(ctx, c, o.Replication, o.Discover); err != nil {
		return out, back(fmt.Errorf("attach %s to %s: %w", c.Instance, c.Primary, err))
	}
	return out, nil
}

// proveOwnDir: a data directory with files in it is rebuilt only when
// the instance, asked through the process serving its port here, works in
// it, or, when nothing serves that port here, on the operator's word.
func proveOwnDir(ctx context.Context, instance, dir string, given bool) error {
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		return nil // nothing there to lose
	}
	err := proveDataDir(ctx, instance, dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotListening) && given:
		return nil
	case errors.Is(err, errNotListening):
		return fmt.Errorf("%s does not answer on this host, so it cannot say whether %s is its data directory: pass --datadir %s to rebuild it on your word (%v)", instance, dir, dir, err)
	}
	return fmt.Errorf("refusing to rebuild %s: %w", dir, err)
}

// moveAside moves a data directory's files out of the way and returns
// where: the directory itself to dir.before-reseed-<stamp>, or, for a
// mount point, its contents into dir/.before-reseed-<stamp>. "" when there
// was nothing to move.
func moveAside(dir, stamp string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return "", nil
	}
	mount, err := isMountPoint(dir)
	if err != nil {
		return "", err
	}
	if !mount {
		to := fmt.Sprintf("%s.before-reseed-%s", strings.TrimRight(dir, "/"), stamp)
		if err := os.Rename(dir, to); err != nil {
			return "", fmt.Errorf("move %s aside: %w", dir, err)
		}
		return to, nil
	}
	to := filepath.Join(dir, ".before-reseed-"+stamp)
	if err := os.Mkdir(to, 0o700); err != nil {
		return "", fmt.Errorf("move the files of %s (a mount point) aside: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return to, fmt.Errorf("move %s aside into %s: %w", e.Name(), to, err)
		}
	}
	return to, nil
}

// ownerOf is the owner of an existing data directory, else def.
func ownerOf(dir string, def Owner) (Owner, error) {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return def, nil
	}
	if err != nil {
		return Owner{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return def, nil
	}
	return Owner{Name: fmt.Sprintf("uid %d", sys.Uid), UID: int(sys.Uid), GID: int(sys.Gid)}, nil
}

// ownConfig reads the configuration files a PostgreSQL instance keeps in
// its data directory (postgresql.conf, postgresql.auto.conf, pg_hba.conf
// and any other *.conf at the top), which are the instance's and not the
// backup source's.
func ownConfig(engine topology.Engine, dir string) (map[string][]byte, error) {
	if engine != topology.Postgres {
		return nil, nil
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	out := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[filepath.Base(n)] = b
	}
	return out, nil
}

// standbyConfig makes a restored PostgreSQL directory a standby: its own
// configuration files back, standby.signal, and a replication slot of its
// own (not the backup source's) when it had none.
func standbyConfig(dir string, keep map[string][]byte, instance string, owner Owner) error {
	for name, b := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	if _, kept := keep["postgresql.auto.conf"]; !kept {
		auto := filepath.Join(dir, "postgresql.auto.conf")
		b, _ := os.ReadFile(auto)
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "primary_conninfo") && !strings.HasPrefix(l, "primary_slot_name") && l != "" {
				lines = append(lines, l)
			}
		}
		lines = append(lines, fmt.Sprintf("primary_slot_name = '%s'", SlotFor(instance)), "")
		if err := os.WriteFile(auto, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600); err != nil {
		return err
	}
	return owner.Chown(dir)
}

// SlotFor names the replication slot of a new standby after its address.
func SlotFor(addr string) string {
	return "dbha_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(addr))
}
