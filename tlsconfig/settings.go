package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// Settings are a cluster's TLS settings as every connection to one of its
// instances needs them: a mode and the files. The zero value is Disable.
// A connection asks For its instance's host; the configs are made once
// per host and kept, as each re-reads its files when they change.
type Settings struct {
	Mode  Mode
	Files Files
	// ReplicaCA is the CA file's path on the database servers' hosts,
	// which the replication settings dbha writes into replicas name
	// (Files.CA when empty: the same path everywhere).
	ReplicaCA string

	mu      sync.Mutex
	configs map[string]*tls.Config
}

// NewSettings returns settings for mode and files.
func NewSettings(mode Mode, f Files) *Settings { return &Settings{Mode: mode, Files: f} }

// Enabled says whether connections are encrypted. A nil *Settings is
// Disable.
func (s *Settings) Enabled() bool { return s != nil && s.Mode != "" && s.Mode != Disable }

// ReplicaCAFile is the CA path replicas are given ("" when none).
func (s *Settings) ReplicaCAFile() string {
	if s == nil {
		return ""
	}
	if s.ReplicaCA != "" {
		return s.ReplicaCA
	}
	return s.Files.CA
}

// For returns the config of a connection to addr (host:port, or a host):
// nil when disabled. In verify-full the host is the name checked.
func (s *Settings) For(addr string) (*tls.Config, error) {
	if !s.Enabled() {
		return nil, nil
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.configs[host]; ok {
		return c, nil
	}
	c, err := Client(s.Mode, s.Files, host)
	if err != nil {
		return nil, fmt.Errorf("TLS to %s: %w", addr, err)
	}
	if s.configs == nil {
		s.configs = map[string]*tls.Config{}
	}
	s.configs[host] = c
	return c, nil
}
