package postgres

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dbha/dbha/topology"
)

func TestStage(t *testing.T) {
	dir, seg := syntheticStore(t)
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		from topology.Position
		want []string
	}{
		{"a standby in timeline 1's segment 4", topology.PostgresAt(seg.start(4)+10, 1), []string{
			seg.name(1, 4), seg.name(1, 5), seg.name(2, 5), seg.name(2, 6), historyName(2)}},
		{"a standby already on timeline 2", topology.PostgresAt(seg.start(5)+0x900, 2), []string{
			seg.name(2, 5), seg.name(2, 6), historyName(2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			got, err := st.Stage(dst, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("staged %v, want %v", got, tc.want)
			}
			for _, name := range got {
				fi, err := os.Stat(filepath.Join(dst, name))
				if err != nil {
					t.Fatal(err)
				}
				if _, isSegment := seg.parse(name); isSegment && fi.Size() != int64(seg) {
					t.Errorf("%s is %d bytes; restore_command needs the full %d", name, fi.Size(), int64(seg))
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("%s mode %v, want 0644 so that the server's user reads it", name, fi.Mode().Perm())
				}
			}
		})
	}
}
