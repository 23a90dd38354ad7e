package main

import (
	"encoding/json"
	"io"
)

// writeJSON is every command's -o json: v indented by two spaces, one
// document per call.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
