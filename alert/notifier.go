package alert

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dbha/dbha/checks"
)

// Webhook is one receiver, resolved from the configuration.
type Webhook struct {
	Name     string
	URL      string // secret: never logged
	Format   string // "json" or "alertmanager"
	MinLevel checks.Severity
	Token    string // bearer token; "" for none
	Timeout  time.Duration
}

// Options tune a Notifier; the zero value is the production setting.
type Options struct {
	// Attempts bounds the deliveries of one notification (default 5);
	// Backoff is the first pause between two, doubled each time up to
	// MaxBackoff (defaults 1 s and 30 s).
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Queue bounds the notifications waiting for one webhook (default
	// 256): past it the oldest is dropped and counted.
	Queue int
	// Resend is how often an Alertmanager receiver is sent the alerts that
	// still fire (default 1 min), as Prometheus does: Alertmanager
	// resolves an alert it has not heard of for its resolve_timeout.
	Resend time.Duration
	Client *http.Client
}

// Counts are one webhook's deliveries so far.
type Counts struct {
	Sent, Failed, Dropped int64
}

// Notifier delivers events to webhooks. Create it with New; Run sends
// until ctx ends; Notify and Counts may be called concurrently.
type Notifier struct {
	o     Options
	log   *slog.Logger
	hooks []*hook
}

type hook struct {
	w   Webhook
	log *slog.Logger

	mu      sync.Mutex
	queue   []Event
	wake    chan struct{}
	firing  map[string]Event // alertmanager: what still fires, re-sent
	counts  Counts
	failing bool // the last delivery failed (logged once per run of failures)
	dropped bool // a drop was logged since the queue last emptied
}

// New builds a notifier for the webhooks; it sends nothing until Run.
func New(hooks []Webhook, o Options, log *slog.Logger) *Notifier {
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Queue <= 0 {
		o.Queue = 256
	}
	if o.Resend <= 0 {
		o.Resend = time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{o: o, log: log}
	for _, w := range hooks {
		n.hooks = append(n.hooks, &hook{w: w, log: log.With("webhook", w.Name), wake: make(chan struct{}, 1), firing: map[string]Event{}})
	}
	return n
}

// Notify queues e for every webhook whose min_level it reaches (a
// resolved event goes wherever its firing one went). It never blocks.
func (n *Notifier) Notify(e Event) {
	if n == nil {
		return
	}
	for _, h := range n.hooks {
		if e.Level.Rank() < h.w.MinLevel.Rank() {
			continue
		}
		h.push(e, n.o.Queue)
	}
}

// Counts returns each webhook's counts by name.
func (n *Notifier) Counts() map[string]Counts {
	out := map[string]Counts{}
	if n == nil {
		return out
	}
	for _, h := range n.hooks {
		h.mu.Lock()
		out[h.w.Name] = h.counts
		h.mu.Unlock()
	}
	return out
}

// Run sends queued events, each webhook from its own goroutine, until ctx
// ends.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, h := range n.hooks {
		wg.Go(func() { n.send(ctx, h) })
	}
	wg.Wait()
}

func (h *hook) push(e Event, limit int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) >= limit {
		h.queue = h.queue[1:]
		h.counts.Dropped++
		if !h.dropped {
			h.dropped = true
			h.log.Warn("alert queue full: the oldest notifications are dropped until the receiver catches up", "queue", limit)
		}
	}
	h.queue = append(h.queue, e)
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued event.
func (h *hook) next() (Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) == 0 {
		h.dropped = false
		return Event{}, false
	}
	e := h.queue[0]
	h.queue = h.queue[1:]
	return e, true
}

// send delivers one webhook's events in the order they came, and for
// Alertmanager re-sends what still fires every Resend.
func (n *Notifier) send(ctx context.Context, h *hook) {
	resend := time.NewTicker(n.o.Resend)
	defer resend.Stop()
	for {
		for {
			e, ok := h.next()
			if !ok {
				break
			}
			if h.w.Format == "alertmanager" {
				h.track(e)
			}
			n.deliver(ctx, h, []Event{e})
		}
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-resend.C:
			if still := h.stillFiring(); len(still) > 0 {
				n.deliver(ctx, h, still)
			}
		}
	}
}

// track keeps the alerts that fire until they resolve; one-off events
// resolve by themselves.
func (h *hook) track(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Status == Firing && e.EndsAt.IsZero() {
		h.firing[e.key()] = e
	} else {
		delete(h.firing, e.key())
	}
}

func (h *hook) stillFiring() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Event, 0, len(h.firing))
	for _, e := range h.firing {
		out = append(out, e)
	}
	return out
}

// deliver posts events, trying up to Attempts times with back-off, and
// counts the outcome once.
func (n *Notifier) deliver(ctx context.Context, h *hook, events []Event) {
	pause := n.o.Backoff
	var err error
	for attempt := 1; attempt <= n.o.Attempts; attempt++ {
		if err = n.post(ctx, h.w, events); err == nil {
			h.mu.Lock()
			h.counts.Sent += int64(len(events))
			if h.failing {
				h.failing = false
				h.log.Info("webhook delivers again")
			}
			h.mu.Unlock()
			return
		}
		if attempt == n.o.Attempts {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, n.o.MaxBackoff)
	}
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts.Failed += int64(len(events))
	if !h.failing {
		h.failing = true
		h.log.Warn("webhook delivery failed; further failures are counted (dbha_alert_notifications_total), not logged, until one succeeds",
			"attempts", n.o.Attempts, "code", events[0].Code, "cluster", events[0].Cluster, "err", err)
	}
}

func (n *Notifier) post(ctx context.Context, w Webhook, events []Event) error {
	var body []byte
	var err error
	url := w.URL
	if w.Format == "alertmanager" {
		url = strings.TrimSuffix(url, "/") + "/api/v2/alerts"
		body, err = amPayload(events)
	} else {
		body, err = jsonPayload(events[0])
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", redact(err, w.URL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "dbha")
	if w.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.Token)
	}
	resp, err := n.o.Client.Do(req)
	if err != nil {
		return redact(err, w.URL)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// redact removes the webhook's URL, which may hold a secret, from an
// error's text.
func redact(err error, url string) error {
	if url == "" || !strings.Contains(err.Error(), url) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), url, "<url>"))
}
