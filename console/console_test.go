package console

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/promote"
	"github.com/dbha/dbha/topology"
)

type fakeActions struct {
	mu       sync.Mutex
	calls    []string
	backupBy string
}

func (f *fakeActions) Pause(_ context.Context, cluster, by, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "pause "+cluster+" by "+by+" because "+reason)
	return nil
}

func (f *fakeActions) Paused(context.Context, string) (bool, error) { return false, nil }

func (f *fakeActions) Blocked(context.Context, string) (bool, error) { return true, nil }

func (f *fakeActions) LiftBlock(_ context.Context, cluster, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "lift "+cluster)
	return nil
}

func (f *fakeActions) Recoveries(_ context.Context, cluster string, _ int) ([]*promote.Record, error) {
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	return []*promote.Record{{ID: "20261206T030000-shop-1", Kind: promote.Failover, Reason: "DeadPrimary", Started: at, Done: true, RTOSeconds: 0.52,
		Plan:  promote.Plan{OldPrimary: "10.0.0.1:3306", NewPrimary: "10.0.0.2:3306"},
		Steps: []promote.StepResult{{N: 1, Action: "fence", Target: "10.0.0.1:3306", Started: at, Finished: at.Add(30 * time.Millisecond)}}}}, nil
}

func (f *fakeActions) PlanSwitchover(_ context.Context, cluster, to string) (string, error) {
	return "plan: promote " + to + " <b>now</b>", nil
}

func (f *fakeActions) Switchover(_ context.Context, cluster, to, by string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "switchover "+cluster+" to "+to)
	return "done: writer is " + to, nil
}

func (f *fakeActions) Drills(_ context.Context, cluster string, _ int) ([]drill.Summary, error) {
	at := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	return []drill.Summary{{Cluster: cluster, Engine: "mariadb", Mode: "async", Lab: "loopback", Fault: drill.Fault{Name: "kill"}, Writers: 8,
		RunsAsked: 1, Failovers: 1, MedianRTO: 0.512, MaxRTO: 0.512, TargetMedianRTO: 2, TargetMaxRTO: 3, AckedRows: 900, Pass: true, Started: at,
		Runs: []drill.Run{{N: 1, OldPrimary: "10.0.0.1:3306", Verdict: drill.Verdict{NewPrimary: "10.0.0.2:3306", RTOSeconds: 0.512, AckedRows: 900},
			Recovered: true, RejoinSeconds: 1.25, Pass: true}}}}, nil
}

func (f *fakeActions) StartBackup(_ context.Context, cluster, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "backup "+cluster)
	f.backupBy = by
	return nil
}

func (f *fakeActions) BackupByHand(string) (bool, string, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return true, f.backupBy, time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
}

func (f *fakeActions) Resume(_ context.Context, cluster, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "resume "+cluster)
	return nil
}

func states() []daemon.State {
	lag := 0.0
	follows := &topology.Replication{Source: "10.0.0.1:3306", IORunning: true, SQLRunning: true, IOState: "Yes", SQLState: "Yes"}
	return []daemon.State{{
		Cluster: "shop", Engine: topology.MariaDB, Cycles: 3, UpdatedAt: time.Now(),
		Findings: []checks.Finding{{Code: checks.ReplicaLagging, Severity: checks.Warning, Instance: "10.0.0.2:3306", Summary: "behind <script>alert(1)</script>"}},
		Evidence: checks.Evidence{Primary: "10.0.0.1:3306", Snapshot: topology.Snapshot{Cluster: "shop", Primary: "10.0.0.1:3306", Instances: []topology.Instance{
			{Addr: "10.0.0.1:3306", Reachable: true, Role: topology.RolePrimary},
			{Addr: "10.0.0.2:3306", Reachable: true, Role: topology.RoleReplica, ReadOnly: true, Replication: follows, Lag: &topology.Lag{Seconds: &lag}},
		}}},
	}, {Cluster: "billing", Engine: topology.Postgres, Cycles: 1, UpdatedAt: time.Now(),
		Evidence: checks.Evidence{Primary: "10.0.1.1:5432", Snapshot: topology.Snapshot{Cluster: "billing", Primary: "10.0.1.1:5432",
			Instances: []topology.Instance{{Addr: "10.0.1.1:5432", Reachable: true, Role: topology.RolePrimary}}}}}}
}

type client struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
}

func newClient(t *testing.T, srv *httptest.Server) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, srv: srv, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) get(path string) (int, string, http.Header) {
	c.t.Helper()
	resp, err := c.c.Get(c.srv.URL + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String(), resp.Header
}

func (c *client) post(path string, form url.Values) (int, http.Header) {
	c.t.Helper()
	resp, err := c.c.PostForm(c.srv.URL+path, form)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

func TestConsole(t *testing.T) {
	acts := &fakeActions{}
	var audit []AuditLine
	con, err := New(Options{States: states, OperatorToken: "op-token", ViewerToken: "view-token", Actions: acts,
		Audit: func(a AuditLine) error { audit = append(audit, a); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con.Handler())
	defer srv.Close()

	anon := newClient(t, srv)
	if code, _, h := anon.get("/console/"); code != http.StatusSeeOther || h.Get("Location") != "/console/login" {
		t.Fatalf("anonymous overview: %d to %q, want a redirect to the sign-in", code, h.Get("Location"))
	}
	if code, body, _ := anon.get("/console/static/console.js"); code != http.StatusOK || !strings.Contains(body, "data-live") {
		t.Errorf("console.js: %d", code)
	}
	if code, _, _ := anon.get("/console/static/cluster.html"); code != http.StatusNotFound {
		t.Errorf("a template served as a file: %d", code)
	}
	if code, _, _ := anon.get("/console/live/overview"); code != http.StatusUnauthorized {
		t.Errorf("anonymous live fragment: %d, want 401", code)
	}
	if code, h := anon.post("/console/login", url.Values{"token": {"guess"}}); code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "failed") {
		t.Errorf("a wrong token: %d to %q", code, h.Get("Location"))
	}

	viewer := newClient(t, srv)
	code, h := viewer.post("/console/login", url.Values{"token": {"view-token"}})
	cookie := h.Get("Set-Cookie")
	if code != http.StatusSeeOther || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") || !strings.Contains(cookie, "Path=/console/") {
		t.Fatalf("viewer sign-in: %d, cookie %q", code, cookie)
	}
	code, page, hdr := viewer.get("/console/")
	if code != http.StatusOK || !strings.Contains(page, "10.0.0.1:3306") || !strings.Contains(page, "10.0.1.1:5432") || !strings.Contains(page, "signed in as viewer") {
		t.Fatalf("viewer overview: %d\n%s", code, page)
	}
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("no CSP: %v", hdr)
	}
	code, page, _ = viewer.get("/console/cluster/shop")
	if code != http.StatusOK || strings.Contains(page, "<script>alert(1)") || !strings.Contains(page, "&lt;script&gt;alert(1)") {
		t.Fatalf("the cluster page does not escape a finding's summary: %d\n%s", code, page)
	}
	if !strings.Contains(page, "20261206T030000-shop-1") || !strings.Contains(page, "RTO 0.520 s") || !strings.Contains(page, "30ms") {
		t.Errorf("the cluster page does not show the recovery's timeline:\n%s", page)
	}
	if !strings.Contains(page, "RTO median 0.512 s, max 0.512 s (target 2.0 s / 3.0 s)") || !strings.Contains(page, "10.0.0.1:3306 → 10.0.0.2:3306") ||
		!strings.Contains(page, "1.250 s") {
		t.Errorf("the cluster page does not show the drill's report:\n%s", page)
	}
	if !strings.Contains(page, "<svg") || !strings.Contains(page, "Actions need the operator role") {
		t.Errorf("cluster page for a viewer:\n%s", page)
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	if code, _ := viewer.post("/console/cluster/shop/pause", url.Values{"csrf": {m[1]}}); code != http.StatusForbidden {
		t.Errorf("a viewer paused: %d, want 403", code)
	}

	op := newClient(t, srv)
	op.post("/console/login", url.Values{"token": {"op-token"}})
	_, page, _ = op.get("/console/cluster/shop")
	m = csrfField.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, "Pause automatic failover") {
		t.Fatalf("operator's cluster page:\n%s", page)
	}
	if code, _ := op.post("/console/cluster/shop/pause", url.Values{"reason": {"upgrade"}}); code != http.StatusForbidden {
		t.Errorf("a pause without its CSRF token: %d, want 403", code)
	}
	if code, h := op.post("/console/cluster/shop/pause", url.Values{"csrf": {m[1]}, "reason": {"upgrade"}}); code != http.StatusSeeOther || h.Get("Location") != "/console/cluster/shop" {
		t.Fatalf("operator pause: %d to %q", code, h.Get("Location"))
	}
	if len(acts.calls) != 1 || !strings.HasPrefix(acts.calls[0], "pause shop by console operator from 127.0.0.1:") || !strings.HasSuffix(acts.calls[0], "because upgrade") {
		t.Errorf("actions %q", acts.calls)
	}
	if len(audit) != 1 || audit[0].Action != "pause" || audit[0].Cluster != "shop" || audit[0].By != "console operator" || audit[0].From == "" {
		t.Errorf("audit %+v", audit)
	}
	if code, _ := op.post("/console/cluster/nosuch/pause", url.Values{"csrf": {m[1]}}); code != http.StatusNotFound {
		t.Errorf("pause of an unknown cluster: %d", code)
	}
	if code, _, _ := op.get("/console/live/cluster/shop"); code != http.StatusOK {
		t.Errorf("live fragment: %d", code)
	}
	if code, _ := op.post("/console/cluster/shop/lift", url.Values{"csrf": {m[1]}}); code != http.StatusSeeOther || acts.calls[len(acts.calls)-1] != "lift shop" {
		t.Errorf("lift the block: %d, calls %q", code, acts.calls)
	}

	// A backup started from the page; the page then says it runs.
	if !strings.Contains(page, "Start a backup") {
		t.Errorf("no backup action on the operator's page:\n%s", page)
	}
	if code, _ := op.post("/console/cluster/shop/backup", url.Values{"csrf": {m[1]}}); code != http.StatusSeeOther || acts.calls[len(acts.calls)-1] != "backup shop" {
		t.Errorf("start a backup: %d, calls %q", code, acts.calls)
	}
	if _, page, _ := op.get("/console/cluster/shop"); !strings.Contains(page, "A backup started by console operator from 127.0.0.1:") || strings.Contains(page, "Start a backup") {
		t.Errorf("the page after starting a backup:\n%s", page)
	}
	if a := audit[len(audit)-1]; a.Action != "start-backup" || a.Cluster != "shop" {
		t.Errorf("audit %+v", a)
	}

	// A switchover: the plan first, escaped; then, confirmed, the result.
	code, page, _ = op.get("/console/cluster/shop/switchover?to=10.0.0.2:3306")
	if code != http.StatusOK || !strings.Contains(page, "plan: promote 10.0.0.2:3306 &lt;b&gt;now&lt;/b&gt;") || !strings.Contains(page, "Switch over now") {
		t.Fatalf("switchover plan page: %d\n%s", code, page)
	}
	if code, _, _ := viewer.get("/console/cluster/shop/switchover?to=10.0.0.2:3306"); code != http.StatusForbidden {
		t.Errorf("a viewer's switchover plan: %d, want 403", code)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/cluster/shop/switchover", strings.NewReader(url.Values{"csrf": {m[1]}, "to": {"10.0.0.2:3306"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := op.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || acts.calls[len(acts.calls)-1] != "switchover shop to 10.0.0.2:3306" || audit[len(audit)-1].Action != "switchover" {
		t.Errorf("switchover: %d, calls %q, audit %+v", resp.StatusCode, acts.calls, audit)
	}

	// Signing out ends the session.
	op.post("/console/logout", url.Values{"csrf": {m[1]}})
	if code, _, _ := op.get("/console/live/overview"); code != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d, want 401", code)
	}
}

// TestSessionCookieSecureUnderTLS: the session cookie, set at sign-in
// and cleared at sign-out, is Secure when the request came over TLS (so
// a browser never sends it in clear text), and is not over plain HTTP,
// where a browser would refuse it.
func TestSessionCookieSecureUnderTLS(t *testing.T) {
	con, err := New(Options{States: states, OperatorToken: "op-token", Actions: &fakeActions{}, Audit: func(AuditLine) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		start  func(http.Handler) *httptest.Server
		secure bool
	}{
		{"https", httptest.NewTLSServer, true},
		{"http", httptest.NewServer, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(con.Handler())
			defer srv.Close()
			c := newClient(t, srv)
			c.c.Transport = srv.Client().Transport
			code, h := c.post("/console/login", url.Values{"token": {"op-token"}})
			if cookie := h.Get("Set-Cookie"); code != http.StatusSeeOther || strings.Contains(cookie, "; Secure") != tc.secure {
				t.Fatalf("sign-in: %d, cookie %q, want Secure %v", code, cookie, tc.secure)
			}
			_, page, _ := c.get("/console/")
			m := csrfField.FindStringSubmatch(page)
			if m == nil {
				t.Fatalf("no CSRF token on the signed-in page:\n%s", page)
			}
			code, h = c.post("/console/logout", url.Values{"csrf": {m[1]}})
			if cookie := h.Get("Set-Cookie"); code != http.StatusSeeOther || !strings.Contains(cookie, "Max-Age=0") || strings.Contains(cookie, "; Secure") != tc.secure {
				t.Errorf("sign-out: %d, cookie %q, want Secure %v", code, cookie, tc.secure)
			}
		})
	}
}

func TestViewStates(t *testing.T) {
	now := time.Now()
	sts := states()
	if v := viewOf(sts[0], now); v.State != "degraded" || v.Primary != "10.0.0.1:3306" || len(v.Tree.Boxes) != 2 || len(v.Tree.Lines) != 1 {
		t.Errorf("shop: %+v", v)
	}
	if v := viewOf(sts[1], now); v.State != "healthy" {
		t.Errorf("billing: %s", v.State)
	}
	dead := sts[1]
	dead.Findings = []checks.Finding{{Code: checks.DeadPrimary, Severity: checks.Critical, Action: checks.Recover}}
	if v := viewOf(dead, now); v.State != "failing over" {
		t.Errorf("dead primary: %s", v.State)
	}
	dead.Evidence.Paused = &checks.PauseView{By: "alice"}
	if v := viewOf(dead, now); v.State != "paused" {
		t.Errorf("dead primary, paused: %s", v.State)
	}
}
