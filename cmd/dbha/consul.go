package main

import (
	"crypto/tls"
	"fmt"

	"github.com/dbha/dbha/config"
	"github.com/dbha/dbha/consul"
	"github.com/dbha/dbha/tlsconfig"
)

// consulClient is a client of the agent at consul.address with the
// configured token, over HTTPS when consul.tls is set. It does not contact
// the agent. Every Consul client dbha makes is built here, so none speaks
// plain HTTP to an agent the configuration says to reach over TLS.
func consulClient(cfg config.Config) (*consul.Client, error) {
	token := ""
	if t := cfg.Consul.Token(); t.File != "" || t.Env != "" {
		var err error
		if token, err = readSecret(t); err != nil {
			return nil, usageError(fmt.Errorf("consul token: %w", err))
		}
	}
	tc, err := consulTLS(cfg.Consul)
	if err != nil {
		return nil, err
	}
	return consul.NewTLS(cfg.Consul.Address, token, tc)
}

// consulTLS is the TLS of the connections to the agent: nil without
// consul.tls; with it, verify-full always (the agent's certificate chains
// to consul.tls.ca_file and is valid for Consul.TLSServerName), and the
// client certificate for an agent that verifies incoming connections. The
// files are read again at a handshake after they change (tlsconfig). An
// error names the agent's address and the file.
func consulTLS(c config.Consul) (*tls.Config, error) {
	if !c.TLS.IsEnabled() {
		return nil, nil
	}
	tc, err := tlsconfig.Client(tlsconfig.VerifyFull, c.TLS.Files(), c.TLSServerName())
	if err != nil {
		return nil, usageError(fmt.Errorf("consul.tls of the agent at %s: %w", c.Address, err))
	}
	return tc, nil
}
