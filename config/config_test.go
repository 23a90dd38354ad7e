package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/topology"
)

func validCluster() Cluster {
	return Cluster{
		Name: "c1", Engine: topology.MariaDB, Instances: []string{"127.0.0.1:3306", "db2.example:3306"},
		Account:     Account{User: "dbha", PasswordFile: "/etc/dbha/pw"},
		Replication: Account{User: "repl", PasswordEnv: "REPL_PW"},
	}
}

func TestValidate(t *testing.T) {
	on, off := true, false
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; empty means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"no clusters", func(c *Config) { c.Clusters = nil }, []string{"clusters: no cluster"}},
		{"duplicate name", func(c *Config) { c.Clusters = append(c.Clusters, c.Clusters[0]) },
			[]string{`clusters[1].name: duplicate cluster name "c1" (also clusters[0])`}},
		{"empty instances", func(c *Config) { c.Clusters[0].Instances = nil }, []string{"clusters[0].instances: empty"}},
		{"no port", func(c *Config) { c.Clusters[0].Instances[1] = "db2" }, []string{`clusters[0].instances[1]: "db2" is not host:port`}},
		{"bad port", func(c *Config) { c.Clusters[0].Instances[0] = "h:99999" }, []string{`clusters[0].instances[0]: "h:99999": port "99999"`}},
		{"empty host", func(c *Config) { c.Clusters[0].Instances[0] = ":3306" }, []string{"has no host"}},
		{"same instance twice", func(c *Config) { c.Clusters[0].Instances[1] = "127.0.0.1:3306" }, []string{"listed twice"}},
		{"unknown engine", func(c *Config) { c.Clusters[0].Engine = "oracle" }, []string{`clusters[0].engine: unknown engine "oracle"`}},
		{"reseed auto", func(c *Config) { c.Clusters[0].Promotion.Reseed = "auto" }, nil},
		{"unknown reseed", func(c *Config) { c.Clusters[0].Promotion.Reseed = "sometimes" }, []string{`clusters[0].promotion.reseed: unknown value "sometimes": use off or auto`}},
		{"no password source", func(c *Config) { c.Clusters[0].PasswordFile = "" }, []string{"clusters[0]: set password_file or password_env"}},
		{"two password sources", func(c *Config) { c.Clusters[0].Replication.PasswordFile = "/x" }, []string{"clusters[0].replication: set password_file or password_env, not both"}},
		{"no replication user", func(c *Config) { c.Clusters[0].Replication.User = "" }, []string{"clusters[0].replication.user"}},
		{"bad consul address", func(c *Config) { c.Consul.Address = "consul" }, []string{"consul.address"}},
		{"alerts", func(c *Config) {
			c.Alerts = Alerts{Levels: map[string]string{"replicalagging": "critical", "Recovered": "info"},
				Webhooks: []Webhook{{Name: "am", URL: "http://am:9093", Format: "alertmanager", MinLevel: "warning"}}}
		}, nil},
		{"alert level of no code", func(c *Config) { c.Alerts.Levels = map[string]string{"DiskFull": "critical"} },
			[]string{`alerts.levels: "DiskFull" is no finding or event code`}},
		{"unknown alert level", func(c *Config) { c.Alerts.Levels = map[string]string{"DeadPrimary": "page"} },
			[]string{`alerts.levels: DeadPrimary: level "page" is not info, warning or critical`}},
		{"webhook without url", func(c *Config) { c.Alerts.Webhooks = []Webhook{{Name: "w", Format: "json", MinLevel: "info"}} },
			[]string{"alerts.webhooks[0]: set url or url_file, one of them"}},
		{"bad webhook", func(c *Config) {
			c.Alerts.Webhooks = []Webhook{{Name: "w", URL: "ftp://x", Format: "slack", MinLevel: "loud"}, {Name: "w", URL: "http://x", Format: "json", MinLevel: "info"}}
		}, []string{"alerts.webhooks[0].url: must be an http:// or https:// URL", `alerts.webhooks[0].format: must be json or alertmanager, got "slack"`,
			`alerts.webhooks[0].min_level: level "loud"`, `alerts.webhooks[1].name: "w" names another webhook too`}},
		{"zero probe timeout", func(c *Config) { c.Probe.Timeout = 0 }, []string{"probe.timeout"}},
		{"negative block_for", func(c *Config) { d := -time.Minute; c.Clusters[0].Promotion.BlockFor = &d },
			[]string{"clusters[0].promotion: block_for, step_timeout, old_primary_timeout, recheck_timeout, fence_timeout and max_lag_seconds must not be negative"}},
		{"vip without leases", func(c *Config) { c.Clusters[0].VIP.Address = "10.0.0.50/24" },
			[]string{"clusters[0].vip: the guards hold the writer's address while they hold the write lease"}},
		{"vip without its prefix length", func(c *Config) {
			c.Clusters[0].Promotion.LeaseTTL = 2 * time.Second
			c.Clusters[0].VIP.Address = "10.0.0.50"
		},
			[]string{"clusters[0].vip.address: want an IPv4 address with its prefix length"}},
		{"vip on IPv6", func(c *Config) {
			c.Clusters[0].Promotion.LeaseTTL = 2 * time.Second
			c.Clusters[0].VIP.Address = "fd00::50/64"
		},
			[]string{"clusters[0].vip.address: fd00::50/64: IPv4 only"}},
		{"short lease_ttl", func(c *Config) { c.Clusters[0].Promotion.LeaseTTL = 100 * time.Millisecond }, []string{"clusters[0].promotion.lease_ttl: 100ms: 0 (no guards) or at least 500ms"}},
		{"negative old_primary_timeout", func(c *Config) { c.Clusters[0].Promotion.OldPrimaryTimeout = -time.Second },
			[]string{"clusters[0].promotion: block_for, step_timeout, old_primary_timeout, recheck_timeout, fence_timeout and max_lag_seconds must not be negative"}},
		{"negative recheck_timeout", func(c *Config) { c.Clusters[0].Promotion.RecheckTimeout = -time.Second },
			[]string{"recheck_timeout, fence_timeout and max_lag_seconds must not be negative"}},
		{"fence command", func(c *Config) {
			c.Clusters[0].Promotion.FenceCommand = []string{"/usr/local/bin/stonith", "{instance}"}
			c.Clusters[0].Promotion.FenceFailure = "proceed"
			c.Clusters[0].Promotion.RequireFencing = true
		}, nil},
		{"empty fence command", func(c *Config) { c.Clusters[0].Promotion.FenceCommand = []string{""} },
			[]string{"clusters[0].promotion.fence_command: the program is empty"}},
		{"unknown fence_failure", func(c *Config) { c.Clusters[0].Promotion.FenceFailure = "retry" },
			[]string{`clusters[0].promotion.fence_failure: unknown value "retry": use stop or proceed`}},
		{"negative fence_timeout", func(c *Config) { c.Clusters[0].Promotion.FenceTimeout = -time.Second },
			[]string{"fence_timeout"}},
		{"backup schedule", func(c *Config) {
			c.Clusters[0].Backup.Schedule = "0 2 * * *"
			c.Clusters[0].Backup.Jitter = 30 * time.Minute
		}, nil},
		{"bad backup schedule", func(c *Config) { c.Clusters[0].Backup.Schedule = "every night" },
			[]string{`clusters[0].backup.schedule: "every night"`}},
		{"negative backup jitter", func(c *Config) { c.Clusters[0].Backup.Schedule = "@daily"; c.Clusters[0].Backup.Jitter = -1 },
			[]string{"clusters[0].backup.jitter: must not be negative"}},
		{"mysql with automatic failover by default", func(c *Config) { c.Clusters[0].Engine = topology.MySQL },
			[]string{"clusters[0].promotion.auto_failover: promotion is implemented for MariaDB and PostgreSQL, not MySQL yet", "set it to false"}},
		{"mysql with automatic failover on", func(c *Config) {
			c.Clusters[0].Engine = topology.MySQL
			c.Clusters[0].Promotion.AutoFailover = &on
		}, []string{"clusters[0].promotion.auto_failover: promotion is implemented for MariaDB and PostgreSQL, not MySQL yet"}},
		{"mysql with a backup schedule", func(c *Config) {
			c.Clusters[0].Engine = topology.MySQL
			c.Clusters[0].Promotion.AutoFailover = &off
			c.Clusters[0].Backup.Schedule = "@daily"
		}, []string{"clusters[0].backup.schedule: backups are implemented for MariaDB and PostgreSQL, not MySQL yet", "mariadb-backup"}},
		{"mysql that only monitors", func(c *Config) {
			c.Clusters[0].Engine = topology.MySQL
			c.Clusters[0].Promotion.AutoFailover = &off
			c.Clusters[0].Stream.SemiSync = true
		}, nil},
		{"manager members", func(c *Config) { c.Manager = Manager{Name: "m1", Members: []string{"m1", "m2", "m3"}} }, nil},
		{"members without this manager", func(c *Config) { c.Manager = Manager{Name: "m4", Members: []string{"m1", "m2"}} },
			[]string{`manager.members: does not list this manager (manager.name "m4")`}},
		{"members without a name", func(c *Config) { c.Manager = Manager{Members: []string{"m1", "m2"}} },
			[]string{"manager.name: must be set when manager.members is"}},
		{"a member twice", func(c *Config) { c.Manager = Manager{Name: "m1", Members: []string{"m1", "m1"}} },
			[]string{`manager.members[1]: "m1" is listed twice`}},
		{"several problems at once", func(c *Config) { c.StateDir = ""; c.Clusters[0].User = "" },
			[]string{"state_dir: must be set", "clusters[0].user: must be set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Clusters = []Cluster{validCluster()}
			tc.mutate(&cfg)
			err := Validate(cfg, "dbha.yaml")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got nil", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "dbha.yaml: ") {
				t.Errorf("error %q does not name the file first", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *config.Error: %T", err)
			}
		})
	}
}

func TestSecretRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"PW": "fromenv", "BLANK": ""}[k]
		return v, ok
	}
	cases := []struct {
		name    string
		s       Secret
		want    string
		wantErr error
	}{
		{"file, trailing newline stripped", Secret{File: file}, "s3cret", nil},
		{"env", Secret{Env: "PW"}, "fromenv", nil},
		{"empty file", Secret{File: empty}, "", ErrNoSecret},
		{"unset variable", Secret{Env: "NOPE"}, "", ErrNoSecret},
		{"blank variable", Secret{Env: "BLANK"}, "", ErrNoSecret},
		{"missing file", Secret{File: filepath.Join(dir, "missing")}, "", os.ErrNotExist},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Read(env)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"0", 0, true}, {"1024", 1024, true}, {"64KiB", 64 << 10, true}, {"500MB", 500e6, true},
		{"10GiB", 10 << 30, true}, {" 2 TiB ", 2 << 40, true}, {"7B", 7, true},
		{"", 0, false}, {"lots", 0, false}, {"-1MB", 0, false}, {"1.5GB", 0, false}, {"9999999999TiB", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseByteSize(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
			if tc.ok {
				back, err := ParseByteSize(got.String())
				if err != nil || back != got {
					t.Fatalf("String() %q does not read back: %d, %v", got.String(), back, err)
				}
			}
		})
	}
}

func TestWithDefaultsKeepsWhatIsSet(t *testing.T) {
	off := false
	cl := validCluster()
	cl.Stream = Stream{Enabled: &off, ServerID: 42, Slot: "mine", Retention: Retention{MaxSize: 1 << 20}}
	got := WithDefaults(Config{Clusters: []Cluster{cl, validCluster()}})
	if st := got.Clusters[0].Stream; st.IsEnabled() || st.ServerID != 42 || st.Slot != "mine" || st.Retention.MaxSize != 1<<20 || st.Retention.MaxAge != DefaultRetentionAge {
		t.Errorf("first cluster stream = %+v", st)
	}
	if st := got.Clusters[1].Stream; !st.IsEnabled() || st.ServerID != DerivedServerID("c1") {
		t.Errorf("second cluster stream = %+v", st)
	}
	if cl.Stream.Retention.MaxAge != 0 {
		t.Errorf("WithDefaults changed its input")
	}
}
