package all

import (
	"slices"
	"testing"

	"github.com/conveyor-run/conveyor/connectors"
)

func TestCompiledIn(t *testing.T) {
	for _, kind := range []string{"http", "postgres", "file", "redis_stream", "nats"} {
		if !slices.Contains(connectors.Default.Kinds(), kind) {
			t.Errorf("%s is not registered: %v", kind, connectors.Default.Kinds())
		}
	}
}
