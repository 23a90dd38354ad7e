package topology

import (
	"errors"
	"testing"
)

func TestUnion(t *testing.T) {
	parse := map[Engine]func(string) (Position, error){MariaDB: ParseMariaDB, MySQL: ParseMySQL}
	const u1, u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"
	cases := []struct {
		name    string
		engine  Engine
		a, b    string
		want    string
		wantErr error
	}{
		{"mariadb: one ahead", MariaDB, "0-1-10", "0-1-7", "0-1-10", nil},
		{"mariadb: equal", MariaDB, "0-1-10", "0-1-10", "0-1-10", nil},
		{"mariadb: each ahead in its own domain", MariaDB, "0-1-10,1-2-5", "0-1-7,1-2-9", "0-1-10,1-2-9", nil},
		{"mariadb: a domain only one has", MariaDB, "0-1-10", "2-3-4", "0-1-10,2-3-4", nil},
		{"mariadb: empty is the identity", MariaDB, "", "0-1-3", "0-1-3", nil},
		{"mariadb: forked domain", MariaDB, "0-1-10", "0-2-10", "", ErrDiverged},
		{"mysql: sets join", MySQL, u1 + ":1-5", u1 + ":3-9," + u2 + ":1-2", u1 + ":1-9," + u2 + ":1-2", nil},
		{"mysql: gaps stay gaps", MySQL, u1 + ":1-3", u1 + ":7-9", u1 + ":1-3:7-9", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := parse[tc.engine](tc.a)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parse[tc.engine](tc.b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Union(a, b)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Union = %v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("Union = %q, %v; want %q", got, err, tc.want)
			}
			for _, in := range []Position{a, b} {
				if o, _ := Compare(got, in); o != Ahead && o != Equal {
					t.Errorf("union %s is %v input %s", got, o, in)
				}
			}
		})
	}
	t.Run("postgres takes the further position", func(t *testing.T) {
		got, err := Union(PostgresAt(100, 1), PostgresAt(300, 1))
		if err != nil || got.LSN() != 300 {
			t.Fatalf("Union = %v, %v", got, err)
		}
		fork := PostgresAt(500, 2).WithHistory([]TimelineSwitch{{Timeline: 1, Switch: 200}})
		if _, err := Union(PostgresAt(300, 1), fork); !errors.Is(err, ErrDiverged) {
			t.Fatalf("forked timelines joined: %v", err)
		}
	})
	t.Run("zero is the identity", func(t *testing.T) {
		p := PostgresAt(5, 1)
		if got, err := Union(Position{}, p); err != nil || got.LSN() != 5 {
			t.Fatalf("Union = %v, %v", got, err)
		}
	})
}

func TestLocalErrant(t *testing.T) {
	cases := []struct {
		name, history string
		server        uint32
		reference     string
		want          string
	}{
		{"own write beyond everyone", "0-1-150,0-2-151", 2, "0-1-149", "0-2-151"},
		{"ahead, but from the primary", "0-1-150", 2, "0-1-149", ""},
		{"own write others also hold (a former primary)", "0-1-150,0-2-90", 2, "0-1-149,0-2-90", ""},
		{"own write one other source holds", "0-1-150,0-2-151", 2, "0-2-151", ""},
		{"no reference at all", "0-2-5", 2, "", "0-2-5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := ParseMariaDB(tc.history)
			var refs []Position
			if tc.reference != "" {
				ref, _ := ParseMariaDB(tc.reference)
				refs = append(refs, ref, Position{})
			}
			if got := LocalErrant(h, tc.server, refs...); got.String() != tc.want {
				t.Fatalf("LocalErrant = %q, want %q", got, tc.want)
			}
		})
	}
}
