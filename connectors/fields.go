package connectors

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/conveyor-run/conveyor/dsl"
)

// CheckFields returns an error for every key of m that is not one of
// known, in sorted order, prefixed with where ("tls", "auth.basic"; ""
// for a connection's own fields). Each names the closest known field when
// one is near (a misspelling), and the known fields otherwise:
//
//	tls: unknown field "ca_flie" (did you mean "ca_file"?)
//	unknown field "pool" (known: url, max_conns)
func CheckFields[V any](where string, m map[string]V, known ...string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(known, k) {
			continue
		}
		hint := dsl.DidYouMean(k, known)
		if hint == "" {
			hint = "known: " + strings.Join(known, ", ")
		}
		msg := fmt.Sprintf("unknown field %q (%s)", k, hint)
		if where != "" {
			msg = where + ": " + msg
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}
