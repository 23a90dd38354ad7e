package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbha/dbha/binlog"
	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Config configures a Stream.
type Config struct {
	Cluster string
	// Dir is the store directory (binlog.Dir(stateDir, cluster)); created
	// if missing.
	Dir string
	// User and Password log in to the primary; the account needs
	// REPLICATION SLAVE and BINLOG MONITOR (SHOW BINARY LOGS / BINLOG
	// EVENTS when a gap is found), and REPLICATION MASTER ADMIN if dbha is
	// to check replicas' server_ids (SHOW SLAVE HOSTS). The password is
	// never logged, put in an error, or passed on a command line.
	User     string
	Password string
	// TLS encrypts the session and the stream (nil: clear text).
	TLS *tlsconfig.Settings
	// ServerID is dbha's own server_id; it must differ from every
	// server's. A session refuses to start when the primary, a replica it
	// lists, or a server in its binlog uses it.
	ServerID uint32
	Flavor   string // "mariadb" (tested) or "mysql"
	// SemiSync makes dbha a semi-sync replica: the primary's commits wait
	// for dbha, which acknowledges a transaction only after it is fsynced.
	// It takes effect only while the primary has rpl_semi_sync_master_enabled
	// ON (Status.LastError says so otherwise).
	SemiSync bool
	// Heartbeat is how often an idle primary sends a heartbeat (default
	// 1s); a primary silent for 2×Heartbeat+1s is taken as gone.
	Heartbeat time.Duration
	Primary   binlog.PrimaryFunc
	// KeepFor returns the positions whose missing transactions retention
	// must keep (see binlog.KeepFunc). nil, or an empty answer, leaves
	// retention to age and size alone: a cluster without replicas has
	// nobody to protect, and a store that may grow without bound would
	// eventually fill the disk and stop acknowledging.
	KeepFor   binlog.KeepFunc
	Retention binlog.Retention // applied at most once a minute
	// MaxFileSize starts a new store file once a file reaches it (between
	// transactions); default 256 MiB.
	MaxFileSize int64
	// Hold, when set, lets a recovery cut the stream from the primary it
	// replaces (see binlog.Hold); nil: nothing cuts it.
	Hold   *binlog.Hold
	Logger *slog.Logger // may be nil
}

// Defaults.
const (
	DefaultHeartbeat   = time.Second
	DefaultMaxFileSize = 256 << 20
)

// Errors Run returns; callers branch on them with errors.Is.
var (
	// ErrBroken: the stream cannot go on without an operator (the primary
	// purged binlogs dbha needs, dbha's position is not in the primary's
	// history, or dbha's server_id is taken). Status.Broken says what and
	// what to do. Nothing was skipped.
	ErrBroken = errors.New("stream broken")
	// ErrServerIDInUse: another server uses Config.ServerID (also ErrBroken).
	ErrServerIDInUse = errors.New("server_id in use")
	// ErrLocked: another process is writing the store.
	ErrLocked = errors.New("store is locked by another stream")
)

// Stream keeps a copy of a MariaDB/MySQL primary's binlog in a store
// directory, following the primary through switchovers.
type Stream struct {
	cfg Config
	log *slog.Logger
	st  *binlog.Tracker

	mu        sync.Mutex
	lastPrune time.Time
	warned    map[string]bool // warnings given once per Stream
}

// New checks cfg and returns a stream that Run runs.
func New(cfg Config) (*Stream, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("cluster", cfg.Cluster, "engine", cfg.Flavor)
	engine := topology.MariaDB
	if cfg.Flavor == mysql.MySQLFlavor {
		engine = topology.MySQL
	}
	return &Stream{cfg: cfg, log: log, st: binlog.NewTracker(cfg.Dir, cfg.Cluster, engine), warned: map[string]bool{}}, nil
}

func validate(cfg *Config) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.Cluster == "" {
		bad("stream config: Cluster is empty")
	}
	if cfg.Dir == "" {
		bad("stream config: Dir is empty")
	}
	if cfg.User == "" {
		bad("stream config: User is empty")
	}
	if cfg.ServerID == 0 {
		bad("stream config: ServerID must not be 0")
	}
	if cfg.Flavor != mysql.MariaDBFlavor && cfg.Flavor != mysql.MySQLFlavor {
		bad("stream config: Flavor %q: want mariadb or mysql", cfg.Flavor)
	}
	if cfg.Primary == nil {
		bad("stream config: Primary is nil")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	return errors.Join(errs...)
}

// Status returns what the stream says about itself now (the same value it
// publishes in its store directory).
func (s *Stream) Status() binlog.Status { return s.st.Status() }

// Run streams until ctx is done, reconnecting after any failure with a
// bounded backoff (100 ms doubling to 5 s; 5 s at once for a login that the
// primary refuses). It returns nil when ctx is done, an error wrapping
// ErrBroken when the stream cannot go on by itself (see Status.Broken),
// and ErrLocked when another process writes the store.
func (s *Stream) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("create stream store: %w", err)
	}
	unlock, err := lockStore(s.cfg.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	defer s.st.Start(time.Second, func(err error) { s.log.Error("cannot publish the stream status", "err", err) })()

	wait := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		started := time.Now()
		// Taken before the session: a recovery that releases its cut while
		// the session ends still wakes the wait below.
		released := s.cfg.Hold.Released()
		err := s.session(ctx)
		s.st.Disconnected()
		if ctx.Err() != nil {
			return nil
		}
		var delay time.Duration
		switch {
		case errors.Is(err, binlog.ErrHeld):
			s.st.Failed(err)
			s.log.Info("stream cut for a recovery; it follows the new primary once the recovery ends", "why", err.Error())
			wait.reset()
			select {
			case <-ctx.Done():
				return nil
			case <-released:
			case <-time.After(wait.max):
			}
			continue
		case errors.Is(err, ErrBroken):
			s.st.Broken(brokenText(err))
			s.log.Error("stream broken: an operator must act", "err", err)
			return err
		case errors.Is(err, errReconnect):
			s.log.Info("reconnecting", "reason", err)
			wait.reset()
			continue
		case isAuthError(err):
			delay = wait.max
		default:
			if time.Since(started) > 10*time.Second {
				wait.reset()
			}
			delay = wait.next()
		}
		s.st.Failed(err)
		s.log.Warn("stream session ended; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-released: // a recovery ended: its new primary is there to follow now
			wait.reset()
		case <-time.After(delay):
		}
	}
}

// errReconnect ends a session for a reason that calls for an immediate
// new one: the primary moved, or its semi-sync setting changed.
var errReconnect = errors.New("reconnect")

// brokenError carries the operator-facing description of a broken stream.
type brokenError struct {
	sentinel error
	text     string
}

func (e *brokenError) Error() string { return "stream broken: " + e.text }
func (e *brokenError) Unwrap() []error {
	if e.sentinel == nil {
		return []error{ErrBroken}
	}
	return []error{ErrBroken, e.sentinel}
}

func brokenText(err error) string {
	var b *brokenError
	if errors.As(err, &b) {
		return b.text
	}
	return err.Error()
}

func isAuthError(err error) bool {
	switch mysqlErrorNumber(err) {
	case 1045, 1698, 1044: // access denied (password, plugin, database)
		return true
	}
	return false
}

// backoff doubles a delay from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.min), b.max)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// lockStore takes an exclusive lock on the store so that two processes
// never write it at once; the lock dies with the process.
func lockStore(dir string) (func(), error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock stream store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: %s (held by pid %s): %v", ErrLocked, dir, string(holder), err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	}
	return func() { f.Close() }, nil
}

// warnOnce logs a warning the first time key is seen by this Stream.
func (s *Stream) warnOnce(key, msg string, args ...any) {
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}

// pruneDue reports whether retention is due (at most once a minute).
func (s *Stream) pruneDue(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastPrune) < time.Minute {
		return false
	}
	s.lastPrune = now
	return true
}
