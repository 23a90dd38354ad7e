package main

import (
	"fmt"
	"log/slog"

	"github.com/dbha/dbha/alert"
	"github.com/dbha/dbha/checks"
	"github.com/dbha/dbha/config"
)

// newNotifier builds the notifier of alerts.webhooks, with each URL and
// token read from where the configuration says; nil when there is none.
func newNotifier(cfg config.Config, log *slog.Logger) (*alert.Notifier, error) {
	if len(cfg.Alerts.Webhooks) == 0 {
		return nil, nil
	}
	var hooks []alert.Webhook
	for _, w := range cfg.Alerts.Webhooks {
		h := alert.Webhook{Name: w.Name, URL: w.URL, Format: w.Format, MinLevel: checks.Severity(w.MinLevel), Timeout: w.Timeout}
		if w.URLFile != "" {
			u, err := readSecret(config.Secret{File: w.URLFile})
			if err != nil {
				return nil, usageError(fmt.Errorf("alerts webhook %s: url_file: %w", w.Name, err))
			}
			h.URL = u
		}
		if tok := w.Token(); tok.File != "" || tok.Env != "" {
			t, err := readSecret(tok)
			if err != nil {
				return nil, usageError(fmt.Errorf("alerts webhook %s: token: %w", w.Name, err))
			}
			h.Token = t
		}
		hooks = append(hooks, h)
	}
	return alert.New(hooks, alert.Options{}, log), nil
}
