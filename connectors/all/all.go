// Package all decides which connectors are compiled in: it blank-imports
// every connector subpackage, each of which registers itself in
// connectors.Default from init(). cmd/conveyor imports this package; add a
// line here when a new connector is written.
package all

import (
	_ "github.com/conveyor-run/conveyor/connectors/http" // "http": HTTP APIs
)
