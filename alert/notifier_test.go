package alert

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbha/dbha/checks"
)

// receiver records what it is posted; fail makes it answer 500 to the
// first n requests.
type receiver struct {
	mu     sync.Mutex
	bodies []string
	auth   []string
	fail   int
	hits   int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits++
	if r.fail > 0 {
		r.fail--
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	r.bodies = append(r.bodies, req.URL.Path+" "+string(b))
	r.auth = append(r.auth, req.Header.Get("Authorization"))
}

func (r *receiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var t0 = time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)

func dead(s Status) Event {
	e := Event{Status: s, Cluster: "c", Code: checks.DeadPrimary, Level: checks.Critical, Instance: "10.0.0.1:3306",
		Summary: "primary is dead", StartsAt: t0, Manager: "m1"}
	if s == Resolved {
		e.EndsAt = t0.Add(3 * time.Second)
	}
	return e
}

// Firing then resolved reach a json receiver once each, in order, with
// the token; an event under a receiver's level does not reach it.
func TestNotifyInOrder(t *testing.T) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	defer srv.Close()
	n := New([]Webhook{{Name: "ops", URL: srv.URL + "/hook", Format: "json", MinLevel: checks.Warning, Token: "s3cret", Timeout: time.Second}}, Options{}, nil)
	ctx := t.Context()
	go n.Run(ctx)
	n.Notify(Event{Status: Firing, Cluster: "c", Code: checks.ReplicaLagging, Level: checks.Info, Summary: "a little behind"})
	n.Notify(dead(Firing))
	n.Notify(dead(Resolved))
	waitFor(t, "two notifications", func() bool { return len(r.got()) == 2 })
	time.Sleep(50 * time.Millisecond)
	got := r.got()
	if len(got) != 2 || !strings.Contains(got[0], `"status":"firing"`) || !strings.Contains(got[1], `"status":"resolved"`) {
		t.Fatalf("received %q", got)
	}
	var e struct {
		Version string `json:"version"`
		Event
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got[0], "/hook ")), &e); err != nil || e.Version != "dbha/1" || e.Code != checks.DeadPrimary || e.Instance != "10.0.0.1:3306" {
		t.Errorf("payload %s: %+v, %v", got[0], e, err)
	}
	if r.auth[0] != "Bearer s3cret" {
		t.Errorf("authorization %q", r.auth[0])
	}
	if c := n.Counts()["ops"]; c.Sent != 2 || c.Failed != 0 {
		t.Errorf("counts %+v", c)
	}
}

// A receiver that fails twice gets the notification on the third attempt;
// one that never answers costs its own queue, not Notify's caller.
func TestNotifyRetriesAndNeverBlocks(t *testing.T) {
	r := &receiver{fail: 2}
	srv := httptest.NewServer(r)
	defer srv.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	n := New([]Webhook{
		{Name: "flaky", URL: srv.URL, Format: "json", MinLevel: checks.Info, Timeout: time.Second},
		{Name: "hung", URL: hang.URL, Format: "json", MinLevel: checks.Info, Timeout: 50 * time.Millisecond},
	}, Options{Attempts: 3, Backoff: 10 * time.Millisecond, Queue: 4}, nil)
	go n.Run(t.Context())
	start := time.Now()
	for range 20 {
		n.Notify(dead(Firing))
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Notify took %v with a hung receiver", d)
	}
	waitFor(t, "the flaky receiver's deliveries", func() bool { c := n.Counts()["flaky"]; return c.Sent+c.Dropped == 20 })
	if r.hits < 3 {
		t.Errorf("the flaky receiver was tried %d times", r.hits)
	}
	waitFor(t, "the hung receiver's failures", func() bool { return n.Counts()["hung"].Failed > 0 })
	if c := n.Counts()["hung"]; c.Dropped == 0 || c.Sent != 0 {
		t.Errorf("hung receiver's counts %+v: want drops past the queue and nothing sent", c)
	}
}

// Alertmanager gets the v2 API's alerts at /api/v2/alerts, the firing one
// again while it fires, and the resolved one with its end.
func TestNotifyAlertmanager(t *testing.T) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	defer srv.Close()
	n := New([]Webhook{{Name: "am", URL: srv.URL + "/", Format: "alertmanager", MinLevel: checks.Warning, Timeout: time.Second}},
		Options{Resend: 20 * time.Millisecond}, nil)
	go n.Run(t.Context())
	n.Notify(dead(Firing))
	waitFor(t, "a re-sent alert", func() bool { return len(r.got()) >= 3 })
	n.Notify(dead(Resolved))
	waitFor(t, "the resolved alert", func() bool {
		g := r.got()
		return strings.Contains(g[len(g)-1], `"endsAt"`)
	})
	got := r.got()
	for _, b := range got {
		if !strings.HasPrefix(b, "/api/v2/alerts ") {
			t.Fatalf("posted to %q", b)
		}
	}
	var alerts []amAlert
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got[0], "/api/v2/alerts ")), &alerts); err != nil || len(alerts) != 1 {
		t.Fatalf("payload %s: %v", got[0], err)
	}
	a := alerts[0]
	if a.Labels["alertname"] != "DeadPrimary" || a.Labels["severity"] != "critical" || a.Labels["cluster"] != "c" ||
		a.Labels["instance"] != "10.0.0.1:3306" || a.Annotations["summary"] != "primary is dead" || !a.EndsAt.IsZero() {
		t.Errorf("firing alert %+v", a)
	}
	time.Sleep(60 * time.Millisecond)
	if after := r.got(); len(after) != len(got) {
		t.Errorf("a resolved alert is still re-sent: %q", after[len(got):])
	}
}
