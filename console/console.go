// Package console is the operator's web page that `dbha run` serves under
// /console/: every cluster's state, its replication tree, the evidence of
// each path, its findings, and the actions that are safe from there
// (pause and resume automatic failover). Everything is rendered by
// html/template from assets embedded in the binary; the page refreshes
// its live part by polling a fragment each second. Two roles sign in with
// their own tokens: a viewer reads, an operator also acts. A session is a
// random id in an HttpOnly, SameSite=Strict cookie; every POST carries the
// session's CSRF token; every action is audited with who and from where.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/daemon"
	"github.com/dbha/dbha/drill"
	"github.com/dbha/dbha/promote"
)

//go:embed assets
var assets embed.FS

// Role is what a session may do.
type Role string

const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
)

// Actions are what an operator may do from the page.
type Actions interface {
	Pause(ctx context.Context, cluster, by, reason string) error
	Resume(ctx context.Context, cluster, by string) error
	// Paused reads the maintenance mode where it is kept, so that the page
	// right after an action offers the next one (the monitor reads it
	// about once a second).
	Paused(ctx context.Context, cluster string) (bool, error)
	// PlanSwitchover describes, changing nothing, the planned switchover
	// of cluster to the replica to ("" for the best ranked), as
	// `dbha promote --dry-run` prints it; Switchover carries it out under
	// the cluster's lock and returns what it did. Both refuse a failover:
	// the console replaces only a primary that answers.
	PlanSwitchover(ctx context.Context, cluster, to string) (string, error)
	Switchover(ctx context.Context, cluster, to, by string) (string, error)
	// Recoveries are the cluster's last n recoveries, newest first.
	Recoveries(ctx context.Context, cluster string, n int) ([]*promote.Record, error)
	// Blocked says whether the anti-flap block is set; LiftBlock lifts it
	// (`dbha recover ack`).
	Blocked(ctx context.Context, cluster string) (bool, error)
	LiftBlock(ctx context.Context, cluster, by string) error
	// StartBackup takes a backup of cluster now, in the background, as
	// dbha run takes a scheduled one; it errors when dbha run takes no
	// backups of the cluster (no backup.schedule) or one is running.
	// BackupByHand says whether dbha run backs the cluster up, and who
	// started the backup running by hand, and when ("" for none).
	StartBackup(ctx context.Context, cluster, by string) error
	BackupByHand(cluster string) (scheduled bool, by string, at time.Time)
	// Drills are the cluster's last n drill reports (dbha drill), newest
	// first.
	Drills(ctx context.Context, cluster string, n int) ([]drill.Summary, error)
}

// Options configure a Console.
type Options struct {
	// States returns every cluster's latest state (*daemon.Monitor.States).
	States func() []daemon.State
	// OperatorToken and ViewerToken sign in their roles; an empty one
	// signs in nobody.
	OperatorToken, ViewerToken string
	Actions                    Actions
	// Audit records an action (who, from where, what); nil: none.
	Audit  func(a AuditLine) error
	Logger *slog.Logger
	// SessionTTL bounds a session (default 12 h).
	SessionTTL time.Duration
	Now        func() time.Time
}

// AuditLine is one action taken from the console.
type AuditLine struct {
	Action  string    `json:"action"`
	Cluster string    `json:"cluster"`
	By      string    `json:"by"`
	From    string    `json:"from"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Console serves the pages. Create it with New.
type Console struct {
	o    Options
	log  *slog.Logger
	tmpl *template.Template

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	role    Role
	csrf    string
	expires time.Time
}

const cookieName = "dbha_console"

// New builds a console; its templates are parsed once, here.
func New(o Options) (*Console, error) {
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := template.New("").Funcs(template.FuncMap{
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return o.Now().Sub(t).Round(100*time.Millisecond).String() + " ago"
		},
		"stateClass": func(s string) string { return strings.ReplaceAll(s, " ", "-") },
		"took":       func(a, b time.Time) string { return b.Sub(a).Round(time.Millisecond).String() },
		"when":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 MST") },
		"deref":      func(b *bool) bool { return b != nil && *b },
	}).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	return &Console{o: o, log: log, tmpl: t, sessions: map[string]*session{}}, nil
}

// Handler serves /console/.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, name := range []string{"console.js", "console.css"} { // the templates are not served
		mux.HandleFunc("GET /console/static/"+name, func(w http.ResponseWriter, r *http.Request) {
			http.ServeFileFS(w, r, assets, "assets/"+name)
		})
	}
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("POST /console/logout", c.require(Viewer, c.logout))
	mux.HandleFunc("GET /console/{$}", c.require(Viewer, c.overview))
	mux.HandleFunc("GET /console/live/overview", c.require(Viewer, c.overviewLive))
	mux.HandleFunc("GET /console/cluster/{name}", c.require(Viewer, c.cluster))
	mux.HandleFunc("GET /console/live/cluster/{name}", c.require(Viewer, c.clusterLive))
	mux.HandleFunc("POST /console/cluster/{name}/pause", c.require(Operator, c.pause))
	mux.HandleFunc("POST /console/cluster/{name}/resume", c.require(Operator, c.resume))
	mux.HandleFunc("POST /console/cluster/{name}/lift", c.require(Operator, c.liftBlock))
	mux.HandleFunc("POST /console/cluster/{name}/backup", c.require(Operator, c.startBackup))
	mux.HandleFunc("GET /console/cluster/{name}/switchover", c.require(Operator, c.planSwitchover))
	mux.HandleFunc("POST /console/cluster/{name}/switchover", c.require(Operator, c.switchover))
	return securityHeaders(mux)
}

// securityHeaders: nothing from elsewhere, no framing, no sniffing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// require lets a request through with a live session of at least role;
// a POST must also carry the session's CSRF token.
func (c *Console) require(role Role, next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/console/live/") {
				http.Redirect(w, r, "/console/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if role == Operator && s.role != Operator {
			http.Error(w, "this needs the operator role; you signed in as a viewer", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
			http.Error(w, "the form's CSRF token is missing or stale: reload the page", http.StatusForbidden)
			return
		}
		next(w, r, s)
	}
}

func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil || c.o.Now().After(s.expires) {
		delete(c.sessions, ck.Value)
		return nil
	}
	return s
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, "login.html", map[string]any{"Error": r.URL.Query().Get("failed") != ""})
}

// login checks the token against both roles in constant time and starts
// a session. A wrong token costs a second, which bounds guessing.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	token := []byte(strings.TrimSpace(r.PostFormValue("token")))
	var role Role
	switch {
	case c.o.OperatorToken != "" && subtle.ConstantTimeCompare(token, []byte(c.o.OperatorToken)) == 1:
		role = Operator
	case c.o.ViewerToken != "" && subtle.ConstantTimeCompare(token, []byte(c.o.ViewerToken)) == 1:
		role = Viewer
	default:
		c.log.Warn("console sign-in refused", "from", r.RemoteAddr)
		time.Sleep(time.Second)
		http.Redirect(w, r, "/console/login?failed=1", http.StatusSeeOther)
		return
	}
	id, csrf := randomHex(), randomHex()
	c.mu.Lock()
	now := c.o.Now()
	for k, s := range c.sessions { // drop the expired ones
		if now.After(s.expires) {
			delete(c.sessions, k)
		}
	}
	c.sessions[id] = &session{role: role, csrf: csrf, expires: now.Add(c.o.SessionTTL)}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/console/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(c.o.SessionTTL.Seconds())})
	c.log.Info("console sign-in", "role", role, "from", r.RemoteAddr)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Console) views() []clusterView {
	now := c.o.Now()
	var out []clusterView
	for _, st := range c.o.States() {
		out = append(out, viewOf(st, now))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *Console) view(name string) (clusterView, bool) {
	for _, v := range c.views() {
		if v.Name == name {
			return v, true
		}
	}
	return clusterView{}, false
}

func (c *Console) overview(w http.ResponseWriter, _ *http.Request, s *session) {
	c.render(w, "overview.html", map[string]any{"Clusters": c.views(), "Role": s.role, "CSRF": s.csrf})
}

func (c *Console) overviewLive(w http.ResponseWriter, _ *http.Request, s *session) {
	c.render(w, "overview-live", map[string]any{"Clusters": c.views(), "Role": s.role})
}

func (c *Console) cluster(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := c.view(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	data := map[string]any{"C": v, "Role": s.role, "CSRF": s.csrf, "Operator": s.role == Operator, "Paused": v.Paused != nil}
	if a := c.o.Actions; a != nil {
		if p, err := a.Paused(r.Context(), v.Name); err == nil {
			data["Paused"] = p
		}
		if b, err := a.Blocked(r.Context(), v.Name); err == nil {
			data["Blocked"] = b
		}
		recs, err := a.Recoveries(r.Context(), v.Name, 5)
		if err != nil {
			data["RecoveriesError"] = err.Error()
		}
		data["Recoveries"] = recs
		drills, err := a.Drills(r.Context(), v.Name, 5)
		if err != nil {
			data["DrillsError"] = err.Error()
		}
		data["Drills"] = drills
		data["BackupScheduled"], data["BackupBy"], data["BackupAt"] = a.BackupByHand(v.Name)
	}
	c.render(w, "cluster.html", data)
}

func (c *Console) clusterLive(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := c.view(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	c.render(w, "cluster-live", map[string]any{"C": v, "Role": s.role})
}

func (c *Console) pause(w http.ResponseWriter, r *http.Request, s *session) {
	c.act(w, r, s, "pause", func(ctx context.Context, cluster, by string) error {
		return c.o.Actions.Pause(ctx, cluster, by, r.PostFormValue("reason"))
	})
}

func (c *Console) resume(w http.ResponseWriter, r *http.Request, s *session) {
	c.act(w, r, s, "resume", c.o.Actions.Resume)
}

func (c *Console) startBackup(w http.ResponseWriter, r *http.Request, s *session) {
	c.act(w, r, s, "start-backup", c.o.Actions.StartBackup)
}

func (c *Console) liftBlock(w http.ResponseWriter, r *http.Request, s *session) {
	c.act(w, r, s, "lift-block", c.o.Actions.LiftBlock)
}

// planSwitchover shows the very plan `dbha promote --dry-run` prints,
// and the form that carries it out.
func (c *Console) planSwitchover(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := c.view(r.PathValue("name"))
	if !ok || c.o.Actions == nil {
		http.NotFound(w, r)
		return
	}
	to := r.URL.Query().Get("to")
	plan, err := c.o.Actions.PlanSwitchover(r.Context(), v.Name, to)
	data := map[string]any{"C": v, "Role": s.role, "CSRF": s.csrf, "To": to, "Plan": plan}
	if err != nil {
		data["Error"] = err.Error()
	}
	c.render(w, "switchover.html", data)
}

// switchover carries the switchover out, audits it and shows what it did.
func (c *Console) switchover(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := c.view(r.PathValue("name"))
	if !ok || c.o.Actions == nil {
		http.NotFound(w, r)
		return
	}
	to := r.PostFormValue("to")
	by := "console " + string(s.role)
	result, err := c.o.Actions.Switchover(r.Context(), v.Name, to, by+" from "+r.RemoteAddr)
	line := AuditLine{Action: "switchover", Cluster: v.Name, By: by, From: r.RemoteAddr, At: c.o.Now().UTC(), Reason: "to " + orBest(to)}
	if err != nil {
		line.Error = err.Error()
	}
	c.audit(line)
	c.log.Warn("console action", "action", "switchover", "cluster", v.Name, "to", orBest(to), "by", by, "from", r.RemoteAddr, "err", err)
	data := map[string]any{"C": v, "Role": s.role, "CSRF": s.csrf, "Result": result}
	if err != nil {
		data["Error"] = err.Error()
	}
	c.render(w, "switchover.html", data)
}

func orBest(to string) string {
	if to == "" {
		return "the best ranked replica"
	}
	return to
}

func (c *Console) audit(line AuditLine) {
	if c.o.Audit == nil {
		return
	}
	if err := c.o.Audit(line); err != nil {
		c.log.Error("console action not audited", "action", line.Action, "cluster", line.Cluster, "err", err)
	}
}

// act runs one action on a known cluster, audits it, whatever its outcome,
// and returns to the cluster's page.
func (c *Console) act(w http.ResponseWriter, r *http.Request, s *session, action string, do func(ctx context.Context, cluster, by string) error) {
	name := r.PathValue("name")
	if _, ok := c.view(name); !ok || c.o.Actions == nil {
		http.NotFound(w, r)
		return
	}
	by := "console " + string(s.role)
	err := do(r.Context(), name, by+" from "+r.RemoteAddr)
	line := AuditLine{Action: action, Cluster: name, By: by, From: r.RemoteAddr, At: c.o.Now().UTC(), Reason: r.PostFormValue("reason")}
	if err != nil {
		line.Error = err.Error()
	}
	c.audit(line)
	c.log.Warn("console action", "action", action, "cluster", name, "by", by, "from", r.RemoteAddr, "err", err)
	if err != nil {
		http.Error(w, action+" "+name+": "+err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, "/console/cluster/"+url.PathEscape(name), http.StatusSeeOther)
}

// render writes a whole page or none: a template that fails midway is a
// 500, not half a page.
func (c *Console) render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		c.log.Error("console template", "template", name, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}
