package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/daemon"
)

// The parts of `dbha run` around detection, against the lab: the HTTP API
// and metrics, peer observations through a real Consul, and `dbha check`.

// serveAPI serves the monitor's HTTP endpoints on a free loopback port
// until the test ends and returns the base URL.
func serveAPI(t *testing.T, m *daemon.Monitor, token string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- daemon.Serve(ctx, daemon.Endpoint{Addr: "127.0.0.1:0"}, daemon.Handler(m, token), func(a net.Addr) { addrs <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-addrs:
		return "http://" + a.String()
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the HTTP endpoint did not start listening")
	}
	return ""
}

// get fetches path with the token as bearer ("" sends none).
func get(t *testing.T, base, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metricLines returns the samples of one metric that carry every label given.
func metricLines(body, metric string, labels ...string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			out = append(out, line)
		}
	}
	return out
}

func TestHTTPAPI(t *testing.T) {
	l := sharedLab(t)
	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	m, _ := runMonitor(t, daemon.Options{Clusters: monitored(t, l)}, true)
	for _, c := range labEngines {
		waitState(t, m, c.cluster, "no findings", 30*time.Second, noFindings)
	}
	const token = "s3cret-test-token"
	base := serveAPI(t, m, token)

	if code, _ := get(t, base, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz without a token: %d, want 200", code)
	}
	for _, tok := range []string{"", "wrong-token"} {
		if code, _ := get(t, base, "/api/v1/clusters", tok); code != http.StatusUnauthorized {
			t.Errorf("/api/v1/clusters with token %q: %d, want 401", tok, code)
		}
		if code, _ := get(t, base, "/metrics", tok); code != http.StatusUnauthorized {
			t.Errorf("/metrics with token %q: %d, want 401", tok, code)
		}
	}

	code, body := get(t, base, "/api/v1/clusters", token)
	if code != http.StatusOK {
		t.Fatalf("/api/v1/clusters: %d\n%s", code, body)
	}
	var doc struct {
		Clusters []struct {
			Cluster  string            `json:"cluster"`
			Cycles   int64             `json:"cycles"`
			Findings []json.RawMessage `json:"findings"`
			Evidence struct {
				Primary string                     `json:"primary"`
				Links   map[string]json.RawMessage `json:"links"`
				Manager struct {
					SQL struct {
						OK bool `json:"ok"`
					} `json:"sql"`
				} `json:"manager"`
			} `json:"evidence"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("the API's JSON does not parse: %v\n%s", err, body)
	}
	if len(doc.Clusters) != 2 {
		t.Fatalf("%d clusters in the API, want 2:\n%s", len(doc.Clusters), body)
	}
	for i, c := range labEngines {
		got := doc.Clusters[i]
		if got.Cluster != c.cluster || got.Cycles == 0 || got.Evidence.Primary != addr(t, l, c.kind+"-1") ||
			!got.Evidence.Manager.SQL.OK || len(got.Evidence.Links) != 2 {
			t.Errorf("cluster %d: %+v, want %s with cycles, its primary, dbha's SQL probe OK and two links", i, got, c.cluster)
		}
	}

	code, body = get(t, base, "/metrics", token)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, c := range labEngines {
		for _, node := range []string{"-1", "-2", "-3"} {
			a := addr(t, l, c.kind+node)
			if up := metricLines(body, "dbha_instance_up", `cluster="`+c.cluster+`"`, `instance="`+a+`"`); len(up) != 1 || !strings.HasSuffix(up[0], " 1") {
				t.Errorf("dbha_instance_up for %s: %q", a, up)
			}
		}
		// One manager, two replicas: the primary alone may be lost (3 of 4 voters).
		if f := metricLines(body, "dbha_failover_possible", `cluster="`+c.cluster+`"`); len(f) != 1 || !strings.HasSuffix(f[0], " 1") {
			t.Errorf("dbha_failover_possible for %s: %q", c.cluster, f)
		}
		if f := metricLines(body, "dbha_quorum_needed_votes", `cluster="`+c.cluster+`"`); len(f) != 1 || !strings.HasSuffix(f[0], " 3") {
			t.Errorf("dbha_quorum_needed_votes for %s: %q", c.cluster, f)
		}
	}

	// A problem shows up in the metrics.
	replica := adminDB(t, l, "mariadb-2")
	mustExec(t, replica, "STOP SLAVE SQL_THREAD")
	defer func() {
		mustExec(t, replica, "START SLAVE SQL_THREAD")
		waitSnapshot(t, l, "lab-mariadb", "healthy again", healthy)
	}()
	waitState(t, m, "lab-mariadb", "ReplicationStopped", 15*time.Second, showing(checks.ReplicationStopped))
	_, body = get(t, base, "/metrics", token)
	if f := metricLines(body, "dbha_findings", `cluster="lab-mariadb"`, `code="ReplicationStopped"`); len(f) != 1 || !strings.HasSuffix(f[0], " 1") {
		t.Errorf("dbha_findings for the stopped SQL thread: %q", f)
	}
}

func TestConsulPeerObservations(t *testing.T) {
	l := sharedLab(t)
	c, err := l.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster := fmt.Sprintf("peers-test-%d", time.Now().UnixNano())
	mine := checks.PeerView{Manager: "a", At: time.Now().UTC().Truncate(time.Millisecond), Primary: "127.0.0.1:1", Reaches: true, Detail: "hello"}
	if err := c.PublishObservation(ctx, cluster, mine); err != nil {
		t.Fatal(err)
	}
	got, err := c.Peers(ctx, cluster, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Manager != "a" || !got[0].At.Equal(mine.At) || got[0].Primary != mine.Primary || !got[0].Reaches || got[0].Detail != "hello" {
		t.Errorf("peers of b = %+v, want a's observation %+v", got, mine)
	}
	if got, err := c.Peers(ctx, cluster, "a"); err != nil || len(got) != 0 {
		t.Errorf("peers of a = %+v (%v), want none: a is not its own peer", got, err)
	}
}

// TestPeerThatReachesThePrimary: a manager whose own path and replicas say
// the primary is dead does not call it dead while a fresh peer, through
// Consul, still reaches it; once the peer agrees, it does.
func TestPeerThatReachesThePrimary(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	c, err := l.ConsulClient()
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "lab-mariadb"
	m, fl := runMonitor(t, daemon.Options{Manager: "a", Peers: c, Clusters: monitored(t, l, cluster)}, true)
	waitState(t, m, cluster, "a healthy cluster", 30*time.Second, noFindings)
	primary := addr(t, l, "mariadb-1")
	eventually(t, "the monitor's own observation in Consul", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ps, err := c.Peers(ctx, cluster, "b")
		if err != nil || len(ps) != 1 || ps[0].Manager != "a" || ps[0].Primary != primary || !ps[0].Reaches {
			return fmt.Errorf("peers of b: %+v (%v)", ps, err)
		}
		return nil
	})

	// Peer b keeps publishing what it sees, as another dbha run would.
	var reaches atomic.Bool
	reaches.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			v := checks.PeerView{Manager: "b", At: time.Now(), Primary: primary, Reaches: reaches.Load(), Detail: "test peer"}
			c.PublishObservation(pctx, cluster, v)
			pcancel()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitState(t, m, cluster, "b's observation in the evidence", 10*time.Second, func(st daemon.State) error {
		if !slices.ContainsFunc(st.Evidence.Peers, func(p checks.PeerView) bool { return p.Manager == "b" }) {
			return fmt.Errorf("peers in the evidence: %+v", st.Evidence.Peers)
		}
		return nil
	})

	if err := l.Signal("mariadb-1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, cluster, "UnreachablePrimary", 15*time.Second, showing(checks.UnreachablePrimary))
	f, _ := findingOf(st, checks.UnreachablePrimary)
	if !hasVote(f, checks.PathPeer, checks.Alive) || !hasVote(f, checks.PathManager, checks.Dead) {
		t.Errorf("UnreachablePrimary without b's alive vote:%s", describeFindings(st.Findings))
	}
	// Long enough for every replica's link to be down too.
	until := st.Cycles + 12
	waitState(t, m, cluster, "12 more cycles", 15*time.Second, func(st daemon.State) error {
		if st.Cycles < until {
			return fmt.Errorf("at cycle %d", st.Cycles)
		}
		return nil
	})
	if dead := fl.appeared(cluster, checks.DeadPrimary, checks.DeadPrimaryAndSomeReplicas); len(dead) > 0 {
		t.Errorf("DeadPrimary while a peer reached the primary: %+v", dead)
	}

	reaches.Store(false)
	st = waitState(t, m, cluster, "DeadPrimary once the peer agrees", 15*time.Second, showing(checks.DeadPrimary))
	if f, _ := findingOf(st, checks.DeadPrimary); !hasVote(f, checks.PathPeer, checks.Dead) {
		t.Errorf("DeadPrimary without b's dead vote:%s", describeFindings(st.Findings))
	}
}

// TestCheckCLI runs `dbha check` as an operator would, on a healthy lab and
// then with both primaries killed.
func TestCheckCLI(t *testing.T) {
	t.Parallel()
	l := ownLab(t)
	bin := filepath.Join(t.TempDir(), "dbha")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/dbha/dbha/cmd/dbha").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	check := func() (int, []checkOutput) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "--config", l.ConfigPath, "check", "-o", "json").Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Clusters []checkOutput `json:"clusters"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("check -o json (exit %d) does not parse: %v\n%s", code, err, out)
		}
		return code, doc.Clusters
	}

	waitSnapshot(t, l, "lab-mariadb", "a healthy cluster", healthy)
	waitSnapshot(t, l, "lab-postgres", "a healthy cluster", healthy)
	if code, cls := check(); code != 0 || len(cls) != 2 {
		t.Errorf("check on a healthy lab: exit %d, %+v", code, cls)
	}

	for _, c := range labEngines {
		if err := l.Signal(c.kind+"-1", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	code, cls := check()
	if code != 1 || len(cls) != 2 {
		t.Fatalf("check with the primaries killed: exit %d, %+v, want 1", code, cls)
	}
	for i, c := range labEngines {
		f, ok := findingOf(daemon.State{Findings: cls[i].Findings}, checks.DeadPrimary)
		if cls[i].Cluster != c.cluster || !ok || f.Instance != addr(t, l, c.kind+"-1") || f.Action != checks.Recover ||
			!hasVote(f, checks.PathManager, checks.Dead) || !hasVote(f, checks.PathReplica, checks.Dead) || len(cls[i].Votes) < 3 {
			t.Errorf("%s: want DeadPrimary with the votes of dbha and the replicas; got %+v", c.cluster, cls[i])
		}
	}
}

// checkOutput is one cluster of `dbha check -o json`, as a script reads it.
type checkOutput struct {
	Cluster  string           `json:"cluster"`
	Findings []checks.Finding `json:"findings"`
	Votes    []checks.Vote    `json:"votes"`
}
