// Package pgtest gives tests a PostgreSQL schema of their own on the
// server at PGTEST_URL (default postgres://postgres@127.0.0.1:5432/test).
// A test is skipped when the server is unreachable, unless CI is set: then
// it fails, so CI never passes without the database.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conveyor-run/conveyor/internal/testenv"
)

// DefaultURL is the server tests use when PGTEST_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL returns PGTEST_URL or DefaultURL.
func ServerURL() string {
	if u := os.Getenv("PGTEST_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema creates a schema with a unique name, drops it (with everything
// in it) when the test ends, and returns its name, a URL whose
// search_path is that schema, and a connection with the same search path
// for setting up and checking data.
func Schema(t testing.TB) (name, dbURL string, conn *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, withParam(t, ServerURL(), "connect_timeout", "3"))
	if err != nil {
		testenv.Unreachable(t, "PostgreSQL", redacted(ServerURL()), err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "conveyor_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("creating schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, ServerURL())
		if err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
		}
	})
	dbURL = withParam(t, ServerURL(), "search_path", name)
	if conn, err = pgx.Connect(ctx, dbURL); err != nil {
		t.Fatalf("connecting to schema %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return name, dbURL, conn
}

// withParam sets a query parameter of a postgres:// URL.
func withParam(t testing.TB, raw, key, value string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("PGTEST_URL: %v", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// redacted hides the password of a URL for messages.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "PGTEST_URL"
}
