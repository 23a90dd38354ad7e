package daemon

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the daemon's HTTP endpoints:
//
//	GET /healthz                  liveness, no token
//	GET /health/{cluster}/writer/{instance}   200 when the instance is the writer, else 503; no token
//	GET /health/{cluster}/reader/{instance}   200 when it is a healthy replica (?max_lag=seconds), else 503; no token
//	GET /api/v1/clusters          every cluster's state: findings, evidence, topology
//	GET /api/v1/clusters/{name}   one cluster's state
//	GET /metrics                  Prometheus metrics
//
// Everything but /healthz and /health/ needs "Authorization: Bearer
// <token>". extra are
// more collectors for /metrics, such as the daemon's BackupStats.
func Handler(m *Monitor, token string, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(m), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(extra...)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /health/{cluster}/{role}/{instance}", m.serveHealth)
	mux.HandleFunc("GET /api/v1/clusters", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"clusters": m.States()})
	})
	mux.HandleFunc("GET /api/v1/clusters/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, ok := m.State(r.PathValue("name"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such cluster: " + r.PathValue("name")})
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return requireToken(token, mux)
}

// requireToken lets /healthz and the load balancers' /health/ checks
// through and checks the bearer token on everything else, in constant
// time.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := path.Clean(r.URL.Path); p != "/healthz" && !strings.HasPrefix(p, "/health/") {
			got := []byte(r.Header.Get("Authorization"))
			if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="dbha"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Endpoint is where and how Serve listens.
type Endpoint struct {
	// Addr is host:port; port 0 picks a free one (see Serve's ready).
	Addr string
	// TLS, when set, makes the endpoint HTTPS only: every connection must
	// complete this handshake (tlsconfig.Server: the certificate re-read
	// at each handshake when its files change, mutual TLS when it has a
	// client CA) before a byte of HTTP is read. A client that speaks
	// plain HTTP to it gets Go's 400 "Client sent an HTTP request to an
	// HTTPS server" and nothing else. nil: plain HTTP.
	TLS *tls.Config
	// Log receives what the server reports of its own (a failed
	// handshake: a client without a certificate, one from another CA, our
	// certificate files unreadable), at level warn; nil: the log
	// package's default logger.
	Log *slog.Logger
}

// Serve listens on ep.Addr and serves h until ctx ends, then shuts down
// within five seconds. It returns once the listener is closed; a listen
// error is returned at once. Over TLS it offers HTTP/2 and HTTP/1.1
// (ALPN), as net/http does; plain HTTP is HTTP/1.1.
func Serve(ctx context.Context, ep Endpoint, h http.Handler, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", ep.Addr)
	if err != nil {
		return fmt.Errorf("http listen on %s: %w", ep.Addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, TLSConfig: ep.TLS}
	if ep.Log != nil {
		srv.ErrorLog = slog.NewLogLogger(ep.Log.Handler(), slog.LevelWarn)
	}
	done := make(chan error, 1)
	go func() {
		if ep.TLS != nil {
			// The certificate comes from TLSConfig.GetCertificate, hence
			// no file names; ServeTLS adds the ALPN protocols for HTTP/2.
			done <- srv.ServeTLS(ln, "", "")
			return
		}
		done <- srv.Serve(ln)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if e := <-done; !errors.Is(e, http.ErrServerClosed) && e != nil {
		err = errors.Join(err, e)
	}
	return err
}
