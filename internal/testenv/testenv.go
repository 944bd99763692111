// Package testenv holds what tests share about where they run: CI runs
// every test, and the servers tests need (Redis, NATS, PostgreSQL) are
// there; on a developer's machine a test whose server is missing skips.
package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

// SkipShort skips a long test under go test -short, unless CI is set: CI
// runs every test, whatever flags it is given.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip(why)
	}
}

// Unreachable ends a test whose server (what, at where) does not answer:
// it fails when CI is set, where the server always runs, and skips
// elsewhere.
func Unreachable(t testing.TB, what, where string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s at %s is unreachable and CI is set: %v", what, where, err)
	}
	t.Skipf("%s at %s is unreachable (set CI to fail instead): %v", what, where, err)
}

// RedisURL is the Redis tests use: $CONVEYOR_TEST_REDIS, default
// redis://127.0.0.1:6379/0, checked to answer (see Unreachable).
func RedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("CONVEYOR_TEST_REDIS")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("CONVEYOR_TEST_REDIS: %v", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		Unreachable(t, "redis", url, err)
	}
	return url
}

// NATS connects to the NATS server tests use: $CONVEYOR_TEST_NATS,
// default nats://127.0.0.1:4222 (see Unreachable). The connection is
// closed when t ends.
func NATS(t testing.TB) (string, *nats.Conn) {
	t.Helper()
	url := os.Getenv("CONVEYOR_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		Unreachable(t, "nats", url, err)
	}
	t.Cleanup(nc.Close)
	return url, nc
}
