// Package all decides which connectors are compiled in: it blank-imports
// every connector subpackage, each of which registers itself in
// connectors.Default from init(). cmd/conveyor imports this package; add a
// line here when a new connector is written.
package all

import (
	_ "github.com/conveyor-run/conveyor/connectors/file" // "file": outbox directories
	_ "github.com/conveyor-run/conveyor/connectors/http" // "http": HTTP APIs
	_ "github.com/conveyor-run/conveyor/connectors/nats" // "nats": NATS JetStream subjects
	_ "github.com/conveyor-run/conveyor/connectors/postgres"
	_ "github.com/conveyor-run/conveyor/connectors/redisstream" // "redis_stream": Redis Streams
)
