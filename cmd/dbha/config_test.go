package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbha/dbha/config"
)

const goodYAML = `
state_dir: state
consul:
  address: 127.0.0.1:8500
clusters:
  - name: c1
    engine: mariadb
    instances: ["127.0.0.1:3306", "127.0.0.1:3307"]
    user: dbha
    password_file: secrets/dbha.pw
    promotion:
      priority: {"127.0.0.1:3306": 5}
      never: ["127.0.0.1:3307"]
    replication:
      user: repl
      password_env: REPL_PW
  - name: c2
    engine: postgres
    stream:
      synchronous: true
      retention:
        max_size: 1GiB
    instances: ["127.0.0.1:5432"]
    user: dbha
    password_env: PG_PW
    replication:
      user: repl
      password_env: PG_PW
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dbha.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	path := writeConfig(t, goodYAML)
	cfg, err := loadConfig(path, []string{"DBHA_CONSUL_ADDRESS=127.0.0.2:8501", "DBHA_CLUSTERS_1_USER=other",
		"DBHA_PROBE_TIMEOUT=250ms", "DBHA_CHECKS_LINK_DEAD_AFTER=5s", "DBHA_CHECKS_INTERVAL=1s", "DBHA_CLUSTERS_1_STREAM_ENABLED=false", "DBHA_CLUSTERS_1_STREAM_RETENTION_MAX_SIZE=500MiB", "DBHA_CLUSTERS_0_INSTANCES=127.0.0.1:3306,127.0.0.1:3307,127.0.0.1:3308",
		"PG_PW=x", "DBHA_CONFIG=ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Consul.Address != "127.0.0.2:8501" {
		t.Errorf("consul.address = %q, want the env override", cfg.Consul.Address)
	}
	if cfg.Clusters[1].User != "other" || cfg.Clusters[0].User != "dbha" {
		t.Errorf("users = %q, %q", cfg.Clusters[0].User, cfg.Clusters[1].User)
	}
	if cfg.Checks.LinkDeadAfter != 5*time.Second || cfg.Checks.Interval != time.Second || cfg.Checks.Failures != 2 {
		t.Errorf("checks = %+v, want link_dead_after and interval from the environment, failures by default", cfg.Checks)
	}
	if cfg.Probe.Timeout != 250*time.Millisecond {
		t.Errorf("probe.timeout = %v", cfg.Probe.Timeout)
	}
	if got := strings.Join(cfg.Clusters[0].Instances, " "); got != "127.0.0.1:3306 127.0.0.1:3307 127.0.0.1:3308" {
		t.Errorf("instances = %s", got)
	}
	dir := filepath.Dir(path)
	if cfg.StateDir != filepath.Join(dir, "state") || cfg.Clusters[0].PasswordFile != filepath.Join(dir, "secrets/dbha.pw") {
		t.Errorf("relative paths not resolved against the file: %q %q", cfg.StateDir, cfg.Clusters[0].PasswordFile)
	}
	if st := cfg.Clusters[0].Stream; !st.IsEnabled() || st.Slot != "dbha" || st.ServerID < 3_000_000_000 || st.Retention.MaxSize != 10<<30 {
		t.Errorf("stream defaults not applied: %+v", st)
	}
	if st := cfg.Clusters[1].Stream; st.IsEnabled() || !st.Synchronous || st.Retention.MaxSize != 500<<20 {
		t.Errorf("stream settings not read: %+v", st)
	}
	if pr := cfg.Clusters[0].Promotion; pr.Priority["127.0.0.1:3306"] != 5 || !pr.IsAutoFailover() || pr.Window() != 30*time.Minute {
		t.Errorf("promotion = %+v", pr)
	}
	if cfg.Clusters[0].Replication.PasswordEnv != "REPL_PW" {
		t.Errorf("replication.password_env = %q", cfg.Clusters[0].Replication.PasswordEnv)
	}
}

// TestLoadConfigBlockFor: promotion.block_for is the anti-flap window; unset
// it is the default, 0 turns the rule off, and an environment variable
// sets it like any key.
func TestLoadConfigBlockFor(t *testing.T) {
	cases := []struct {
		name    string
		setting string
		environ []string
		want    time.Duration
	}{
		{"unset: the default", "", nil, config.DefaultBlockFor},
		{"set", "      block_for: 5m\n", nil, 5 * time.Minute},
		{"0 turns it off", "      block_for: 0\n", nil, 0},
		{"0s turns it off", "      block_for: 0s\n", nil, 0},
		{"from the environment", "", []string{"DBHA_CLUSTERS_0_PROMOTION_BLOCK_FOR=0"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(goodYAML, "    promotion:\n", "    promotion:\n"+tc.setting, 1)
			cfg, err := loadConfig(writeConfig(t, body), append(tc.environ, "PG_PW=x"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Clusters[0].Promotion.Window(); got != tc.want {
				t.Errorf("block_for = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLoadConfigAccounts: the cluster's, the backup's and the drill's
// accounts are one embedded config.Account, and their keys still read from
// the file and from DBHA_ variables at the level they always had.
func TestLoadConfigAccounts(t *testing.T) {
	withAccounts := strings.Replace(goodYAML, "  - name: c2\n", `    backup:
      user: admin
      password_file: secrets/admin.pw
    drill:
      user: app
      password_env: APP_PW
  - name: c2
`, 1)
	cluster := func(cl config.Cluster) config.Account { return cl.Account }
	backup := func(cl config.Cluster) config.Account { return cl.Backup.Account }
	drill := func(cl config.Cluster) config.Account { return cl.Drill.Account }
	cases := []struct {
		name    string
		body    string
		environ []string
		cluster int
		account func(config.Cluster) config.Account
		want    config.Account // password_file relative to the file's directory
	}{
		{"cluster from the file", withAccounts, nil, 0, cluster, config.Account{User: "dbha", PasswordFile: "secrets/dbha.pw"}},
		{"backup from the file", withAccounts, nil, 0, backup, config.Account{User: "admin", PasswordFile: "secrets/admin.pw"}},
		{"drill from the file", withAccounts, nil, 0, drill, config.Account{User: "app", PasswordEnv: "APP_PW"}},
		{"cluster from the environment", withAccounts,
			[]string{"DBHA_CLUSTERS_0_USER=ops", "DBHA_CLUSTERS_0_PASSWORD_FILE=secrets/ops.pw"},
			0, cluster, config.Account{User: "ops", PasswordFile: "secrets/ops.pw"}},
		{"backup from the environment", withAccounts,
			[]string{"DBHA_CLUSTERS_0_BACKUP_USER=bk", "DBHA_CLUSTERS_0_BACKUP_PASSWORD_FILE=secrets/bk.pw"},
			0, backup, config.Account{User: "bk", PasswordFile: "secrets/bk.pw"}},
		{"drill from the environment", withAccounts,
			[]string{"DBHA_CLUSTERS_0_DRILL_USER=dr", "DBHA_CLUSTERS_0_DRILL_PASSWORD_ENV=DR_PW"},
			0, drill, config.Account{User: "dr", PasswordEnv: "DR_PW"}},
		{"backup from the environment alone", goodYAML,
			[]string{"DBHA_CLUSTERS_1_BACKUP_USER=bk", "DBHA_CLUSTERS_1_BACKUP_PASSWORD_ENV=BK_PW"},
			1, backup, config.Account{User: "bk", PasswordEnv: "BK_PW"}},
		{"drill from the environment alone", goodYAML,
			[]string{"DBHA_CLUSTERS_0_DRILL_USER=dr", "DBHA_CLUSTERS_0_DRILL_PASSWORD_FILE=secrets/dr.pw"},
			0, drill, config.Account{User: "dr", PasswordFile: "secrets/dr.pw"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			cfg, err := loadConfig(path, tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want.PasswordFile != "" {
				want.PasswordFile = filepath.Join(filepath.Dir(path), want.PasswordFile)
			}
			if got := tc.account(cfg.Clusters[tc.cluster]); got != want {
				t.Errorf("clusters[%d] account = %+v, want %+v", tc.cluster, got, want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		environ []string
		want    []string
	}{
		{"unknown key", strings.Replace(goodYAML, "password_file:", "pasword_file:", 1), nil,
			[]string{"clusters[0].pasword_file: unknown key"}},
		{"unknown top-level key", goodYAML + "colour: blue\n", nil, []string{"colour: unknown key"}},
		{"unknown key beside an embedded account", strings.Replace(goodYAML, "    promotion:\n", "    backup:\n      user: admin\n      usr: admin\n    promotion:\n", 1), nil,
			[]string{"clusters[0].backup.usr: unknown key"}},
		{"duplicate cluster", strings.Replace(goodYAML, "name: c2", "name: c1", 1), nil,
			[]string{`clusters[1].name: duplicate cluster name "c1"`}},
		{"empty instances", strings.Replace(goodYAML, `instances: ["127.0.0.1:5432"]`, "instances: []", 1), nil,
			[]string{"clusters[1].instances: empty"}},
		{"bad host:port", strings.Replace(goodYAML, "127.0.0.1:3307", "127.0.0.1", 1), nil,
			[]string{`clusters[0].instances[1]: "127.0.0.1" is not host:port`}},
		{"bad duration", goodYAML + "probe:\n  timeout: soon\n", nil, []string{"probe.timeout"}},
		{"bad size", goodYAML, []string{"DBHA_CLUSTERS_0_STREAM_RETENTION_MAX_SIZE=lots"}, []string{"max_size", `"lots" is not a size`}},
		{"semi_sync on postgres", strings.Replace(goodYAML, "synchronous: true", "semi_sync: true", 1), nil,
			[]string{"clusters[1].stream.semi_sync: is for MariaDB/MySQL"}},
		{"env names no key", goodYAML, []string{"DBHA_STAT_DIR=/x"}, []string{"DBHA_STAT_DIR: names no configuration key"}},
		{"env index past the list", goodYAML, []string{"DBHA_CLUSTERS_5_USER=x"}, []string{"DBHA_CLUSTERS_5_USER: clusters[5] is not in the file"}},
		{"not yaml", "clusters: [\n", nil, []string{"dbha.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, err := loadConfig(path, tc.environ)
			if err == nil {
				t.Fatalf("want an error, got none")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %s", err, path)
			}
		})
	}
}

func TestSecretVariablesAreNotOverrides(t *testing.T) {
	body := strings.Replace(goodYAML, "password_env: REPL_PW", "password_env: DBHA_REPL_PASSWORD", 1)
	if _, err := loadConfig(writeConfig(t, body), []string{"DBHA_REPL_PASSWORD=x", "PG_PW=y"}); err != nil {
		t.Fatalf("a DBHA_ variable named as password_env must not be read as a key: %v", err)
	}
}

func TestExitCodes(t *testing.T) {
	bad := writeConfig(t, strings.Replace(goodYAML, "engine: mariadb", "engine: oracle", 1))
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"config error", []string{"--config", bad, "topology"}, exitUsage},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.yaml"), "topology"}, exitUsage},
		{"unknown flag", []string{"topology", "--colour"}, exitUsage},
		{"bad output format", []string{"--config", bad, "topology", "-o", "yaml"}, exitUsage},
		{"unknown command", []string{"topolgy"}, exitUsage},
		{"stray argument", []string{"topology", "extra"}, exitUsage},
		{"help", []string{"--help"}, exitOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.args); got != tc.want {
				t.Fatalf("run(%q) = %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}
