package backup

import (
	"context"
	"os/exec"
	"slices"
	"testing"
)

// A word quoted for the source's shell reaches the program as it was,
// whatever it holds.
func TestShellLineKeepsEveryWord(t *testing.T) {
	words := []string{"plain", "with space", "it's", `"dq" $HOME ; rm -rf / \n`, "", "a\nb"}
	out, err := exec.Command("sh", "-c", "set -- "+shellLine(words)+`; for w in "$@"; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := splitNul(string(out))
	if !slices.Equal(got, words) {
		t.Fatalf("got %q, want %q", got, words)
	}
}

func splitNul(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == 0 {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// A server that listens on its address or on a wildcard serves it.
func TestListenAddrs(t *testing.T) {
	got, err := listenAddrs(context.Background(), "198.18.0.12", "3306")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"*:3306", "0.0.0.0:3306", "198.18.0.12:3306", "[::]:3306", "[::ffff:198.18.0.12]:3306"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
