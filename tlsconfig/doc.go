// Package tlsconfig turns dbha's TLS settings (a mode and the paths of a CA
// file, a certificate and its key) into a *tls.Config, for the connections
// dbha makes (Client: databases, Consul) and for the one it serves (Server:
// its HTTP API and console).
//
// Modes have PostgreSQL's meanings, applied the same way to every engine:
// disable (clear text), require (encrypted; with a CA file, the chain is
// verified as in verify-ca, as libpq does), verify-ca (the chain is
// verified against the CA file, the name is not checked) and verify-full
// (the chain and the server name, a host name or an IP address). Nothing
// here falls back to clear text: a mode other than disable yields a
// config that encrypts or fails.
//
// Rotation: the files are stat'ed on every handshake and re-read when one
// changed (another inode, size, mode or modification time), so a renewed
// certificate, key or CA is used from the next handshake on without a
// restart; a handshake otherwise costs a stat per file. A file that cannot
// be read or parsed after a change fails every handshake, with an error
// naming the setting and the file, until it is fixed: the config never
// keeps using material that is no longer what the files say (an operator
// who replaced a certificate, perhaps because it leaked, is not left with
// the old one in silence), and never loosens verification. Replace a file
// by renaming a complete new one over it; a certificate and key written
// one after the other fail the handshakes made between the two writes.
//
// Our own certificate (a client's or the server's) outside its validity
// period, and a private key readable by group or others, are refused when
// the config is built and on every handshake after.
//
// It owns no connection: callers hand the config to their driver, and add
// the instance's address to the errors a handshake returns. It must not
// import dbha's other packages: config imports it to validate modes.
package tlsconfig
