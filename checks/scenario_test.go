package checks

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden findings.txt files from the current output")

// scenario is a test case folder's evidence.json: the Evidence that Analyze
// reads, in its own JSON form, with two conveniences. Its "at" is the
// analysis' now (t0 when absent), and every other time is written relative
// to it ("now", "now-1.5s"); durations are Go durations ("250ms"). An
// optional "policy" holds only the thresholds that differ from
// DefaultPolicy.
type scenario struct {
	Evidence
	Policy Policy `json:"policy"`
}

// TestScenarios analyzes every testdata/<case>/evidence.json and compares
// the findings, as text, with findings.txt. Run with -update to rewrite the
// golden files after a deliberate change, and read the diff.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*/evidence.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		dir := filepath.Dir(file)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := readScenario(b)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var out strings.Builder
			if err := writeFindings(&out, Analyze(sc.Evidence, sc.Policy, sc.At)); err != nil {
				t.Fatal(err)
			}
			got, golden := out.String(), filepath.Join(dir, "findings.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (got:\n%s)", err, got)
			}
			if got != string(want) {
				t.Fatalf("%s differs.\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// readScenario decodes evidence.json. Unknown keys are errors, so that a
// misspelt field fails the case instead of silently staying zero.
func readScenario(b []byte) (scenario, error) {
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return scenario{}, err
	}
	now := t0
	if at, ok := tree["at"].(string); ok {
		var err error
		if now, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return scenario{}, fmt.Errorf("at: %w", err)
		}
	}
	if err := relative(tree, reflect.TypeFor[scenario](), now); err != nil {
		return scenario{}, err
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return scenario{}, err
	}
	sc := scenario{Policy: DefaultPolicy()}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return scenario{}, err
	}
	sc.At = now
	return sc, nil
}

// relative rewrites, in place, the decoded JSON v that will be unmarshalled
// into a value of type t: a string bound for a time.Time that reads "now",
// "now-1.5s" or "now+2s" becomes that instant in RFC 3339, and a string
// bound for a time.Duration becomes its nanoseconds. Everything else keeps
// the JSON form its type defines.
func relative(v any, t reflect.Type, now time.Time) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	set := func(put func(any), e any, et reflect.Type) error {
		s, ok := e.(string)
		switch {
		case ok && et == reflect.TypeFor[time.Time]():
			if offset, rel := strings.CutPrefix(s, "now"); rel {
				d, err := time.ParseDuration(cmp.Or(offset, "0s"))
				if err != nil {
					return fmt.Errorf("time %q: %w", s, err)
				}
				put(now.Add(d).Format(time.RFC3339Nano))
			}
			return nil
		case ok && et == reflect.TypeFor[time.Duration]():
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("duration %q: %w", s, err)
			}
			put(int64(d))
			return nil
		}
		return relative(e, et, now)
	}
	switch x := v.(type) {
	case map[string]any:
		fields := jsonFields(t)
		for k, e := range x {
			et, ok := fields[k]
			if t.Kind() == reflect.Map {
				et, ok = t.Elem(), true
			}
			if !ok {
				continue // left for the decoder to refuse
			}
			if err := set(func(n any) { x[k] = n }, e, et); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return nil
		}
		for i, e := range x {
			if err := set(func(n any) { x[i] = n }, e, t.Elem()); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// jsonFields maps the JSON keys of struct type t to their field types, with
// the fields of embedded structs promoted as encoding/json promotes them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for _, f := range reflect.VisibleFields(t) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || (f.Anonymous && name == "") {
			continue
		}
		out[cmp.Or(name, f.Name)] = f.Type
	}
	return out
}

// writeFindings renders findings as findings.txt reads: one block per
// finding with every exported field of Finding on a line of its own, in
// declaration order except that slices come last, one element a line (a
// Vote as its fields in columns). It walks the fields by reflection, so a
// field added to Finding shows up in every golden file at the next -update
// with no change here.
func writeFindings(w io.Writer, findings []Finding) error {
	if len(findings) == 0 {
		_, err := io.WriteString(w, "no findings\n")
		return err
	}
	var out strings.Builder
	for i, f := range findings {
		if i > 0 {
			out.WriteString("\n")
		}
		fmt.Fprintf(&out, "finding %d\n", i+1)
		writeFields(&out, reflect.ValueOf(f))
	}
	// tabwriter pads a cell followed by an empty last one.
	var trimmed strings.Builder
	for line := range strings.Lines(out.String()) {
		trimmed.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	_, err := io.WriteString(w, trimmed.String())
	return err
}

// writeFields writes a struct's exported fields as "label: value" lines.
func writeFields(out *strings.Builder, v reflect.Value) {
	var fields, lists []reflect.StructField
	width := 0
	for _, sf := range reflect.VisibleFields(v.Type()) {
		if !sf.IsExported() {
			continue
		}
		width = max(width, len(label(sf))+1)
		if sf.Type.Kind() == reflect.Slice {
			lists = append(lists, sf)
		} else {
			fields = append(fields, sf)
		}
	}
	for _, sf := range fields {
		fmt.Fprintf(out, "  %-*s %s\n", width, label(sf)+":", text(v.FieldByIndex(sf.Index)))
	}
	for _, sf := range lists {
		s := v.FieldByIndex(sf.Index)
		if s.Len() == 0 {
			fmt.Fprintf(out, "  %-*s -\n", width, label(sf)+":")
			continue
		}
		fmt.Fprintf(out, "  %s:\n", label(sf))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for j := range s.Len() {
			fmt.Fprintf(tw, "    %s\n", row(s.Index(j)))
		}
		tw.Flush() // writes to a strings.Builder, which does not fail
	}
}

// label is a field's JSON name, the name operators see in the API.
func label(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	return cmp.Or(name, sf.Name)
}

// row is one slice element: a struct's exported fields as tab-separated
// cells, anything else as it prints.
func row(v reflect.Value) string {
	if v.Kind() != reflect.Struct {
		return text(v)
	}
	var cells []string
	for _, sf := range reflect.VisibleFields(v.Type()) {
		if sf.IsExported() {
			cells = append(cells, text(v.FieldByIndex(sf.Index)))
		}
	}
	return strings.Join(cells, "\t")
}

// text prints a value, with "-" for an empty string or a nil pointer so
// that a missing value is visibly missing.
func text(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return "-"
	}
	return cmp.Or(fmt.Sprint(v.Interface()), "-")
}
