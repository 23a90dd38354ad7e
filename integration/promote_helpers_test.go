package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"gopkg.in/yaml.v3"

	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

// What the promotion tests share: the dbha binary, a lab of the test's own
// that knows it, the CLI and `dbha run` as child processes, and reading
// back what they did (recovery records, endpoints, logs).

// dbhaBuild is the dbha binary the promotion tests run, built on first use
// and removed when the last test that uses it ends. (A sync.Once alone
// could not remove it: the package has one TestMain, not ours.) Each test
// takes its reference before t.Parallel, so every test holds one before
// the first of them ends and the binary is built once per package run.
var dbhaBuild struct {
	mu    sync.Mutex
	dir   string
	users int
}

// dbhaBinary returns the path of the built dbha binary. Call it before
// t.Parallel.
func dbhaBinary(t *testing.T) string {
	t.Helper()
	b := &dbhaBuild
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir == "" {
		dir, err := os.MkdirTemp("", "dbha-bin-")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "dbha"), "github.com/dbha/dbha/cmd/dbha").CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("go build: %v\n%s", err, out)
		}
		t.Logf("built dbha in %v", time.Since(start).Round(time.Millisecond))
		b.dir = dir
	}
	b.users++
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.users--; b.users == 0 {
			os.RemoveAll(b.dir)
			b.dir = ""
		}
	})
	return filepath.Join(b.dir, "dbha")
}

// binLab brings up a lab of the test's own whose dbha.yaml runs bin (the
// PostgreSQL rejoin_command), and stops and removes it when the test ends.
// The lab is read back from disk for that: `dbha lab rejoin`, run by a
// `dbha run` child, restarts nodes and records their new PIDs there.
// withWitness gives binLab's clusters the lab's witness (Options.Witness).
func withWitness(o *Options) { o.Witness = true }

func binLab(t *testing.T, bin string, opts ...func(*Options)) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	o := Options{Binary: bin}
	for _, f := range opts {
		f(&o)
	}
	l := upLab(t, ctx, o)
	t.Logf("lab up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		current := l
		if fresh, err := Load(l.Dir); err == nil {
			current = fresh
		}
		if err := current.Down(ctx, true); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// cliResult is what one dbha command did.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// dbhaCLI runs one dbha command against the lab, bounded.
func dbhaCLI(t *testing.T, bin string, l *Lab, args ...string) cliResult {
	t.Helper()
	return dbhaCLIEnv(t, bin, l, nil, args...)
}

// dbhaCLIEnv is dbhaCLI with env (DBHA_CONSUL_ADDRESS=..., ...) added to
// the command's environment.
func dbhaCLIEnv(t *testing.T, bin string, l *Lab, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", l.ConfigPath}, args...)...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("dbha %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// dryRunPlan runs `dbha promote --dry-run -o json` on cluster, with env
// added to its environment, and returns the plan it printed.
func dryRunPlan(t *testing.T, bin string, l *Lab, cluster string, env ...string) promote.Plan {
	t.Helper()
	r := dbhaCLIEnv(t, bin, l, env, "promote", "--cluster", cluster, "--dry-run", "-o", "json")
	var plan promote.Plan
	if err := json.Unmarshal([]byte(r.stdout), &plan); r.code != 0 || err != nil {
		t.Fatalf("%s: promote --dry-run -o json %v (%v): %s", cluster, env, err, r)
	}
	return plan
}

// checkDryRunConsistency checks that `dbha promote --dry-run` plans as a
// promotion would while the cluster's checksum summary in Consul marks
// replica different in table: ranked below the others with why, in JSON
// and text, and refused by name without --force. Without Consul the dry
// run still plans, and says that the summary was not read.
func checkDryRunConsistency(t *testing.T, bin string, l *Lab, cluster, replica, table string) {
	t.Helper()
	plan := dryRunPlan(t, bin, l, cluster)
	marked := func(c promote.Candidate) bool {
		return c.Inconsistent && slices.ContainsFunc(c.Reasons, func(why string) bool {
			return strings.Contains(why, "differs from the primary") && strings.Contains(why, table)
		})
	}
	i := slices.IndexFunc(plan.Candidates, func(c promote.Candidate) bool { return c.Addr == replica })
	if i < 0 || !marked(plan.Candidates[i]) || plan.NewPrimary == replica || plan.ConsistencyUnknown != "" {
		t.Errorf("dry run with %s different in %s: new primary %s, consistency unknown %q, candidates %+v",
			replica, table, plan.NewPrimary, plan.ConsistencyUnknown, plan.Candidates)
	}
	for _, c := range plan.Candidates {
		if c.Addr != replica && c.Inconsistent {
			t.Errorf("dry run: %s marked inconsistent too: %+v", c.Addr, c)
		}
	}
	text := dbhaCLI(t, bin, l, "promote", "--cluster", cluster, "--dry-run")
	if text.code != 0 || !strings.Contains(text.stdout, "ranked below the others: it differs from the primary") {
		t.Errorf("dry run, text: %s", text)
	}
	if r := dbhaCLI(t, bin, l, "promote", "--cluster", cluster, "--dry-run", "--to", replica); r.code == 0 || !strings.Contains(r.stderr, "differs from the primary") {
		t.Errorf("a dry run of a switchover to the inconsistent %s: %s", replica, r)
	}

	noConsul := "DBHA_CONSUL_ADDRESS=127.0.0.1:1" // nothing listens there
	plan = dryRunPlan(t, bin, l, cluster, noConsul)
	unread := slices.ContainsFunc(plan.Warnings, func(w string) bool { return strings.Contains(w, "could not be read") })
	if plan.ConsistencyUnknown == "" || !unread || slices.ContainsFunc(plan.Candidates, func(c promote.Candidate) bool { return c.Inconsistent }) {
		t.Errorf("dry run without Consul: consistency unknown %q, warnings %q, candidates %+v", plan.ConsistencyUnknown, plan.Warnings, plan.Candidates)
	}
	text = dbhaCLIEnv(t, bin, l, []string{noConsul}, "promote", "--cluster", cluster, "--dry-run")
	if text.code != 0 || !strings.Contains(text.stdout, "warning: what consistency checks found could not be read") {
		t.Errorf("dry run without Consul, text: %s", text)
	}
	t.Logf("dry run without Consul: %s", plan.ConsistencyUnknown)
}

// recoveryList returns the cluster's recoveries as `dbha recover list -o
// json` prints them, oldest first.
func recoveryList(t *testing.T, bin string, l *Lab, cluster string) []promote.Record {
	t.Helper()
	r := dbhaCLI(t, bin, l, "recover", "list", "--cluster", cluster, "-o", "json")
	if r.code != 0 {
		t.Fatalf("recover list: %s", r)
	}
	var doc struct {
		Recoveries []promote.Record `json:"recoveries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("recover list -o json does not parse: %v\n%s", err, r.stdout)
	}
	return doc.Recoveries
}

// waitRecoveryDone waits for the cluster's latest recovery to be done (not
// aborted) and returns it.
func waitRecoveryDone(t *testing.T, bin string, l *Lab, cluster string, limit time.Duration) promote.Record {
	t.Helper()
	var rec promote.Record
	waitUntil(t, limit, cluster+": a finished recovery", func() error {
		recs := recoveryList(t, bin, l, cluster)
		if len(recs) == 0 || !recs[len(recs)-1].Done || recs[len(recs)-1].Aborted {
			return fmt.Errorf("recoveries: %s", describeRecords(recs))
		}
		rec = recs[len(recs)-1]
		return nil
	})
	return rec
}

func describeRecords(recs []promote.Record) string {
	if len(recs) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  %s %s %s -> %s done=%v aborted=%v next=%d error=%q", r.ID, r.Kind, r.Plan.OldPrimary, r.Plan.NewPrimary, r.Done, r.Aborted, r.Next, r.Error)
	}
	return b.String()
}

// writers returns what the writer service names in the catalog.
func writers(t *testing.T, c *consul.Client, cluster string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := c.Writer(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// rejoined accepts a healthy cluster whose primary is primary and in
// which old replicates from it.
func rejoined(primary, old string) func(topology.Snapshot) error {
	return func(s topology.Snapshot) error {
		if s.Primary != primary {
			return fmt.Errorf("primary is %q, want %s", s.Primary, primary)
		}
		if in, _ := s.Instance(old); in.Replication == nil || in.Replication.Source != primary {
			return fmt.Errorf("%s does not replicate from %s: %+v", old, primary, in.Replication)
		}
		return healthy(s)
	}
}

// waitHealthy is waitSnapshot with a bound of the caller's.
func waitHealthy(t *testing.T, l *Lab, cluster string, limit time.Duration, what string, ok func(topology.Snapshot) error) topology.Snapshot {
	t.Helper()
	var s topology.Snapshot
	waitUntil(t, limit, cluster+": "+what, func() error {
		s = discover(t, l, cluster)
		return ok(s)
	})
	return s
}

// dbhaRun is a `dbha run` child process. Its output goes to a file that
// the test log shows when the test fails.
type dbhaRun struct {
	manager string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// startDbhaRun starts `dbha run` as manager (DBHA_MANAGER_NAME, the
// manager.name key), with env (DBHA_ overrides of the lab's config) added;
// it is stopped with SIGTERM when the test ends.
func startDbhaRun(t *testing.T, bin string, l *Lab, manager string, env ...string) *dbhaRun {
	t.Helper()
	return startDbhaRunWith(t, bin, l.ConfigPath, manager, env...)
}

// startDbhaRunWith starts `dbha run` on the configuration file config.
func startDbhaRunWith(t *testing.T, bin, config, manager string, env ...string) *dbhaRun {
	t.Helper()
	p := &dbhaRun{manager: manager, logPath: filepath.Join(t.TempDir(), manager+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(bin, "--config", config, "run")
	p.cmd.Env = append(append(os.Environ(), "DBHA_MANAGER_NAME="+manager), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start dbha run: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("dbha run %s (pid %d) log:\n%s", manager, p.cmd.Process.Pid, p.log())
		}
	})
	return p
}

// stop signals the process by its PID and waits, bounded, for it to end.
func (p *dbhaRun) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Logf("signal dbha run %s: %v", p.manager, err)
	}
	select {
	case <-p.exited:
		return
	case <-time.After(20 * time.Second):
	}
	t.Errorf("dbha run %s did not stop within 20 s of %v; killing it", p.manager, sig)
	p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Errorf("dbha run %s (pid %d) still runs after SIGKILL", p.manager, p.cmd.Process.Pid)
	}
}

func (p *dbhaRun) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// logRecord is one JSON line of dbha's log, as far as the tests read it.
type logRecord struct {
	Time    time.Time `json:"time"`
	Msg     string    `json:"msg"`
	Cluster string    `json:"cluster"`
	Code    string    `json:"code"`
	Err     string    `json:"err"`
}

// records returns the log lines of cluster whose message starts with msg.
func (p *dbhaRun) records(cluster, msg string) []logRecord {
	var out []logRecord
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r logRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Cluster == cluster && strings.HasPrefix(r.Msg, msg) {
			out = append(out, r)
		}
	}
	return out
}

// appeared returns the "finding appeared" lines of code in cluster.
func (p *dbhaRun) appeared(cluster, code string) []logRecord {
	var out []logRecord
	for _, r := range p.records(cluster, "finding appeared") {
		if r.Code == code {
			out = append(out, r)
		}
	}
	return out
}

// waitPublishedWriter waits until the writer service names want.
func waitPublishedWriter(t *testing.T, c *consul.Client, cluster, want string) {
	t.Helper()
	waitUntil(t, 30*time.Second, cluster+": the writer service naming "+want, func() error {
		if w := writers(t, c, cluster); len(w) != 1 || w[0] != want {
			return fmt.Errorf("writer service names %v", w)
		}
		return nil
	})
}

// resolveWriter resolves the writer through Consul DNS, as clients do.
func resolveWriter(t *testing.T, l *Lab, cluster string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := consul.Resolve(ctx, l.ConsulDNS, consul.WriterService(cluster))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// rowCount counts the heartbeat rows with id up to maxID on a node, and
// returns the highest id.
func rowCount(t *testing.T, l *Lab, node string, maxID int64) (count, highest int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const q = "SELECT count(*), coalesce(max(id), 0) FROM heartbeat WHERE id <= $1::bigint"
	if strings.HasPrefix(node, KindPostgres) {
		conn, err := l.AdminPostgres(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, q, maxID).Scan(&count, &highest); err != nil {
			t.Fatalf("count rows on %s: %v", node, err)
		}
		return count, highest
	}
	db, err := l.AdminMySQL(node)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mq := strings.NewReplacer("heartbeat", "dbha_lab.heartbeat", "$1::bigint", "?").Replace(q)
	if err := db.QueryRowContext(ctx, mq, maxID).Scan(&count, &highest); err != nil {
		t.Fatalf("count rows on %s: %v", node, err)
	}
	return count, highest
}

// instanceState is what a dry run must leave as it found it.
type instanceState struct {
	Reachable               bool
	Role                    topology.Role
	ReadOnly                bool
	Current, Received       string
	Applied, Source         string
	IORunning, SQLRunning   bool
	ReplicationConfigured   bool
	ErrantTransactionsFound string
}

// labState is every instance of both clusters, every Consul key under
// dbha/<cluster>/ and the writer and reader services.
type labState struct {
	Instances map[string]instanceState
	KV        map[string]string
	Services  map[string][]string
}

func recordState(t *testing.T, l *Lab, c *consul.Client) labState {
	t.Helper()
	st := labState{Instances: map[string]instanceState{}, KV: map[string]string{}, Services: map[string][]string{}}
	kv, err := l.ConsulAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, e := range labEngines {
		for _, in := range discover(t, l, e.cluster).Instances {
			is := instanceState{Reachable: in.Reachable, Role: in.Role, ReadOnly: in.ReadOnly,
				Current: in.Current.String(), Received: in.Received.String(), Applied: in.Applied.String(),
				ErrantTransactionsFound: in.Errant.String()}
			if r := in.Replication; r != nil {
				is.ReplicationConfigured, is.Source, is.IORunning, is.SQLRunning = true, r.Source, r.IORunning, r.SQLRunning
			}
			st.Instances[e.cluster+" "+in.Addr] = is
		}
		pairs, _, err := kv.KV().List(consul.Prefix(e.cluster), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			st.KV[p.Key] = string(p.Value)
		}
		if st.Services[consul.WriterService(e.cluster)], err = c.Writer(ctx, e.cluster); err != nil {
			t.Fatal(err)
		}
		if st.Services[consul.ReaderService(e.cluster)], err = c.Readers(ctx, e.cluster); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// writableWindow is a time the old primary was seen writable.
type writableWindow struct{ from, to time.Time }

// watchOldPrimary polls, every 50 ms, whether node is writable and
// whether the writer service names it, until stop is called.
func watchOldPrimary(t *testing.T, l *Lab, c *consul.Client, cluster, node string) (stop func() (windows []writableWindow, named int)) {
	t.Helper()
	a := addr(t, l, node)
	done, finished := make(chan struct{}), make(chan struct{})
	var windows []writableWindow
	named := 0
	go func() {
		defer close(finished)
		var open *writableWindow
		for {
			select {
			case <-done:
				if open != nil {
					windows = append(windows, *open)
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if w, err := c.Writer(ctx, cluster); err == nil && slices.Contains(w, a) {
				named++
			}
			writable, err := isWritable(ctx, l, node)
			cancel()
			now := time.Now()
			switch {
			case err == nil && writable && open == nil:
				open = &writableWindow{from: now, to: now}
			case err == nil && writable:
				open.to = now
			case open != nil: // read-only, or not answering: the window ends
				open.to = now
				windows = append(windows, *open)
				open = nil
			}
		}
	}()
	return func() ([]writableWindow, int) {
		close(done)
		<-finished
		return windows, named
	}
}

// isWritable: MariaDB read_only off; PostgreSQL out of recovery with
// default_transaction_read_only off.
func isWritable(ctx context.Context, l *Lab, node string) (bool, error) {
	if strings.HasPrefix(node, KindPostgres) {
		conn, err := l.AdminPostgres(ctx, node)
		if err != nil {
			return false, err
		}
		defer conn.Close(context.Background())
		var w bool
		err = conn.QueryRow(ctx, "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'").Scan(&w)
		return w, err
	}
	db, err := l.AdminMySQL(node)
	if err != nil {
		return false, err
	}
	defer db.Close()
	var ro bool
	err = db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro)
	return !ro, err
}

func drillLog(l *Lab, cluster string) string {
	return filepath.Join(l.Dir, "state", "drill-"+cluster+".log")
}

// drillRuns is how many kills the drill test asks for: enough that the
// old primary of one run must have rejoined (rewound when it held an
// unreplicated tail) before the next can start.
const drillRuns = 3

// runDrill runs `dbha drill --runs drillRuns -o json`. Nobody helps the
// cluster between runs: the drill's own monitor fences, rewinds and
// rejoins each old primary, as `dbha run` would.
func runDrill(t *testing.T, bin string, l *Lab, cluster string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config", l.ConfigPath, "drill", "--cluster", cluster, "--runs", strconv.Itoa(drillRuns), "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("drill: %v", err)
	}
	return r
}

// addBeforePromoteHook gives every cluster in the lab's dbha.yaml a
// before-promote hook command.
func addBeforePromoteHook(t *testing.T, l *Lab, argv ...string) {
	t.Helper()
	raw, err := os.ReadFile(l.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	clusters, _ := doc["clusters"].([]any)
	for _, c := range clusters {
		cl := c.(map[string]any)
		pr, _ := cl["promotion"].(map[string]any)
		if pr == nil {
			pr = map[string]any{}
			cl["promotion"] = pr
		}
		pr["before_promote"] = [][]string{argv}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.ConfigPath, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
