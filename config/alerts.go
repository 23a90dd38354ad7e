package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/dbha/dbha/checks"
)

// Alerts configures the level each finding alerts at and where `dbha run`
// sends notifications.
type Alerts struct {
	// Levels gives a finding or event code (ReplicaLagging, Recovered, ...)
	// a level of its own: info, warning or critical.
	Levels map[string]string `mapstructure:"levels" yaml:"levels,omitempty" json:"levels,omitempty"`
	// Webhooks receive a notification when a finding at or above their
	// min_level appears ("firing") and when it clears ("resolved"), and
	// when a recovery or a scheduled backup's retry ends.
	Webhooks []Webhook `mapstructure:"webhooks" yaml:"webhooks,omitempty" json:"webhooks,omitempty"`
}

// Webhook is one receiver of notifications.
type Webhook struct {
	// Name identifies the receiver in logs and metrics (its URL may hold
	// a secret and is never logged); default webhook-N.
	Name string `mapstructure:"name" yaml:"name,omitempty" json:"name,omitempty"`
	// URL, or URLFile holding it (a chat service's URL carries its
	// token). Format alertmanager: the Alertmanager's base URL
	// (http://am:9093); alerts go to its /api/v2/alerts.
	URL     string `mapstructure:"url" yaml:"url,omitempty" json:"url,omitempty"`
	URLFile string `mapstructure:"url_file" yaml:"url_file,omitempty" json:"url_file,omitempty"`
	// Format is json (dbha's own payload, one notification per POST) or
	// alertmanager (the Alertmanager v2 API); default json.
	Format string `mapstructure:"format" yaml:"format,omitempty" json:"format,omitempty"`
	// MinLevel is the least level sent: info, warning (default) or
	// critical.
	MinLevel string `mapstructure:"min_level" yaml:"min_level,omitempty" json:"min_level,omitempty"`
	// TokenFile or TokenEnv hold a bearer token sent with every request.
	TokenFile string `mapstructure:"token_file" yaml:"token_file,omitempty" json:"token_file,omitempty"`
	TokenEnv  string `mapstructure:"token_env" yaml:"token_env,omitempty" json:"token_env,omitempty"`
	// Timeout bounds one delivery attempt; default 5s.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Webhook formats.
const (
	FormatJSON         = "json"
	FormatAlertmanager = "alertmanager"
)

// DefaultWebhookTimeout bounds one delivery attempt.
const DefaultWebhookTimeout = 5 * time.Second

// Token returns where the webhook's bearer token comes from (may be empty).
func (w Webhook) Token() Secret { return Secret{File: w.TokenFile, Env: w.TokenEnv} }

// withDefaults fills in a webhook's defaults; i is its place in the list.
func (w Webhook) withDefaults(i int) Webhook {
	if w.Name == "" {
		w.Name = fmt.Sprintf("webhook-%d", i)
	}
	if w.Format == "" {
		w.Format = FormatJSON
	}
	if w.MinLevel == "" {
		w.MinLevel = string(checks.Warning)
	}
	if w.Timeout <= 0 {
		w.Timeout = DefaultWebhookTimeout
	}
	return w
}

// LevelMap reads Levels. The keys are matched to codes without regard to
// case (configuration keys are read in lower case).
func (a Alerts) LevelMap() (map[checks.Code]checks.Severity, error) {
	out := map[checks.Code]checks.Severity{}
	for k, v := range a.Levels {
		code, ok := codeNamed(k)
		if !ok {
			return nil, fmt.Errorf("%q is no finding or event code (one of %v)", k, checks.Codes())
		}
		l, err := checks.ParseSeverity(strings.ToLower(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", code, err)
		}
		out[code] = l
	}
	return out, nil
}

func codeNamed(s string) (checks.Code, bool) {
	for _, c := range checks.Codes() {
		if strings.EqualFold(string(c), s) {
			return c, true
		}
	}
	return "", false
}

func validateAlerts(a Alerts, bad func(key, format string, args ...any)) {
	if _, err := a.LevelMap(); err != nil {
		bad("alerts.levels", "%v", err)
	}
	names := map[string]bool{}
	for i, w := range a.Webhooks {
		key := fmt.Sprintf("alerts.webhooks[%d]", i)
		if names[w.Name] {
			bad(key+".name", "%q names another webhook too", w.Name)
		}
		names[w.Name] = true
		switch {
		case (w.URL == "") == (w.URLFile == ""):
			bad(key, "set url or url_file, one of them")
		case w.URL != "":
			if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(key+".url", "must be an http:// or https:// URL")
			}
		}
		if w.Format != FormatJSON && w.Format != FormatAlertmanager {
			bad(key+".format", "must be %s or %s, got %q", FormatJSON, FormatAlertmanager, w.Format)
		}
		if _, err := checks.ParseSeverity(w.MinLevel); err != nil {
			bad(key+".min_level", "%v", err)
		}
		if w.TokenFile != "" && w.TokenEnv != "" {
			bad(key, "set token_file or token_env, not both")
		}
	}
}
