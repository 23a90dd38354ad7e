package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleInABrowser drives the console in Debian's headless Chromium:
// an operator signs in and sees both lab clusters with their primaries, a
// killed MariaDB primary is replaced on the page by the new one without a
// reload, the operator switches the primary over to the other replica
// (the dry-run plan shown first) and pauses automatic failover from the
// page (the confirmations accepted), and a viewer is refused an action. The
// page is saved as a screenshot (CONSOLE_SCREENSHOT names where;
// the test's directory otherwise).
func TestConsoleInABrowser(t *testing.T) {
	bin := dbhaBinary(t)
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make deps installs it): %v", err)
	}
	t.Parallel()
	l := binLab(t, bin)
	c := consulClient(t, l)
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opToken, viewToken := filepath.Join(dir, "op.token"), filepath.Join(dir, "view.token")
	for f, v := range map[string]string{opToken: "operator-secret", viewToken: "viewer-secret"} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	startDbhaRun(t, bin, l, "console", "DBHA_HTTP_LISTEN=127.0.0.1:"+fmt.Sprint(ports[0]),
		"DBHA_HTTP_TOKEN_FILE="+opToken, "DBHA_HTTP_VIEWER_TOKEN_FILE="+viewToken)
	first := addr(t, l, "mariadb-1")
	waitPublishedWriter(t, c, mariadbCluster, first)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	signIn := func(token string) (context.Context, context.CancelFunc) {
		ctx, cancel := chromedp.NewContext(alloc)
		ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token), chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
			chromedp.WaitVisible(chromedp.CSS(`table.clusters`))); err != nil {
			t.Fatalf("sign in: %v", err)
		}
		return ctx, func() { cancelT(); cancel() }
	}
	primaryOn := func(ctx context.Context, cluster string) string {
		// Read in one evaluation: the live part is replaced every second,
		// and a node found by one command may be gone at the next.
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
			`(document.querySelector('tr[data-cluster=%q] td.primary') || {textContent: ""}).textContent.trim()`, cluster)))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return s
	}

	op, closeOp := signIn("operator-secret")
	defer closeOp()
	if got := primaryOn(op, mariadbCluster); got != first {
		t.Errorf("the page shows %s's primary as %q, want %s", mariadbCluster, got, first)
	}
	if got, want := primaryOn(op, postgresCluster), addr(t, l, "postgres-1"); got != want {
		t.Errorf("the page shows %s's primary as %q, want %s", postgresCluster, got, want)
	}

	// A failover shows on the open page, without a reload.
	killTree(t, l, "mariadb-1")
	rec := waitRecoveryOf(t, bin, l, mariadbCluster, first, 60*time.Second)
	waitPublishedWriter(t, c, mariadbCluster, rec.Plan.NewPrimary)
	moved := time.Now()
	waitUntil(t, 30*time.Second, "the page to show the new primary", func() error {
		if got := primaryOn(op, mariadbCluster); got != rec.Plan.NewPrimary {
			return fmt.Errorf("the page shows %q", got)
		}
		return nil
	})
	t.Logf("the page showed the new primary %v after the writer moved in Consul", time.Since(moved).Round(time.Millisecond))

	// The operator switches the primary over to the other replica from
	// the page: the dry-run plan first, then, confirmed, the switchover.
	var third string
	for _, n := range []string{"mariadb-2", "mariadb-3"} {
		if a := addr(t, l, n); a != rec.Plan.NewPrimary {
			third = a
		}
	}
	if err := chromedp.Do(op, chromedp.Navigate(base+"/console/cluster/"+mariadbCluster), chromedp.WaitVisible(chromedp.CSS(`svg.tree`)),
		chromedp.SetValue(chromedp.CSS(`select[name="to"]`), third), chromedp.Click(chromedp.CSS(`form[action$="/switchover"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.plan`))); err != nil {
		t.Fatalf("plan a switchover from the page: %v", err)
	}
	plan, err := chromedp.Run(op, chromedp.Evaluate[string](`document.querySelector("pre.plan").innerText`))
	if err != nil || !strings.Contains(plan, third) {
		t.Fatalf("the plan page shows %q, %v; want a plan promoting %s", plan, err, third)
	}
	if _, err := chromedp.Run(op, chromedp.Evaluate[bool](`window.confirm = () => true; true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`form[action$="/switchover"] button`)), chromedp.WaitVisible(chromedp.CSS(`pre.result`))); err != nil {
		t.Fatalf("switch over from the page: %v", err)
	}
	result, err := chromedp.Run(op, chromedp.Evaluate[string](`document.querySelector("pre.result").innerText`))
	if err != nil || !strings.Contains(result, "done: writer is "+third) {
		t.Fatalf("the switchover's result: %q, %v", result, err)
	}
	waitPublishedWriter(t, c, mariadbCluster, third)

	// The cluster's page lists both recoveries with their steps, and the
	// operator lifts the block the automatic failover left. The page the
	// form leads to has no lift form; waiting for the tree instead found
	// the old page's, and the next navigation aborted the form's.
	if err := chromedp.Do(op, chromedp.Navigate(base+"/console/cluster/"+mariadbCluster), chromedp.WaitVisible(chromedp.CSS(`section.recoveries`))); err != nil {
		t.Fatal(err)
	}
	recs, err := chromedp.Run(op, chromedp.Evaluate[string](`document.querySelector("section.recoveries").innerText`))
	if err != nil || !strings.Contains(recs, rec.ID) || strings.Count(recs, mariadbCluster) < 2 || !strings.Contains(recs, "RTO") {
		t.Errorf("the recoveries on the page: %q, %v; want %s and the switchover", recs, err, rec.ID)
	}
	if _, err := chromedp.Run(op, chromedp.Evaluate[bool](`window.confirm = () => true; true`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`form[action$="/lift"] button`)), chromedp.WaitNotPresent(chromedp.CSS(`form[action$="/lift"]`))); err != nil {
		t.Fatalf("lift the block from the page: %v", err)
	}
	if _, blocked, err := c.GetBlock(t.Context(), mariadbCluster); err != nil || blocked {
		t.Errorf("the block after lifting it from the page: %v, %v", blocked, err)
	}

	// The operator pauses automatic failover from the cluster's page.
	// The confirmation is answered yes, and what it asked kept in the
	// tab's session storage, which outlives the form's navigation.
	if err := chromedp.Do(op, chromedp.Navigate(base+"/console/cluster/"+mariadbCluster), chromedp.WaitVisible(chromedp.CSS(`svg.tree`))); err != nil {
		t.Fatalf("the cluster's page: %v", err)
	}
	if _, err := chromedp.Run(op, chromedp.Evaluate[bool](`window.confirm = (m) => { sessionStorage.setItem("asked", m); return true; }; true`)); err != nil {
		t.Fatal(err)
	}
	step, cancelStep := context.WithTimeout(op, 30*time.Second)
	defer cancelStep()
	if err := chromedp.Do(step, chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "browser test"), chromedp.Click(chromedp.CSS(`form[action$="/pause"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/resume"]`))); err != nil {
		where, _ := chromedp.Run(op, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("pause from the page: %v; the page:\n%s", err, where)
	}
	// The live part shows the pause once the monitor has read it.
	waitUntil(t, 15*time.Second, "the page to show the pause", func() error {
		after, err := chromedp.Run(op, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		if err != nil {
			return err
		}
		if !strings.Contains(after, "paused by console operator") || !strings.Contains(after, "browser test") {
			return fmt.Errorf("the page says:\n%s", after)
		}
		return nil
	})
	asked, err := chromedp.Run(op, chromedp.Evaluate[string](`sessionStorage.getItem("asked")`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(asked, "Pause automatic failover of "+mariadbCluster) {
		t.Errorf("the confirmation asked %q", asked)
	}
	if p, ok, err := c.GetPause(t.Context(), mariadbCluster); err != nil || !ok || !strings.Contains(p.By, "console operator") {
		t.Errorf("the pause in Consul: %+v, %v, %v", p, ok, err)
	}
	shot := os.Getenv("CONSOLE_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(dir, "console.png")
	}
	png, err := chromedp.Run(op, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	// A viewer sees no action, and a forged one is refused.
	view, closeView := signIn("viewer-secret")
	defer closeView()
	if err := chromedp.Do(view, chromedp.Navigate(base+"/console/cluster/"+mariadbCluster), chromedp.WaitVisible(chromedp.CSS(`svg.tree`))); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if txt, err := chromedp.Run(view, chromedp.Evaluate[string](`document.querySelector("section.actions").innerText`)); err != nil || !strings.Contains(txt, "Actions need the operator role") {
		t.Errorf("the viewer's actions: %q, %v", txt, err)
	}
	status, err := chromedp.Run(view, chromedp.Evaluate[int](`(async () => { const csrf = document.querySelector('input[name="csrf"]').value;
		const r = await fetch(location.pathname + "/resume", {method: "POST", body: new URLSearchParams({csrf})}); return r.status; })()`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if status != 403 {
		t.Errorf("a viewer's resume: %d, want 403", status)
	}
}
