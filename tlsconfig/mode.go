package tlsconfig

import (
	"errors"
	"fmt"
)

// Mode says whether a connection is encrypted and what of the server's
// certificate is verified; the values and their meanings are PostgreSQL's
// sslmode.
type Mode string

// Modes. libpq's allow and prefer are missing on purpose: they fall back
// to clear text.
const (
	// Disable: clear text (dbha's default, as before TLS existed).
	Disable Mode = "disable"
	// Require: encrypted. Without a CA file the server's certificate is not
	// verified; with one, its chain is, as in VerifyCA.
	Require Mode = "require"
	// VerifyCA: encrypted, and the server's chain verified against the CA
	// file; its name is not checked.
	VerifyCA Mode = "verify-ca"
	// VerifyFull: encrypted, the chain verified against the CA file, and
	// the certificate valid for the server name (DNS or IP SAN).
	VerifyFull Mode = "verify-full"
)

// ErrUnknownMode is returned for a mode that is none of the four.
var ErrUnknownMode = errors.New("unknown TLS mode")

// ParseMode reads a mode; "" is Disable, the default.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Disable, nil
	case Disable, Require, VerifyCA, VerifyFull:
		return m, nil
	case "allow", "prefer":
		return "", fmt.Errorf("%w %q: it falls back to clear text, which dbha never does; use disable, require, verify-ca or verify-full", ErrUnknownMode, s)
	}
	return "", fmt.Errorf("%w %q: use disable, require, verify-ca or verify-full", ErrUnknownMode, s)
}

// NeedsCA reports whether the mode verifies a chain and so needs a CA file.
// (Require verifies one too when it is given one, but does not need it.)
func (m Mode) NeedsCA() bool { return m == VerifyCA || m == VerifyFull }
