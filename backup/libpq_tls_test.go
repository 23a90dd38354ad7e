package backup

import (
	"slices"
	"testing"

	"github.com/dbha/dbha/tlsconfig"
)

// pg_basebackup encrypts as every connection to the cluster does, with
// libpq's meanings of the modes, which are dbha's.
func TestLibpqTLS(t *testing.T) {
	if env := libpqTLS(nil); env != nil {
		t.Errorf("disabled: %v", env)
	}
	got := libpqTLS(tlsconfig.NewSettings(tlsconfig.VerifyFull, tlsconfig.Files{CA: "/ca", Cert: "/c", Key: "/k"}))
	want := []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=/ca", "PGSSLCERT=/c", "PGSSLKEY=/k"}
	if !slices.Equal(got, want) {
		t.Errorf("verify-full: %v, want %v", got, want)
	}
	if got := libpqTLS(tlsconfig.NewSettings(tlsconfig.Require, tlsconfig.Files{})); !slices.Equal(got, []string{"PGSSLMODE=require"}) {
		t.Errorf("require: %v", got)
	}
}
