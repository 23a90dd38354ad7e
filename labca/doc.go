// Package labca is a private certificate authority for labs and tests: it
// makes a CA (ECDSA P-256, Go's crypto/x509), issues server certificates
// with DNS and IP names and client certificates from it, and writes them
// as PEM files readable by their owner only (0600). It can issue what
// tests of verification need too: a certificate for another name, one from
// another CA (a second New), one that has expired.
//
// `dbha lab up --tls` and the tests of tlsconfig use it. It holds keys in
// memory and on disk without protection beyond file modes: it must not
// issue certificates for production.
package labca
