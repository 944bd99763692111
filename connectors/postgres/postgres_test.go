package pgconn_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/conveyor-run/conveyor/connectors"
	pgconn "github.com/conveyor-run/conveyor/connectors/postgres"
	"github.com/conveyor-run/conveyor/connectors/postgres/pgtest"
)

// client connects to a fresh schema holding an items table.
func client(t *testing.T) *pgconn.Client {
	t.Helper()
	_, url, conn := pgtest.Schema(t)
	_, err := conn.Exec(context.Background(), `CREATE TABLE items (
		code text PRIMARY KEY,
		qty integer NOT NULL CHECK (qty >= 0),
		price numeric(12,2),
		attrs jsonb,
		updated_at timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z')`)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.NewClient(connectors.Config{Name: "erp_db", Values: map[string]any{"url": url, "max_conns": 2}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *pgconn.Client, sql string, params ...any) *connectors.Response {
	t.Helper()
	resp, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodSQL, SQL: sql, Params: params})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return resp
}

func TestQueryConvertsEveryValueExactly(t *testing.T) {
	c := client(t)
	resp := run(t, c, `SELECT 12.50::numeric(12,2) AS price, 123456789012345678901234.5678::numeric AS big,
		42 AS i, 9007199254740993::bigint AS i8, 1.5::float8 AS f, 1.1::float4 AS f4, true AS ok, 'Zoë' AS s,
		'2026-03-01 12:30:00.123456+01'::timestamptz AS ts, '2026-03-01 12:30:00'::timestamp AS ts_local,
		'2026-03-02'::date AS d, '{"a": 12345678901234567890, "b": [1.10, null]}'::jsonb AS doc,
		'\xdeadbeef'::bytea AS raw, NULL::int AS nothing, ARRAY[1.50, 2]::numeric[] AS nums,
		ARRAY['x', NULL] AS texts, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, interval '1 day 2 hours' AS iv`)
	if resp.Status != 200 {
		t.Fatalf("status %d: %v", resp.Status, resp.Body)
	}
	rows := resp.Body.([]any)
	if len(rows) != 1 {
		t.Fatalf("rows %v", rows)
	}
	want := map[string]any{
		"price": "12.50", "big": "123456789012345678901234.5678", "i": 42, "i8": 9007199254740993, "f": 1.5, "f4": 1.1,
		"ok": true, "s": "Zoë", "ts": "2026-03-01T11:30:00.123456Z", "ts_local": "2026-03-01T12:30:00Z", "d": "2026-03-02",
		"doc": map[string]any{"a": json.Number("12345678901234567890"), "b": []any{1.1, nil}}, "raw": "3q2+7w==",
		"nothing": nil, "nums": []any{"1.50", "2"}, "texts": []any{"x", nil}, "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"iv": "1 day 02:00:00",
	}
	got := rows[0].(map[string]any)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v (%T), want %#v", k, got[k], got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("columns %v", got)
	}
	if resp := run(t, c, "SELECT * FROM items"); !reflect.DeepEqual(resp.Body, []any{}) {
		t.Errorf("no rows: %#v, want an empty list", resp.Body)
	}
}

func TestParamsInsertUpsertAndRowsAffected(t *testing.T) {
	c := client(t)
	const upsert = `INSERT INTO items (code, qty, price, attrs, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (code) DO UPDATE SET qty = EXCLUDED.qty, price = EXCLUDED.price, attrs = EXCLUDED.attrs, updated_at = EXCLUDED.updated_at`
	// int, json.Number, an object (jsonb) and an RFC 3339 string.
	r := run(t, c, upsert, "A1", 5, json.Number("19.99"), map[string]any{"color": "red", "tags": []any{"x"}}, "2026-01-02T10:00:00Z")
	if !reflect.DeepEqual(r.Body, map[string]any{"rows_affected": 1}) {
		t.Fatalf("insert: %d %v", r.Status, r.Body)
	}
	// float64, nil, a list, a time.Time; the same key again updates.
	r = run(t, c, upsert, "A1", float64(7), 12.5, []any{1, "two"}, time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))
	if r.Status != 200 || !reflect.DeepEqual(r.Body, map[string]any{"rows_affected": 1}) {
		t.Fatalf("upsert: %d %v", r.Status, r.Body)
	}
	run(t, c, upsert, "B2", 0, nil, nil, "2026-01-04T00:00:00+01:00")
	r = run(t, c, "UPDATE items SET qty = qty + $1 WHERE qty >= $2", 1, 0)
	if !reflect.DeepEqual(r.Body, map[string]any{"rows_affected": 2}) {
		t.Fatalf("update: %v", r.Body)
	}
	r = run(t, c, "SELECT code, qty, price, attrs, updated_at FROM items WHERE code = ANY($1::text[]) OR $2 ORDER BY code", "{A1,B2}", false)
	want := []any{
		map[string]any{"code": "A1", "qty": 8, "price": "12.50", "attrs": []any{1, "two"}, "updated_at": "2026-01-03T00:00:00Z"},
		map[string]any{"code": "B2", "qty": 1, "price": nil, "attrs": nil, "updated_at": "2026-01-03T23:00:00Z"},
	}
	if !reflect.DeepEqual(r.Body, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", r.Body, want)
	}
	r = run(t, c, "INSERT INTO items (code, qty) VALUES ($1, $2) RETURNING code, qty", "C3", "4")
	if !reflect.DeepEqual(r.Body, []any{map[string]any{"code": "C3", "qty": 4}}) {
		t.Errorf("returning: %v", r.Body)
	}
}

func TestErrorsMapToStatuses(t *testing.T) {
	c := client(t)
	run(t, c, "INSERT INTO items (code, qty) VALUES ('A1', 1)")
	for _, tc := range []struct {
		name   string
		sql    string
		params []any
		status int
		code   string
	}{
		{"unique violation", "INSERT INTO items (code, qty) VALUES ($1, 1)", []any{"A1"}, 409, "23505"},
		{"not null", "INSERT INTO items (code, qty) VALUES ($1, NULL)", []any{"B"}, 422, "23502"},
		{"check", "INSERT INTO items (code, qty) VALUES ($1, $2)", []any{"B", -1}, 422, "23514"},
		{"not an integer", "INSERT INTO items (code, qty) VALUES ($1, $2)", []any{"B", "lots"}, 422, "22P02"},
		{"syntax", "SELEC 1", nil, 400, "42601"},
		{"undefined table", "SELECT * FROM nowhere", nil, 400, "42P01"},
		{"undefined column", "SELECT nope FROM items", nil, 400, "42703"},
		{"too few params", "SELECT $1::int + $2::int", []any{1}, 400, ""},
		{"empty", "  ", nil, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, c, tc.sql, tc.params...)
			body, _ := r.Body.(map[string]any)
			if r.Status != tc.status || body["code"] != nilIfEmpty(tc.code) || body["error"] == "" {
				t.Errorf("%d %v, want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
			if tc.status == 409 && (body["constraint"] != "items_pkey" || !strings.Contains(body["detail"].(string), "A1")) {
				t.Errorf("409 body %v", body)
			}
		})
	}
	for code, want := range map[string]int{"40001": 0, "40P01": 0, "08006": 0, "57P01": 0, "53300": 0, "54000": 422, "54001": 422, "23503": 422, "42501": 403, "P0001": 422} {
		if got := pgconn.Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// A deadlock, a timeout and a dead server are errors: the step retries.
func TestTransientFailuresAreErrors(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	_, err := c.Call(ctx, connectors.Request{Method: connectors.MethodSQL, SQL: "SELECT pg_sleep(2)", Timeout: 100 * time.Millisecond})
	if err == nil {
		t.Error("a statement past its timeout answered")
	}
	_, err = c.Call(ctx, connectors.Request{Method: connectors.MethodSQL, SQL: `DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '40P01'; END $$`})
	if err == nil || !strings.Contains(err.Error(), "40P01") {
		t.Errorf("deadlock: %v", err)
	}
	// The pool still works after both.
	if r := run(t, c, "SELECT 1 AS one"); !reflect.DeepEqual(r.Body, []any{map[string]any{"one": 1}}) {
		t.Errorf("after errors: %v", r.Body)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	down, err := pgconn.NewClient(connectors.Config{Name: "down", Values: map[string]any{"url": "postgres://postgres@" + addr + "/test?sslmode=disable"}})
	if err != nil {
		t.Fatalf("an unreachable server must not fail the build: %v", err)
	}
	defer down.Close()
	start := time.Now()
	if _, err := down.Call(ctx, connectors.Request{Method: connectors.MethodSQL, SQL: "SELECT 1"}); err == nil {
		t.Error("unreachable server answered")
	} else if time.Since(start) > 6*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	if _, err := c.Call(ctx, connectors.Request{Method: "POST", Path: "/x"}); !errors.Is(err, connectors.ErrInvalidRequest) {
		t.Errorf("a non-SQL call: got %v, want an invalid request (never retried)", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{}, "url is required"},
		{map[string]any{"url": "postgres://x/db", "pool": 3}, `unknown field "pool"`},
		{map[string]any{"url": "postgres://x/db", "max_conns": -1}, "max_conns must be positive"},
		{map[string]any{"url": "postgres://x/db", "max_conns": "4"}, "max_conns must be a whole number"},
		{map[string]any{"url": "postgres://u:secret@x:notaport/db"}, "not a valid postgres URL"},
	} {
		_, err := pgconn.New(connectors.Config{Name: "db", Values: tc.values})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: %v, want %q", tc.values, err, tc.want)
		}
	}
	if !contains(connectors.Default.Kinds(), "postgres") {
		t.Errorf("postgres is not registered: %v", connectors.Default.Kinds())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestParam(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want any
	}{
		{nil, nil}, {"x", "x"}, {true, "true"}, {3, "3"}, {2.50, "2.5"}, {1e21, "1000000000000000000000"},
		{json.Number("12345678901234567890.10"), "12345678901234567890.10"},
		{map[string]any{"b": 1, "a": []any{"x"}}, `{"a":["x"],"b":1}`}, {[]byte{1, 2}, `\x0102`},
	} {
		got, err := pgconn.Param(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Param(%#v) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

// ALTER TABLE changes what SELECT * returns, so each pooled connection's
// cached statement fails once with "cached plan must not change result
// type"; the call must still answer, not fail the step.
func TestSelectStarAfterAlterTable(t *testing.T) {
	c := client(t)
	run(t, c, "INSERT INTO items (code, qty) VALUES ('A1', 1)")
	const sel = "SELECT * FROM items WHERE code = $1"
	if r := run(t, c, sel, "A1"); r.Status != 200 {
		t.Fatalf("before: %d %v", r.Status, r.Body)
	}
	run(t, c, "ALTER TABLE items ADD COLUMN note text")
	for i := 0; i < 3; i++ {
		r := run(t, c, sel, "A1")
		rows, _ := r.Body.([]any)
		if r.Status != 200 || len(rows) != 1 {
			t.Fatalf("after ALTER TABLE, call %d: %d %v", i+1, r.Status, r.Body)
		}
		if row := rows[0].(map[string]any); !reflect.DeepEqual(row["code"], "A1") || row["note"] != nil {
			t.Errorf("after ALTER TABLE: %v", row)
		} else if _, ok := row["note"]; !ok {
			t.Errorf("the new column is missing: %v", row)
		}
	}
}

// A value too large for an index can never be stored: the step fails for
// good instead of retrying.
func TestProgramLimitIsPermanent(t *testing.T) {
	c := client(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 8000)
	for i := range b {
		b[i] = letters[rnd.IntN(len(letters))]
	}
	resp, err := c.Call(context.Background(), connectors.Request{Method: connectors.MethodSQL,
		SQL: "INSERT INTO items (code, qty) VALUES ($1, 1)", Params: []any{string(b)}})
	if err != nil {
		t.Fatalf("an index row too large is an error (retried): %v", err)
	}
	body, _ := resp.Body.(map[string]any)
	if resp.Status != 422 || !strings.HasPrefix(fmt.Sprint(body["code"]), "54") {
		t.Errorf("%d %v, want 422 with a class 54 code", resp.Status, resp.Body)
	}
}

// json[] and jsonb[] elements keep every digit, as json and jsonb columns do.
func TestJSONArraysKeepEveryDigit(t *testing.T) {
	c := client(t)
	r := run(t, c, `SELECT ARRAY['{"a": 12345678901234567890, "p": 1.10}'::jsonb, NULL, '"x,\"y}"'] AS docs,
		ARRAY['[1, 2.50]'::json, '{"s": "a\\b"}'] AS plain, ARRAY[['1', '2'], ['3', '4']]::jsonb[] AS grid,
		'{}'::jsonb[] AS none, '[0:1]={1,2}'::jsonb[] AS bounded`)
	if r.Status != 200 {
		t.Fatalf("%d %v", r.Status, r.Body)
	}
	want := map[string]any{
		"docs":    []any{map[string]any{"a": json.Number("12345678901234567890"), "p": 1.1}, nil, `x,"y}`},
		"plain":   []any{[]any{1, 2.5}, map[string]any{"s": `a\b`}},
		"grid":    []any{[]any{1, 2}, []any{3, 4}},
		"none":    []any{},
		"bounded": []any{1, 2},
	}
	got := r.Body.([]any)[0].(map[string]any)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
}

// A session-level SET in one call must not change later calls that get
// the same pooled connection.
func TestSessionSettingsDoNotLeak(t *testing.T) {
	c := client(t)
	setting := func() any {
		t.Helper()
		r := run(t, c, "SELECT current_setting('statement_timeout') AS v, current_setting('TimeZone') AS tz, count(*) AS n FROM items")
		if r.Status != 200 {
			t.Fatalf("%d %v", r.Status, r.Body)
		}
		row := r.Body.([]any)[0].(map[string]any)
		return [2]any{row["v"], row["tz"]}
	}
	before := setting()
	for _, sql := range []string{"SET statement_timeout = '1ms'", "SET TIME ZONE 'Pacific/Chatham'", "SET search_path = pg_catalog"} {
		if r := run(t, c, sql); r.Status != 200 {
			t.Fatalf("%s: %d %v", sql, r.Status, r.Body)
		}
		for i := 0; i < 4; i++ {
			if got := setting(); got != before {
				t.Fatalf("after %s, call %d saw %v, want %v", sql, i+1, got, before)
			}
		}
	}
}

// Range and multirange values (a price's validity, a quantity break) and
// "char" come back as PostgreSQL writes them, not as Go structs printed
// with their bounds lost or a byte as a number.
func TestRangesAndCharReadAsText(t *testing.T) {
	c := client(t)
	r := run(t, c, `SELECT '[1.5,2.5)'::numrange AS qty_break, '[2026-01-01,2026-02-01)'::daterange AS valid,
		'[1,2]'::int4range AS r, 'empty'::int8range AS none, '{[1,2],[5,6]}'::int4multirange AS mr,
		ARRAY['[1.5,2)'::numrange, NULL, '(,3]'] AS breaks, ARRAY['{[1,2]}'::int4multirange] AS mrs, 'x'::"char" AS ch`)
	if r.Status != 200 {
		t.Fatalf("%d %v", r.Status, r.Body)
	}
	want := map[string]any{
		"qty_break": "[1.5,2.5)", "valid": "[2026-01-01,2026-02-01)", "r": "[1,3)", "none": "empty",
		"mr": "{[1,3),[5,7)}", "breaks": []any{"[1.5,2)", nil, "(,3]"}, "mrs": []any{"{[1,3)}"}, "ch": "x",
	}
	got := r.Body.([]any)[0].(map[string]any)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
}

// A list bound to an array parameter (sku = ANY($1), $1::int[]) is sent
// as an array, not as JSON, which PostgreSQL refused as a malformed
// array literal; bound to json, jsonb or text it is still JSON.
func TestListParamsBindToArrays(t *testing.T) {
	c := client(t)
	for _, code := range []string{"A1", `B,"2\`, "NULL", "D4"} {
		run(t, c, "INSERT INTO items (code, qty) VALUES ($1, 1)", code)
	}
	r := run(t, c, "SELECT code FROM items WHERE code = ANY($1) ORDER BY code", []any{"A1", `B,"2\`, "NULL", nil, "X"})
	want := []any{map[string]any{"code": "A1"}, map[string]any{"code": `B,"2\`}, map[string]any{"code": "NULL"}}
	if r.Status != 200 || !reflect.DeepEqual(r.Body, want) {
		t.Errorf("= ANY($1) with a list: %d %#v, want %#v", r.Status, r.Body, want)
	}
	r = run(t, c, `SELECT $1::int[] AS ints, array_ndims($2::numeric[]) AS dims, ($2::numeric[])[1][1] AS first,
		($2::numeric[])[2][1] AS third, $3::text[] AS none, $4::jsonb AS doc, $5::text AS txt`,
		[]any{1, json.Number("2"), nil}, []any{[]any{json.Number("12345678901234567890.10"), 1.5}, []any{"3", 4}},
		[]any{}, []any{1, "x"}, []any{"a"})
	wantRow := map[string]any{"ints": []any{1, 2, nil}, "dims": 2, "first": "12345678901234567890.10", "third": "3",
		"none": []any{}, "doc": []any{1, "x"}, "txt": `["a"]`}
	if r.Status != 200 || !reflect.DeepEqual(r.Body, []any{wantRow}) {
		t.Errorf("array, json and text params from lists: %d %#v, want %#v", r.Status, r.Body, wantRow)
	}
}

// An array of two or more dimensions (a grid of quantities per warehouse
// and week) keeps its shape: a list of lists, not one flat list.
func TestMultiDimensionalArraysKeepTheirShape(t *testing.T) {
	c := client(t)
	r := run(t, c, `SELECT ARRAY[[1,2],[3,4]] AS grid, ARRAY[[1.50,2],[3,NULL]]::numeric[] AS prices,
		ARRAY[[['a']],[['b']]] AS cube, ARRAY[['2026-01-02'::date]] AS dates, '[0:1]={7,8}'::int[] AS bounded, '{}'::int[] AS none`)
	if r.Status != 200 {
		t.Fatalf("%d %v", r.Status, r.Body)
	}
	want := map[string]any{
		"grid": []any{[]any{1, 2}, []any{3, 4}}, "prices": []any{[]any{"1.50", "2"}, []any{"3", nil}},
		"cube": []any{[]any{[]any{"a"}}, []any{[]any{"b"}}}, "dates": []any{[]any{"2026-01-02"}},
		"bounded": []any{7, 8}, "none": []any{},
	}
	got := r.Body.([]any)[0].(map[string]any)
	for k, w := range want {
		if !reflect.DeepEqual(got[k], w) {
			t.Errorf("%s = %#v, want %#v", k, got[k], w)
		}
	}
}
