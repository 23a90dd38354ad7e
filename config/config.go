package config

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/schedule"
	"github.com/dbha/dbha/tlsconfig"
	"github.com/dbha/dbha/topology"
)

// Config is the whole of dbha's configuration. It is passed down explicitly;
// no package reads a global copy.
type Config struct {
	// StateDir holds dbha's own state: change-stream stores, audit logs.
	StateDir string    `mapstructure:"state_dir" yaml:"state_dir" json:"state_dir"`
	Consul   Consul    `mapstructure:"consul" yaml:"consul" json:"consul"`
	Probe    Probe     `mapstructure:"probe" yaml:"probe" json:"probe"`
	Manager  Manager   `mapstructure:"manager" yaml:"manager,omitempty" json:"manager"`
	Checks   Checks    `mapstructure:"checks" yaml:"checks,omitempty" json:"checks"`
	HTTP     HTTP      `mapstructure:"http" yaml:"http,omitempty" json:"http"`
	Alerts   Alerts    `mapstructure:"alerts" yaml:"alerts,omitempty" json:"alerts"`
	Clusters []Cluster `mapstructure:"clusters" yaml:"clusters" json:"clusters"`
}

// Manager identifies this dbha process among the managers that watch the
// same clusters (they share observations through Consul).
type Manager struct {
	// Name defaults to the host name.
	Name string `mapstructure:"name" yaml:"name,omitempty" json:"name"`
	// Members names every manager that watches these clusters, this one
	// included: each is a voter in the quorum an automatic failover
	// needs (checks.Voters), counted whether it answers or not. Empty:
	// this manager alone. Every manager must list the same members.
	Members []string `mapstructure:"members" yaml:"members,omitempty" json:"members,omitempty"`
}

// Checks configures failure detection: how often dbha probes, and the
// thresholds of the analysis (checks.Policy).
type Checks struct {
	// Interval between probe cycles of one cluster.
	Interval      time.Duration `mapstructure:"interval" yaml:"interval,omitempty" json:"interval"`
	checks.Policy `mapstructure:",squash" yaml:",inline"`
	// ExternalTimeout bounds a cluster's check_command; ExternalInterval is
	// how often it runs.
	ExternalTimeout  time.Duration `mapstructure:"external_timeout" yaml:"external_timeout,omitempty" json:"external_timeout"`
	ExternalInterval time.Duration `mapstructure:"external_interval" yaml:"external_interval,omitempty" json:"external_interval"`
}

// HTTP is the daemon's API and metrics endpoint.
type HTTP struct {
	// Listen is host:port; empty turns the endpoint off.
	Listen string `mapstructure:"listen" yaml:"listen,omitempty" json:"listen"`
	// TokenFile or TokenEnv hold the bearer token every request but
	// /healthz must carry.
	TokenFile string `mapstructure:"token_file" yaml:"token_file,omitempty" json:"token_file,omitempty"`
	TokenEnv  string `mapstructure:"token_env" yaml:"token_env,omitempty" json:"token_env,omitempty"`
	// ViewerTokenFile or ViewerTokenEnv hold the token that signs in to
	// the console as a viewer (read only); the API token signs in as an
	// operator. Neither: the console has operators only.
	ViewerTokenFile string `mapstructure:"viewer_token_file" yaml:"viewer_token_file,omitempty" json:"viewer_token_file,omitempty"`
	ViewerTokenEnv  string `mapstructure:"viewer_token_env" yaml:"viewer_token_env,omitempty" json:"viewer_token_env,omitempty"`
	// TLS serves the endpoint over HTTPS, optionally with mutual TLS;
	// none: plain HTTP.
	TLS HTTPTLS `mapstructure:"tls" yaml:"tls,omitempty" json:"tls"`
}

// Token returns where the API token comes from.
func (h HTTP) Token() Secret { return Secret{File: h.TokenFile, Env: h.TokenEnv} }

// ViewerToken returns where the console's viewer token comes from (may be
// empty).
func (h HTTP) ViewerToken() Secret { return Secret{File: h.ViewerTokenFile, Env: h.ViewerTokenEnv} }

// Token returns where the Consul ACL token comes from (may be empty).
func (c Consul) Token() Secret { return Secret{File: c.TokenFile, Env: c.TokenEnv} }

// Consul says where the Consul agent is.
type Consul struct {
	Address string `mapstructure:"address" yaml:"address" json:"address"`
	// DNS is the agent's DNS address (host:port), where clients resolve
	// <cluster>-writer.service.consul; `dbha drill` writes through it.
	DNS string `mapstructure:"dns" yaml:"dns,omitempty" json:"dns,omitempty"`
	// TokenFile or TokenEnv name the ACL token; both empty means no token.
	TokenFile string `mapstructure:"token_file" yaml:"token_file,omitempty" json:"token_file,omitempty"`
	TokenEnv  string `mapstructure:"token_env" yaml:"token_env,omitempty" json:"token_env,omitempty"`
	// TLS makes every call to the agent HTTPS, verified; none: plain HTTP.
	TLS ConsulTLS `mapstructure:"tls" yaml:"tls,omitempty" json:"tls"`
}

// Probe bounds every probe dbha sends to a database instance.
type Probe struct {
	// Timeout bounds one probe of one instance: connect, queries and all.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout" json:"timeout"`
}

// Cluster is one primary–replica cluster.
type Cluster struct {
	Name      string          `mapstructure:"name" yaml:"name" json:"name"`
	Engine    topology.Engine `mapstructure:"engine" yaml:"engine" json:"engine"`
	Instances []string        `mapstructure:"instances" yaml:"instances" json:"instances"`
	// Account (user, password_file, password_env) is the account dbha
	// probes and manages the instances with; see the README for the grants
	// it needs.
	Account `mapstructure:",squash" yaml:",inline"`
	// Replication is the account replicas use to follow the primary.
	Replication Account `mapstructure:"replication" yaml:"replication" json:"replication"`
	// TLS is how dbha connects to the instances; default clear text
	// (mode disable).
	TLS ClusterTLS `mapstructure:"tls" yaml:"tls,omitempty" json:"tls"`
	// CheckCommand is an optional external check run every
	// checks.external_interval with the primary's address in
	// DBHA_PRIMARY; exit status 0 votes "alive", anything else "dead".
	CheckCommand []string `mapstructure:"check_command" yaml:"check_command,omitempty" json:"check_command,omitempty"`
	// Stream configures dbha's own copy of the primary's binlog or WAL.
	Stream Stream `mapstructure:"stream" yaml:"stream,omitempty" json:"stream"`
	// Promotion configures failover and switchover.
	Promotion Promotion `mapstructure:"promotion" yaml:"promotion,omitempty" json:"promotion"`
	// Drill configures `dbha drill` on a cluster it may disrupt.
	Drill Drill `mapstructure:"drill" yaml:"drill,omitempty" json:"drill"`
	// Backup configures the cluster's backups.
	Backup Backup `mapstructure:"backup" yaml:"backup,omitempty" json:"backup"`
	// Checksum configures `dbha checksum`.
	Checksum Checksum `mapstructure:"checksum" yaml:"checksum,omitempty" json:"checksum"`
	// VIP is the writer's virtual address, for clients that use neither
	// Consul DNS nor a proxy; held by the guards (empty: none).
	VIP VIP `mapstructure:"vip" yaml:"vip,omitempty" json:"vip"`
}

// VIP is a cluster's virtual writer address. The guard (`dbha guard`)
// beside the primary puts it on its host's interface and announces it
// with gratuitous ARP while it holds the write lease, and takes it off the
// moment the lease is no longer valid (before it fences), so the address
// leaves a primary that loses its lease: it needs promotion.lease_ttl.
type VIP struct {
	// Address is the address with its prefix length, e.g. 10.0.0.50/24
	// (IPv4: ARP).
	Address string `mapstructure:"address" yaml:"address,omitempty" json:"address,omitempty"`
	// Interface is the interface the address goes on; default: the one
	// that holds the guarded instance's own address.
	Interface string `mapstructure:"interface" yaml:"interface,omitempty" json:"interface,omitempty"`
}

// Prefix parses Address.
func (v VIP) Prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v.Address)
	if err != nil {
		return p, fmt.Errorf("want an IPv4 address with its prefix length, e.g. 10.0.0.50/24: %w", err)
	}
	if !p.Addr().Is4() {
		return p, fmt.Errorf("%s: IPv4 only (the address is announced by ARP)", v.Address)
	}
	return p, nil
}

// Backup configures a cluster's backups.
type Backup struct {
	// Repository is where backups go (one folder per cluster and backup);
	// default state_dir/backups.
	Repository string `mapstructure:"repository" yaml:"repository,omitempty" json:"repository,omitempty"`
	// AllowPrimary lets the primary serve a backup when no healthy replica
	// can.
	AllowPrimary bool `mapstructure:"allow_primary" yaml:"allow_primary,omitempty" json:"allow_primary"`
	// Account (user, password_file, password_env) is the account the
	// backup tool logs in with: for mariadb-backup RELOAD, PROCESS, LOCK
	// TABLES, BINLOG MONITOR, SLAVE MONITOR; for pg_basebackup REPLICATION.
	// No user: the cluster's account (Cluster.BackupAccount).
	Account `mapstructure:",squash" yaml:",inline"`
	// Keep and MaxAge bound the catalog (dbha backup prune); the newest
	// verified backup is always kept.
	Keep   int           `mapstructure:"keep" yaml:"keep,omitempty" json:"keep"`
	MaxAge time.Duration `mapstructure:"max_age" yaml:"max_age,omitempty" json:"max_age"`
	// Schedule is a cron spec (e.g. "0 2 * * *", UTC unless it starts with
	// CRON_TZ=<zone>; an optional leading seconds field; @daily, @every 6h)
	// for backups that `dbha run` takes; empty: none.
	Schedule string `mapstructure:"schedule" yaml:"schedule,omitempty" json:"schedule,omitempty"`
	// Reverify is a cron spec on which `dbha run` verifies again the
	// backup whose last verification is the oldest (never verified ones
	// first), so that a backup that no longer restores (its files damaged,
	// its point-in-time window gone) is found before it is needed; empty:
	// never.
	Reverify string `mapstructure:"reverify" yaml:"reverify,omitempty" json:"reverify,omitempty"`
	// Jitter delays each scheduled backup by up to this much, the same
	// delay on every manager for a given cluster and slot.
	Jitter time.Duration `mapstructure:"jitter" yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Verify makes `dbha run` verify each scheduled backup once taken, and
	// then prune the catalog (keep, max_age); defaults to true.
	Verify *bool `mapstructure:"verify" yaml:"verify,omitempty" json:"verify,omitempty"`
	// RunAs is the account throwaway servers (verify, restore --until) and
	// restored files belong to when dbha runs as root (database servers
	// refuse root); default postgres or mysql, the accounts the packages
	// create.
	RunAs string `mapstructure:"run_as" yaml:"run_as,omitempty" json:"run_as,omitempty"`
	// MaxRate bounds how fast a backup reads the source (bytes per second,
	// e.g. "100MB"), to spare a replica that serves reads; 0: no bound.
	MaxRate ByteSize `mapstructure:"max_rate" yaml:"max_rate,omitempty" json:"max_rate,omitempty"`
	// ScratchDir holds the throwaway copies verify makes; it needs room
	// for a whole uncompressed backup. Default: the temporary directory.
	ScratchDir string `mapstructure:"scratch_dir" yaml:"scratch_dir,omitempty" json:"scratch_dir,omitempty"`
	// S3 reaches the bucket of a repository given as s3://bucket/prefix.
	S3 S3 `mapstructure:"s3" yaml:"s3,omitempty" json:"s3"`
	// EncryptionKeyFile is an age X25519 identity (`dbha backup new-key`
	// writes one; mode 0600): every backup file is encrypted with it before
	// it leaves dbha, and read with it. Keep a copy apart from the backups.
	EncryptionKeyFile string `mapstructure:"encryption_key_file" yaml:"encryption_key_file,omitempty" json:"encryption_key_file,omitempty"`
	// ArchiveStream makes `dbha run` copy the cluster's change-stream store
	// into the repository (under "<cluster>.stream/"), every 30 seconds,
	// so that a point-in-time restore works from a machine that has only
	// the repository and this configuration. Default: on for an s3://
	// repository, off for a local directory (which would only copy the
	// store onto the same host).
	ArchiveStream *bool `mapstructure:"archive_stream" yaml:"archive_stream,omitempty" json:"archive_stream,omitempty"`
	// RemoteCommand (MariaDB) reaches the host of a source whose files are
	// not on this one, where mariadb-backup must run: dbha appends one
	// shell command line as its last argument, as ssh takes one, with
	// "{host}" replaced by the source's host, e.g. [ssh, -o,
	// BatchMode=yes, "backup@{host}"]. The backup streams back on its
	// output; the password goes on its input, never in an argument. None:
	// the files are on this host. Either way dbha proves, there, that the
	// directory it copies is the source server's, or refuses.
	RemoteCommand []string `mapstructure:"remote_command" yaml:"remote_command,omitempty" json:"remote_command,omitempty"`
	// DataDir, StopCommand and StartCommand let `dbha backup reseed`
	// rebuild an instance whose files are on this host: its data directory
	// ("{port}" is replaced by the instance's port) and the commands that
	// stop and start it ("{instance}" is replaced by its host:port). A
	// lab's clusters need none of them.
	DataDir      string   `mapstructure:"data_dir" yaml:"data_dir,omitempty" json:"data_dir,omitempty"`
	StopCommand  []string `mapstructure:"stop_command" yaml:"stop_command,omitempty" json:"stop_command,omitempty"`
	StartCommand []string `mapstructure:"start_command" yaml:"start_command,omitempty" json:"start_command,omitempty"`
}

// IsVerify reports whether scheduled backups are verified (the default).
func (b Backup) IsVerify() bool { return b.Verify == nil || *b.Verify }

// Topology is what discovery needs of the cluster.
func (c Cluster) Topology() topology.Cluster {
	return topology.Cluster{Name: c.Name, Engine: c.Engine, Instances: c.Instances}
}

// BackupAccount returns the backup account, the cluster's own when none is
// set.
func (c Cluster) BackupAccount() Account {
	if c.Backup.User == "" {
		return c.Account
	}
	return c.Backup.Account
}

// IsArchiveStream reports whether `dbha run` archives the cluster's
// change-stream store into the repository.
func (b Backup) IsArchiveStream() bool {
	if b.ArchiveStream != nil {
		return *b.ArchiveStream
	}
	return IsS3Repository(b.Repository)
}

// S3 is an S3-compatible object store holding a backup repository.
type S3 struct {
	// Endpoint is the service's host:port.
	Endpoint string `mapstructure:"endpoint" yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	Region   string `mapstructure:"region" yaml:"region,omitempty" json:"region,omitempty"`
	// AccessKey is the access key id; the secret key comes from a file or
	// an environment variable, never the configuration itself.
	AccessKey     string `mapstructure:"access_key" yaml:"access_key,omitempty" json:"access_key,omitempty"`
	SecretKeyFile string `mapstructure:"secret_key_file" yaml:"secret_key_file,omitempty" json:"secret_key_file,omitempty"`
	SecretKeyEnv  string `mapstructure:"secret_key_env" yaml:"secret_key_env,omitempty" json:"secret_key_env,omitempty"`
	// Insecure speaks plain HTTP, for a store on a private network or
	// loopback; TLS otherwise.
	Insecure bool `mapstructure:"insecure" yaml:"insecure,omitempty" json:"insecure,omitempty"`
}

// SecretKey is where the S3 secret key is.
func (s S3) SecretKey() Secret { return Secret{File: s.SecretKeyFile, Env: s.SecretKeyEnv} }

// IsS3Repository reports whether a repository is a bucket (s3://bucket/prefix).
func IsS3Repository(repo string) bool { return strings.HasPrefix(repo, "s3://") }

// Checksum is how `dbha checksum` reads a cluster.
type Checksum struct {
	// Account (user, password_file, password_env) reads every table. It
	// needs, on MariaDB, SELECT on the checked tables, all privileges on
	// the dbha_checksum schema and BINLOG ADMIN (to log its checksum
	// statements as statements); on PostgreSQL pg_read_all_data. No user:
	// promotion.apply's account on MariaDB, else the cluster's.
	Account `mapstructure:",squash" yaml:",inline"`
	// Schedule is a cron spec (as backup.schedule) on which `dbha run`
	// checks the cluster, one manager per slot; empty: never. ChunkTime,
	// MaxLag and MaxLoad are `dbha checksum`'s --chunk-time, --max-lag
	// and --max-load (defaults 0.5 s, 10 s and 25 sessions).
	Schedule  string        `mapstructure:"schedule" yaml:"schedule,omitempty" json:"schedule,omitempty"`
	ChunkTime time.Duration `mapstructure:"chunk_time" yaml:"chunk_time,omitempty" json:"chunk_time,omitempty"`
	MaxLag    time.Duration `mapstructure:"max_lag" yaml:"max_lag,omitempty" json:"max_lag,omitempty"`
	MaxLoad   int           `mapstructure:"max_load" yaml:"max_load,omitempty" json:"max_load,omitempty"`
}

// ChecksumAccount is the account `dbha checksum` logs in with.
func (c Cluster) ChecksumAccount() Account {
	switch {
	case c.Checksum.User != "":
		return c.Checksum.Account
	case c.Engine != topology.Postgres && c.Promotion.Apply.User != "":
		return c.Promotion.Apply
	}
	return c.Account
}

// Drill is how `dbha drill` writes to a cluster and breaks its primary.
type Drill struct {
	// Account (user, password_file, password_env) is the client account
	// the drill writes rows with, in Database (created if missing).
	Account  `mapstructure:",squash" yaml:",inline"`
	Database string `mapstructure:"database" yaml:"database,omitempty" json:"database,omitempty"`
	// KillCommand crashes an instance and RestartCommand starts it again;
	// "{instance}" in an argument is replaced by its host:port. A lab's
	// clusters need neither: the drill uses the lab.
	KillCommand    []string `mapstructure:"kill_command" yaml:"kill_command,omitempty" json:"kill_command,omitempty"`
	RestartCommand []string `mapstructure:"restart_command" yaml:"restart_command,omitempty" json:"restart_command,omitempty"`
}

// Promotion configures how a cluster's primary is replaced.
type Promotion struct {
	// AutoFailover lets `dbha run` fail over on a confirmed dead primary;
	// defaults to true (WithDefaults).
	AutoFailover *bool `mapstructure:"auto_failover" yaml:"auto_failover,omitempty" json:"auto_failover"`
	// Prefer, Never and Priority rank candidates (see promote.Rules).
	Prefer   []string       `mapstructure:"prefer" yaml:"prefer,omitempty" json:"prefer,omitempty"`
	Never    []string       `mapstructure:"never" yaml:"never,omitempty" json:"never,omitempty"`
	Priority map[string]int `mapstructure:"priority" yaml:"priority,omitempty" json:"priority,omitempty"`
	// MaxLagSeconds excludes replicas lagging more; 0 means no limit.
	MaxLagSeconds float64 `mapstructure:"max_lag_seconds" yaml:"max_lag_seconds,omitempty" json:"max_lag_seconds"`
	// BlockFor is the anti-flap window after an automatic recovery: until
	// it ends or `dbha recover ack`, another automatic recovery does not
	// promote the instance that just lost the primary role or one that
	// failed in that recovery. 0 turns the rule off; unset means
	// DefaultBlockFor (WithDefaults). Read it with Window.
	BlockFor *time.Duration `mapstructure:"block_for" yaml:"block_for,omitempty" json:"block_for"`
	// StepTimeout bounds each step of a promotion.
	StepTimeout time.Duration `mapstructure:"step_timeout" yaml:"step_timeout,omitempty" json:"step_timeout"`
	// OldPrimaryTimeout bounds, in a failover, every dial and query towards
	// the old primary (whether it answers again, fencing it): a dead,
	// hung or cut-off host must not hold up the recovery. One that does not
	// answer within it is taken as gone; it is kept out of the writer
	// service and fenced when it returns. Unset means
	// DefaultOldPrimaryTimeout (WithDefaults).
	OldPrimaryTimeout time.Duration `mapstructure:"old_primary_timeout" yaml:"old_primary_timeout,omitempty" json:"old_primary_timeout"`
	// RecheckTimeout bounds a failover's own question, under the lock,
	// whether the old primary answers again, when dbha's monitor found it
	// silent moments before (within OldPrimaryTimeout): a host that came
	// back (a flap) answers a fresh dial and a query within it, and one
	// still gone costs this much rather than a whole probe timeout. Raise
	// it where a dial and a query take longer (a distant network). Unset
	// means DefaultRecheckTimeout (WithDefaults).
	RecheckTimeout time.Duration `mapstructure:"recheck_timeout" yaml:"recheck_timeout,omitempty" json:"recheck_timeout"`
	// FenceCommand is the operator's fence of last resort (STONITH: a
	// cloud API call that stops the old primary's machine, a PDU...): a
	// failover runs it before the new primary takes writes, when the old
	// primary could not be made read-only and no guard held its lease.
	// "{instance}" in an argument is replaced by the old primary's
	// host:port; DBHA_CLUSTER and DBHA_INSTANCE are in its environment.
	// Never put a password in it: the command reads its own credentials.
	// Exit status 0 means the old primary can no longer take writes.
	FenceCommand []string `mapstructure:"fence_command" yaml:"fence_command,omitempty" json:"fence_command,omitempty"`
	// FenceTimeout bounds FenceCommand; it is killed after it, which
	// counts as a failure. Unset means DefaultFenceTimeout (WithDefaults).
	FenceTimeout time.Duration `mapstructure:"fence_timeout" yaml:"fence_timeout,omitempty" json:"fence_timeout"`
	// FenceFailure says what a failover does when FenceCommand fails and
	// no other layer secured the old primary: "stop" (the default) aborts
	// it before anything changed, with the reason in the record; "proceed"
	// promotes anyway, and the record says two writers are possible.
	FenceFailure string `mapstructure:"fence_failure" yaml:"fence_failure,omitempty" json:"fence_failure,omitempty"`
	// RequireFencing: a failover that has no layer to secure the old
	// primary (it cannot be reached, no guard holds its lease, no
	// fence_command, commits that can fall back) stops before anything
	// changed, instead of promoting with two writers possible until the
	// old primary returns (the default, false, keeps the cluster writable).
	RequireFencing bool `mapstructure:"require_fencing" yaml:"require_fencing,omitempty" json:"require_fencing"`
	// BeforePromote and AfterPromote are commands run around a promotion
	// with the plan as JSON on stdin and DBHA_* variables; a failing
	// before-promote command vetoes it.
	BeforePromote [][]string `mapstructure:"before_promote" yaml:"before_promote,omitempty" json:"before_promote,omitempty"`
	AfterPromote  [][]string `mapstructure:"after_promote" yaml:"after_promote,omitempty" json:"after_promote,omitempty"`
	// RestoreCommand (PostgreSQL) is the restore_command a candidate gets
	// to fetch WAL only dbha's store holds; {store} is replaced by the
	// store's directory. The default copies from the store, which suits a
	// store the database host can read.
	RestoreCommand string `mapstructure:"restore_command" yaml:"restore_command,omitempty" json:"restore_command,omitempty"`
	// Apply (MariaDB/MySQL) is the account that replays on a candidate the
	// transactions only dbha's store holds. Row events need only BINLOG
	// REPLAY, which the cluster's user has; replayed DDL needs the
	// privileges of the statement, as the replication SQL thread has them,
	// so clusters that replicate DDL name an administrative account here.
	// Empty: the cluster's user.
	Apply Account `mapstructure:"apply" yaml:"apply,omitempty" json:"apply,omitempty"`
	// RejoinCommand (PostgreSQL) makes a fenced old primary a standby of
	// the new one (CHECKPOINT on the new primary, so that pg_rewind sees its
	// new timeline; pg_rewind; standby.signal; restart) on its host;
	// "{instance}" and "{primary}" are replaced by their host:port. Without
	// it the old primary stays fenced until an operator rejoins it.
	RejoinCommand []string `mapstructure:"rejoin_command" yaml:"rejoin_command,omitempty" json:"rejoin_command,omitempty"`
	// Reseed says what dbha does with a former primary whose extra
	// transactions cannot be undone safely (a rewind refused: DDL, a
	// non-row event, a write of unknown origin): "off" (the default) keeps
	// it fenced with a critical finding; "auto" rebuilds it from the newest
	// verified backup (as `dbha backup reseed` does: backup.repository, and
	// backup.stop_command/start_command and backup.data_dir or the lab) and
	// attaches it to the writer.
	Reseed string `mapstructure:"reseed" yaml:"reseed,omitempty" json:"reseed,omitempty"`
	// LeaseTTL is the write lease of the cluster's guards (`dbha guard`
	// beside each server): dbha grants the writer its lease, a failover
	// revokes the old primary's and waits for its guard's confirmation or
	// for this TTL (stretched by 10% for clock rates), and `dbha guard`
	// uses it as its default --ttl. 0 (the default): the cluster runs no
	// guards. At least MinLeaseTTL.
	LeaseTTL time.Duration `mapstructure:"lease_ttl" yaml:"lease_ttl,omitempty" json:"lease_ttl,omitempty"`
}

// FenceFailure values.
const (
	FenceFailureStop    = "stop"
	FenceFailureProceed = "proceed"
)

// ProceedOnFenceFailure reports whether a failover promotes after its
// fence_command failed (fence_failure: proceed).
func (p Promotion) ProceedOnFenceFailure() bool { return p.FenceFailure == FenceFailureProceed }

// MinLeaseTTL is the shortest promotion.lease_ttl (guard.MinTTL): a
// guard's round, a Consul transaction and a fence must fit in its margins.
const MinLeaseTTL = 500 * time.Millisecond

// Reseed values.
const (
	ReseedOff  = "off"
	ReseedAuto = "auto"
)

// IsAutoReseed reports whether a former primary that cannot be rewound is
// rebuilt from a backup without an operator.
func (p Promotion) IsAutoReseed() bool { return p.Reseed == ReseedAuto }

// IsAutoFailover reports whether automatic failover is on (the default).
func (p Promotion) IsAutoFailover() bool { return p.AutoFailover == nil || *p.AutoFailover }

// Window is block_for, the anti-flap window: DefaultBlockFor when unset, 0
// when the rule is off.
func (p Promotion) Window() time.Duration {
	if p.BlockFor == nil {
		return DefaultBlockFor
	}
	return *p.BlockFor
}

// Stream configures the change stream dbha keeps for a cluster: a
// replication client of the primary that writes the binlog (MariaDB/MySQL)
// or WAL (PostgreSQL) under state_dir/streams/<cluster>.
type Stream struct {
	// Enabled defaults to true; WithDefaults fills it in.
	Enabled *bool `mapstructure:"enabled" yaml:"enabled,omitempty" json:"enabled"`
	// ServerID is the server_id dbha presents to a MariaDB/MySQL primary.
	// It must differ from every server's in the replication topology.
	// Zero means derived from the cluster name (see WithDefaults).
	ServerID uint32 `mapstructure:"server_id" yaml:"server_id,omitempty" json:"server_id"`
	// SemiSync makes dbha a semi-sync replica of a MariaDB/MySQL primary
	// that has rpl_semi_sync_master_enabled: a commit returns to its client
	// only once dbha holds it on disk.
	SemiSync bool `mapstructure:"semi_sync" yaml:"semi_sync,omitempty" json:"semi_sync"`
	// Synchronous makes dbha report its flush position to a PostgreSQL
	// primary under the application_name "dbha", to be named in
	// synchronous_standby_names; commits then wait for dbha's fsync.
	Synchronous bool `mapstructure:"synchronous" yaml:"synchronous,omitempty" json:"synchronous"`
	// Slot is the physical replication slot dbha streams WAL through.
	Slot      string    `mapstructure:"slot" yaml:"slot,omitempty" json:"slot"`
	Retention Retention `mapstructure:"retention" yaml:"retention,omitempty" json:"retention"`
}

// Retention bounds the stream store. Whatever a replica still lacks is kept
// past both bounds.
type Retention struct {
	MaxAge  time.Duration `mapstructure:"max_age" yaml:"max_age,omitempty" json:"max_age"`
	MaxSize ByteSize      `mapstructure:"max_size" yaml:"max_size,omitempty" json:"max_size"`
	// KeepBackups (default true) keeps, past both bounds, what the oldest
	// backup in the repository needs for its point-in-time window (from
	// its position on), as long as the store still reaches back to it.
	KeepBackups *bool `mapstructure:"keep_backups" yaml:"keep_backups,omitempty" json:"keep_backups,omitempty"`
}

// IsKeepBackups reports whether retention keeps the oldest backup's
// point-in-time window (the default).
func (r Retention) IsKeepBackups() bool { return r.KeepBackups == nil || *r.KeepBackups }

// IsEnabled reports whether the stream runs (the default).
func (s Stream) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// Account is a user and where its password comes from. Cluster, Backup and
// Drill embed it, so its keys sit at their level (clusters[0].user,
// clusters[0].backup.password_file); Replication and Promotion.Apply are
// accounts under a key of their own.
type Account struct {
	User         string `mapstructure:"user" yaml:"user" json:"user"`
	PasswordFile string `mapstructure:"password_file" yaml:"password_file,omitempty" json:"password_file,omitempty"`
	PasswordEnv  string `mapstructure:"password_env" yaml:"password_env,omitempty" json:"password_env,omitempty"`
}

// Default returns the configuration dbha runs with when a key is not set.
func Default() Config {
	return Config{
		StateDir: "/var/lib/dbha",
		Consul:   Consul{Address: "127.0.0.1:8500", DNS: "127.0.0.1:8600"},
		Probe:    Probe{Timeout: time.Second},
		Checks: Checks{Interval: 250 * time.Millisecond, Policy: checks.DefaultPolicy(),
			ExternalTimeout: 2 * time.Second, ExternalInterval: time.Second},
	}
}

// Stream defaults.
const (
	DefaultStreamSlot   = "dbha"
	DefaultRetentionAge = 7 * 24 * time.Hour
	DefaultRetentionMax = 10 << 30

	DefaultBlockFor    = 30 * time.Minute
	DefaultStepTimeout = 30 * time.Second
	// DefaultOldPrimaryTimeout: a live server answers a dial and a query
	// within milliseconds; half a second is far above that, and it is what
	// each call to a failover's vanished old primary costs.
	// (promote falls back to the same value for a caller that sets none;
	// config stays free of packages that do I/O, so it is written here.)
	DefaultOldPrimaryTimeout = 500 * time.Millisecond
	// DefaultRecheckTimeout: a host back on a local network answers a
	// fresh dial and a query in a few milliseconds (promote's fallback too).
	DefaultRecheckTimeout = 200 * time.Millisecond
	DefaultRestoreCommand = "cp {store}/%f %p"
	// DefaultFenceTimeout bounds promotion.fence_command: a cloud API
	// call that stops a machine answers within seconds.
	DefaultFenceTimeout = 10 * time.Second
)

// WithDefaults fills in per-cluster defaults that decoding a file cannot
// give (list entries start from zero values).
func WithDefaults(cfg Config) Config {
	out := cfg
	out.Alerts.Webhooks = make([]Webhook, len(cfg.Alerts.Webhooks))
	for i, w := range cfg.Alerts.Webhooks {
		out.Alerts.Webhooks[i] = w.withDefaults(i)
	}
	out.Clusters = make([]Cluster, len(cfg.Clusters))
	for i, cl := range cfg.Clusters {
		st := &cl.Stream
		if st.Enabled == nil {
			on := true
			st.Enabled = &on
		}
		if st.ServerID == 0 {
			st.ServerID = DerivedServerID(cl.Name)
		}
		if st.Slot == "" {
			st.Slot = DefaultStreamSlot
		}
		if st.Retention.MaxAge == 0 {
			st.Retention.MaxAge = DefaultRetentionAge
		}
		if st.Retention.MaxSize == 0 {
			st.Retention.MaxSize = DefaultRetentionMax
		}
		pr := &cl.Promotion
		if pr.AutoFailover == nil {
			on := true
			pr.AutoFailover = &on
		}
		if pr.BlockFor == nil {
			window := DefaultBlockFor
			pr.BlockFor = &window
		}
		if pr.StepTimeout == 0 {
			pr.StepTimeout = DefaultStepTimeout
		}
		if pr.OldPrimaryTimeout == 0 {
			pr.OldPrimaryTimeout = DefaultOldPrimaryTimeout
		}
		if pr.RecheckTimeout == 0 {
			pr.RecheckTimeout = DefaultRecheckTimeout
		}
		if pr.FenceTimeout == 0 {
			pr.FenceTimeout = DefaultFenceTimeout
		}
		if pr.FenceFailure == "" {
			pr.FenceFailure = FenceFailureStop
		}
		if pr.RestoreCommand == "" {
			pr.RestoreCommand = DefaultRestoreCommand
		}
		if cl.TLS.Mode == "" {
			cl.TLS.Mode = tlsconfig.Disable
		}
		if cl.Drill.Database == "" {
			cl.Drill.Database = "dbha_drill"
		}
		if cl.Backup.Repository == "" {
			cl.Backup.Repository = filepath.Join(cfg.StateDir, "backups")
		}
		if cl.Backup.Keep == 0 {
			cl.Backup.Keep = 7
		}
		out.Clusters[i] = cl
	}
	return out
}

// DerivedServerID is a server_id for dbha's binlog client, stable for a
// cluster name and kept in a range (3,000,000,000 and up) that operators
// rarely give their servers.
func DerivedServerID(cluster string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(cluster))
	return 3_000_000_000 + h.Sum32()%1_000_000_000
}

// Password returns where the account's password comes from.
func (a Account) Password() Secret { return Secret{File: a.PasswordFile, Env: a.PasswordEnv} }

// Cluster returns the cluster with the given name.
func (c Config) Cluster(name string) (Cluster, bool) {
	for _, cl := range c.Clusters {
		if cl.Name == name {
			return cl, true
		}
	}
	return Cluster{}, false
}

// Error is a configuration error. It names the key and the file, so the
// operator knows exactly what to fix.
type Error struct {
	File string // the configuration file, "" when none was read
	Key  string // e.g. "clusters[1].instances[0]"
	Msg  string
}

func (e *Error) Error() string {
	where := e.File
	if where == "" {
		where = "configuration"
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", where, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Key, e.Msg)
}

// Validate checks cfg and returns every problem found, joined (errors.Join of
// *Error values), or nil. file is used only to name the source in messages.
func Validate(cfg Config, file string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: file, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if cfg.StateDir == "" {
		bad("state_dir", "must be set (a directory dbha may write to)")
	}
	if cfg.Consul.Address != "" {
		if err := checkHostPort(cfg.Consul.Address); err != nil {
			bad("consul.address", "%v", err)
		}
	}
	if cfg.Consul.DNS != "" {
		if err := checkHostPort(cfg.Consul.DNS); err != nil {
			bad("consul.dns", "%v", err)
		}
	}
	if cfg.Consul.TokenFile != "" && cfg.Consul.TokenEnv != "" {
		bad("consul", "set token_file or token_env, not both")
	}
	validateConsulTLS(cfg.Consul.TLS, bad)
	validateMembers(cfg.Manager, bad)
	validateAlerts(cfg.Alerts, bad)
	if cfg.HTTP.ViewerTokenFile != "" && cfg.HTTP.ViewerTokenEnv != "" {
		bad("http", "set viewer_token_file or viewer_token_env, not both")
	}
	validateHTTPTLS(cfg.HTTP, bad)
	if cfg.Probe.Timeout <= 0 {
		bad("probe.timeout", "must be a positive duration such as 1s, got %v", cfg.Probe.Timeout)
	}
	if cfg.Checks.Interval <= 0 {
		bad("checks.interval", "must be a positive duration such as 250ms, got %v", cfg.Checks.Interval)
	}
	if err := cfg.Checks.Policy.Validate(); err != nil {
		bad("checks", "%v", err)
	}
	if cfg.Checks.ExternalTimeout <= 0 || cfg.Checks.ExternalInterval <= 0 {
		bad("checks", "external_timeout and external_interval must be positive durations")
	}
	if cfg.HTTP.Listen != "" {
		if err := checkHostPort(cfg.HTTP.Listen); err != nil {
			bad("http.listen", "%v", err)
		}
		switch t := cfg.HTTP.Token(); {
		case t.File == "" && t.Env == "":
			bad("http", "set token_file or token_env: the API requires a bearer token")
		case t.File != "" && t.Env != "":
			bad("http", "set token_file or token_env, not both")
		}
	}
	if len(cfg.Clusters) == 0 {
		bad("clusters", "no cluster is configured")
	}
	seen := map[string]int{}
	for i, cl := range cfg.Clusters {
		key := fmt.Sprintf("clusters[%d]", i)
		if cl.Name == "" {
			bad(key+".name", "must be set")
		} else if j, dup := seen[cl.Name]; dup {
			bad(key+".name", "duplicate cluster name %q (also clusters[%d])", cl.Name, j)
		} else {
			seen[cl.Name] = i
		}
		validateCluster(cl, key, bad)
	}
	return errors.Join(errs...)
}

// validateMembers: the membership names each manager once, this one
// among them (a manager that does not count itself would need a majority
// of the others alone).
func validateMembers(m Manager, bad func(key, format string, args ...any)) {
	if len(m.Members) == 0 {
		return
	}
	seen := map[string]bool{}
	for i, name := range m.Members {
		switch {
		case name == "":
			bad(fmt.Sprintf("manager.members[%d]", i), "empty name")
		case seen[name]:
			bad(fmt.Sprintf("manager.members[%d]", i), "%q is listed twice", name)
		}
		seen[name] = true
	}
	if m.Name == "" {
		bad("manager.name", "must be set when manager.members is: it names this manager among them")
	} else if !seen[m.Name] {
		bad("manager.members", "does not list this manager (manager.name %q)", m.Name)
	}
}

func validateCluster(cl Cluster, key string, bad func(key, format string, args ...any)) {
	switch cl.Engine {
	case topology.MariaDB, topology.MySQL, topology.Postgres:
	case "":
		bad(key+".engine", "must be set to mariadb, mysql or postgres")
	default:
		bad(key+".engine", "unknown engine %q: use mariadb, mysql or postgres", cl.Engine)
	}
	if len(cl.Instances) == 0 {
		bad(key+".instances", "empty: list the cluster's instances as host:port")
	}
	addrs := map[string]int{}
	for j, addr := range cl.Instances {
		k := fmt.Sprintf("%s.instances[%d]", key, j)
		if err := checkHostPort(addr); err != nil {
			bad(k, "%v", err)
			continue
		}
		if prev, dup := addrs[addr]; dup {
			bad(k, "%s is listed twice (also instances[%d])", addr, prev)
		}
		addrs[addr] = j
	}
	if cl.User == "" {
		bad(key+".user", "must be set")
	}
	validateSecret(cl.Password(), key, bad)
	if cl.Replication.User == "" {
		bad(key+".replication.user", "must be set (the account replicas connect with)")
	}
	validateSecret(cl.Replication.Password(), key+".replication", bad)
	validateClusterTLS(cl.TLS, key+".tls", bad)
	if cl.Engine != topology.Postgres && cl.TLS.IsEnabled() && cl.TLS.CAFile == "" {
		// The client of MariaDB 10.x falls back to clear text unless it
		// verifies the server (see topology/mysql.ClientOptions).
		bad(key+".tls.ca_file", "must be set for MariaDB/MySQL: the client tools dbha runs (mariadb, mariadb-binlog, mariadb-backup) fall back to clear text unless they verify the server")
	}
	if cl.Checksum.User != "" {
		validateSecret(cl.Checksum.Password(), key+".checksum", bad)
	}
	if cl.Checksum.ChunkTime < 0 || cl.Checksum.MaxLag < 0 || cl.Checksum.MaxLoad < 0 {
		bad(key+".checksum", "chunk_time, max_lag and max_load must not be negative")
	}
	if cl.Checksum.Schedule != "" {
		if _, err := schedule.Parse(cl.Checksum.Schedule, 0); err != nil {
			bad(key+".checksum.schedule", "%v (a cron spec such as \"0 5 * * 0\" or \"@weekly\")", err)
		}
		if cl.Engine == topology.MySQL {
			bad(key+".checksum.schedule", "consistency checks are implemented for MariaDB and PostgreSQL, not MySQL yet")
		}
	}
	st := cl.Stream
	if st.SemiSync && cl.Engine == topology.Postgres {
		bad(key+".stream.semi_sync", "is for MariaDB/MySQL; PostgreSQL uses stream.synchronous")
	}
	if st.Synchronous && cl.Engine != topology.Postgres {
		bad(key+".stream.synchronous", "is for PostgreSQL; MariaDB/MySQL use stream.semi_sync")
	}
	if st.Slot != "" && !validSlotName(st.Slot) {
		bad(key+".stream.slot", "%q: a slot name is lower-case letters, digits and underscores, at most 63", st.Slot)
	}
	if st.Retention.MaxAge < 0 || st.Retention.MaxSize < 0 {
		bad(key+".stream.retention", "bounds must not be negative")
	}
	validatePromotion(cl, key, bad)
	validateBackup(cl.Backup, key+".backup", bad)
	if cl.Engine == topology.MySQL {
		validateMySQL(cl, key, bad)
	}
}

// validateMySQL refuses what dbha cannot do for MySQL (as opposed to
// MariaDB) yet: promotion sends MariaDB-only SQL and backups run
// mariadb-backup. Discovery, monitoring and the binlog stream work, so a
// MySQL cluster is valid once it asks for nothing more; a configuration
// that cannot fail over must not look as if it can.
func validateMySQL(cl Cluster, key string, bad func(key, format string, args ...any)) {
	if cl.Promotion.IsAutoFailover() {
		bad(key+".promotion.auto_failover", "promotion is implemented for MariaDB and PostgreSQL, not MySQL yet, "+
			"and auto_failover is on unless set: set it to false to monitor this cluster only")
	}
	if cl.Backup.Schedule != "" {
		bad(key+".backup.schedule", "backups are implemented for MariaDB and PostgreSQL, not MySQL yet "+
			"(they run mariadb-backup): remove the schedule to monitor this cluster only")
	}
}

func validateBackup(b Backup, key string, bad func(key, format string, args ...any)) {
	if b.User != "" {
		validateSecret(b.Password(), key, bad)
	}
	if b.Keep < 0 || b.MaxAge < 0 {
		bad(key, "keep and max_age must not be negative")
	}
	if b.Jitter < 0 {
		bad(key+".jitter", "must not be negative, got %v", b.Jitter)
	}
	if b.Schedule != "" {
		if _, err := schedule.Parse(b.Schedule, max(b.Jitter, 0)); err != nil {
			bad(key+".schedule", "%v (a cron spec such as \"0 2 * * *\" or \"@daily\")", err)
		}
	}
	if b.Reverify != "" {
		if _, err := schedule.Parse(b.Reverify, 0); err != nil {
			bad(key+".reverify", "%v (a cron spec such as \"0 4 * * 0\" or \"@weekly\")", err)
		}
	}
	if !IsS3Repository(b.Repository) {
		return
	}
	bucket, _, _ := strings.Cut(strings.TrimPrefix(b.Repository, "s3://"), "/")
	switch {
	case bucket == "":
		bad(key+".repository", "%q names no bucket (s3://bucket/prefix)", b.Repository)
	case b.S3.Endpoint == "":
		bad(key+".s3.endpoint", "an s3:// repository needs the service's host:port")
	case b.S3.AccessKey == "":
		bad(key+".s3.access_key", "an s3:// repository needs an access key")
	case b.S3.SecretKeyFile == "" && b.S3.SecretKeyEnv == "", b.S3.SecretKeyFile != "" && b.S3.SecretKeyEnv != "":
		bad(key+".s3", "set secret_key_file or secret_key_env (one of them)")
	}
}

func validSlotName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func validateSecret(s Secret, key string, bad func(key, format string, args ...any)) {
	switch {
	case s.File == "" && s.Env == "":
		bad(key, "set password_file or password_env (passwords are never given on the command line)")
	case s.File != "" && s.Env != "":
		bad(key, "set password_file or password_env, not both")
	}
}

// checkHostPort accepts "host:port" with a non-empty host and a port 1..65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// Secret names where a password or token is kept: a file (first line, trailing
// newline stripped) or an environment variable. It never holds the value.
type Secret struct {
	File string
	Env  string
}

// ErrNoSecret means the configured file or variable holds no value.
var ErrNoSecret = errors.New("secret is empty")

// Read returns the secret's value. lookupEnv is os.LookupEnv in production;
// tests pass their own.
func (s Secret) Read(lookupEnv func(string) (string, bool)) (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("password file %s: %w", s.File, ErrNoSecret)
		}
		return v, nil
	case s.Env != "":
		v, ok := lookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s: %w", s.Env, ErrNoSecret)
		}
		return v, nil
	}
	return "", ErrNoSecret
}

func validatePromotion(cl Cluster, key string, bad func(key, format string, args ...any)) {
	pr := cl.Promotion
	known := map[string]bool{}
	for _, a := range cl.Instances {
		known[a] = true
	}
	check := func(k string, addrs []string) {
		for i, a := range addrs {
			if !known[a] {
				bad(fmt.Sprintf("%s.promotion.%s[%d]", key, k, i), "%q is not one of the cluster's instances", a)
			}
		}
	}
	check("prefer", pr.Prefer)
	check("never", pr.Never)
	for a := range pr.Priority {
		if !known[a] {
			bad(key+".promotion.priority", "%q is not one of the cluster's instances", a)
		}
	}
	if pr.Apply.User != "" {
		validateSecret(pr.Apply.Password(), key+".promotion.apply", bad)
	}
	switch pr.Reseed {
	case "", ReseedOff:
	case ReseedAuto:
	default:
		bad(key+".promotion.reseed", "unknown value %q: use off or auto", pr.Reseed)
	}
	if pr.LeaseTTL != 0 && pr.LeaseTTL < MinLeaseTTL {
		bad(key+".promotion.lease_ttl", "%v: 0 (no guards) or at least %v", pr.LeaseTTL, MinLeaseTTL)
	}
	if cl.VIP.Address != "" {
		if _, err := cl.VIP.Prefix(); err != nil {
			bad(key+".vip.address", "%v", err)
		}
		if pr.LeaseTTL == 0 {
			bad(key+".vip", "the guards hold the writer's address while they hold the write lease: set promotion.lease_ttl and run dbha guard beside each instance")
		}
	} else if cl.VIP.Interface != "" {
		bad(key+".vip.interface", "without vip.address")
	}
	if pr.Window() < 0 || pr.StepTimeout < 0 || pr.OldPrimaryTimeout < 0 || pr.RecheckTimeout < 0 || pr.MaxLagSeconds < 0 || pr.FenceTimeout < 0 {
		bad(key+".promotion", "block_for, step_timeout, old_primary_timeout, recheck_timeout, fence_timeout and max_lag_seconds must not be negative")
	}
	switch pr.FenceFailure {
	case "", FenceFailureStop, FenceFailureProceed:
	default:
		bad(key+".promotion.fence_failure", "unknown value %q: use stop or proceed", pr.FenceFailure)
	}
	if len(pr.FenceCommand) > 0 && pr.FenceCommand[0] == "" {
		bad(key+".promotion.fence_command", "the program is empty: give a command and its arguments as a list")
	}
	for i, h := range append(append([][]string{}, pr.BeforePromote...), pr.AfterPromote...) {
		if len(h) == 0 || h[0] == "" {
			bad(key+".promotion", "hook %d is empty: give a command and its arguments as a list", i)
		}
	}
}
