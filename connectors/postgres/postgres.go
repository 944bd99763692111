// Package pgconn is the "postgres" connector: call steps with sql: and
// params: run one statement against a PostgreSQL database through a pgx
// connection pool.
//
// A statement that returns rows (SELECT, or INSERT ... RETURNING) answers
// 200 with the rows as a list of objects, column name -> value (see
// Convert); any other statement answers 200 with {"rows_affected": n}.
// Parameters are sent as text and PostgreSQL converts them to the type the
// statement gives $n, as it would a literal; cast where the type is
// ambiguous ($1::int, $2::jsonb). A list is sent as an array where $n is
// one (sku = ANY($1), $1::int[]) and as JSON elsewhere (json, jsonb).
//
// Errors map onto the statuses call steps already classify:
//
//	connection, network, timeout, serialization failure (40001), deadlock
//	(40P01), class 08, admin shutdown (57P01) and any other server
//	trouble                                    -> an error: transient, retried
//	unique violation (23505)                   -> 409 {error, code, constraint, detail}
//	other data or constraint errors (21, 22, 23, 27, 44, P0), program
//	limits such as an index row too large (54) -> 422 {error, code, ...}
//	syntax, undefined objects, wrong parameter count (42, 0A, 26, 34, 3F)
//	                                           -> 400 (42501, no privilege: 403)
//
// 4xx answers fail the step permanently unless the call lists them in
// accept: (e.g. accept: [409]). A statement prepared before an ALTER TABLE
// changed what it returns is prepared again and run once more, not failed.
//
// Each call runs on its own: a session-level SET does not carry over to
// later calls (the connection it ran on is closed). Set session defaults
// in the URL instead (?search_path=erp&statement_timeout=5s).
//
// Idempotency: a call step that succeeded is never repeated by a retry (the
// runtime remembers its answer under the idempotency key flow:message:step),
// but a crash between the commit and that record repeats the statement.
// Write SQL steps so that running them twice does no harm: upserts with
// INSERT ... ON CONFLICT (key) DO UPDATE, or DO NOTHING. The key itself is
// not sent to the database.
package pgconn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

func init() {
	connectors.MustRegister(connectors.Spec{
		Name: "postgres",
		Description: "A PostgreSQL database: url (postgres:// URL or key=value string; search_path, " +
			"connect_timeout and other settings as query parameters) and max_conns (default 4). " +
			"Call steps set sql: (one statement, $1, $2 ... for params:); rows become the body, " +
			"other statements answer {rows_affected}.",
	}, New)
}

// DefaultMaxConns is the pool size when max_conns is not set.
const DefaultMaxConns = 4

// DefaultConnectTimeout bounds opening a connection when the URL does not
// set connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// DefaultTimeout is the per-call timeout when neither the connection nor
// the request sets one.
const DefaultTimeout = 30 * time.Second

// MaxRows is the most rows a query may return; a larger result answers 413
// (page with LIMIT, or poll with a watermark).
const MaxRows = 100_000

var _ connectors.Caller = (*Client)(nil)

// Client is a connectors.Caller for one PostgreSQL connection. It is safe
// for concurrent use; its pool opens connections lazily, so a database
// that is down fails calls (transiently), not the workspace load.
type Client struct {
	name    string
	pool    *pgxpool.Pool
	timeout time.Duration
}

// New builds a Client from a connection's configuration. cfg.Values holds:
//
//	url        string, required: postgres://user@host:5432/db?sslmode=disable&search_path=erp
//	max_conns  int, optional: most connections open at once (default 4)
//
// cfg.Timeout is the per-call timeout (zero: 30s).
func New(cfg connectors.Config) (connectors.Caller, error) { return NewClient(cfg) }

// NewClient is New returning the concrete type.
func NewClient(cfg connectors.Config) (*Client, error) {
	var errs []error
	if err := connectors.CheckFields("", cfg.Values, "url", "max_conns"); err != nil {
		errs = append(errs, err)
	}
	url, _ := cfg.Values["url"].(string)
	if strings.TrimSpace(url) == "" {
		errs = append(errs, errors.New("url is required, e.g. postgres://postgres@127.0.0.1:5432/erp?sslmode=disable"))
	}
	maxConns := DefaultMaxConns
	switch n := cfg.Values["max_conns"].(type) {
	case nil:
	case int:
		if n < 0 {
			errs = append(errs, fmt.Errorf("max_conns must be positive, got %d", n))
		} else if n > 0 {
			maxConns = n
		}
	default:
		errs = append(errs, fmt.Errorf("max_conns must be a whole number, got %T", n))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error repeats the URL; say what is wrong without it.
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && errors.Unwrap(pe) != nil {
			return nil, fmt.Errorf("url is not a valid postgres URL: %v", errors.Unwrap(pe))
		}
		return nil, errors.New("url is not a valid postgres URL (postgres://user@host:port/database?sslmode=disable)")
	}
	pc.MaxConns = int32(maxConns)
	pc.MinConns = 0
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("opening the pool: %w", err)
	}
	c := &Client{name: cfg.Name, pool: pool, timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// Call runs req.SQL with req.Params (Method SQL only). Statements that
// return rows answer their rows; others {"rows_affected": n}. Server
// errors that retrying cannot fix answer 400, 403, 409, 422 or 413; trouble
// that may pass (network, timeouts, deadlocks, serialization failures,
// shutdowns) is an error.
func (c *Client) Call(ctx context.Context, req connectors.Request) (*connectors.Response, error) {
	if req.Method != connectors.MethodSQL {
		return nil, connectors.Invalid(fmt.Errorf("postgres connection %s: %s calls are not supported; use sql: with params:", c.name, req.Method))
	}
	if strings.TrimSpace(req.SQL) == "" {
		return answer(400, "the sql statement is empty", "", nil), nil
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	args := make([]any, 0, len(req.Params)+1)
	args = append(args, textResults)
	for i, p := range req.Params {
		v, err := Param(p)
		if err != nil {
			return answer(400, fmt.Sprintf("params[%d]: %v", i, err), "", nil), nil
		}
		args = append(args, v)
	}

	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return c.failure(ctx, err)
	}
	defer conn.Release()
	if bad, err := bindLists(ctx, conn, req.SQL, req.Params, args[1:]); err != nil {
		if bad >= 0 {
			return answer(400, fmt.Sprintf("params[%d]: %v", bad, err), "", nil), nil
		}
		return c.failure(ctx, err)
	}
	resp, err := c.query(ctx, conn, req.SQL, args)
	if stalePlan(err) {
		// pgx keeps each statement prepared on its connection; after
		// ALTER TABLE, a SELECT * or RETURNING * prepared before it fails
		// once per connection, and pgx drops the statement. The failed
		// statement did nothing, so send it again on the same connection,
		// where it is prepared afresh.
		resp, err = c.query(ctx, conn, req.SQL, args)
	}
	if err != nil {
		return c.failure(ctx, err)
	}
	return resp, nil
}

// query runs one statement on conn and reads its answer.
func (c *Client) query(ctx context.Context, conn *pgxpool.Conn, sql string, args []any) (*connectors.Response, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	out := []any{}
	for rows.Next() {
		if len(out) == MaxRows {
			rows.Close()
			return answer(413, fmt.Sprintf("the query returned more than %d rows; page with LIMIT or poll with a watermark", MaxRows), "", nil), nil
		}
		row, err := convertRow(conn.Conn().TypeMap(), fields, rows.RawValues())
		if err != nil {
			return nil, fmt.Errorf("reading a row: %w", err)
		}
		out = append(out, row)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if rows.CommandTag().String() == "SET" {
		// A session-level SET (statement_timeout, search_path, TIME ZONE,
		// ROLE ...) would stay on the pooled connection and change the
		// calls of other messages that get it later. Close the connection
		// instead of handing it back: the next call opens one with the
		// settings of the URL. (RESET ALL would keep ROLE and SESSION
		// AUTHORIZATION; DISCARD ALL drops pgx's prepared statements.)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Conn().Close(closeCtx)
	}
	if len(fields) > 0 {
		return &connectors.Response{Status: 200, Body: out}, nil
	}
	return &connectors.Response{Status: 200, Body: map[string]any{"rows_affected": int(rows.CommandTag().RowsAffected())}}, nil
}

// bindLists sends the lists among params that sql binds to an array type
// (sku = ANY($1), $1::int[]) as array literals ({"a","b"}) in args, which
// holds the params as Param gave them: as JSON, PostgreSQL refused them
// as malformed array literals. Lists bound to json, jsonb or text stay
// JSON. Only the server knows a parameter's type, so a statement with a
// list param is described first, one round trip more for such statements
// only. A list that cannot be written as an array answers the index of its
// param with the error; any other error is the statement's own.
func bindLists(ctx context.Context, conn *pgxpool.Conn, sql string, params, args []any) (int, error) {
	lists := map[int][]any{}
	for i, p := range params {
		if _, bytes := p.([]byte); !bytes {
			if l, ok := jsonv.AsList(p); ok {
				lists[i] = l
			}
		}
	}
	if len(lists) == 0 {
		return -1, nil
	}
	sd, err := conn.Conn().PgConn().Prepare(ctx, "", sql, nil)
	if err != nil {
		return -1, err
	}
	m := conn.Conn().TypeMap()
	for _, i := range slices.Sorted(maps.Keys(lists)) { // the first bad one is named, every time
		l := lists[i]
		if i >= len(sd.ParamOIDs) {
			continue // too many params: the statement itself says so
		}
		if dt, ok := m.TypeForOID(sd.ParamOIDs[i]); ok {
			if _, array := dt.Codec.(*pgtype.ArrayCodec); array {
				lit, err := arrayLiteral(l)
				if err != nil {
					return i, err
				}
				args[i] = lit
			}
		}
	}
	return -1, nil
}

// stalePlan reports whether err is PostgreSQL refusing a statement that
// pgx prepared before the table it reads changed shape.
func stalePlan(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "0A000" && strings.Contains(pe.Message, "cached plan must not change result type")
}

// failure turns an error of a statement into an answer (permanent) or an
// error (transient).
func (c *Client) failure(ctx context.Context, err error) (*connectors.Response, error) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		msg := err.Error()
		if ctx.Err() == nil && (strings.Contains(msg, "mismatched param and argument count") || strings.Contains(msg, "arguments, got")) {
			return answer(400, "the number of params does not match the $n in sql: "+msg, "", nil), nil
		}
		return nil, fmt.Errorf("postgres %s: %w", c.name, err)
	}
	status := Status(pe.Code)
	if status == 0 {
		return nil, fmt.Errorf("postgres %s: %s (SQLSTATE %s)", c.name, pe.Message, pe.Code)
	}
	return answer(status, pe.Message, pe.Code, pe), nil
}

// Status is the answer to SQLSTATE code: 409 for a unique violation, 422
// for data and constraint errors and values past a program limit (class
// 54, such as an index row too large), 400 for statements that cannot run, 403
// for a missing privilege, 0 for errors worth retrying (connection
// trouble, deadlocks, serialization failures, shutdowns, resources, and
// classes not listed here).
func Status(code string) int {
	if len(code) != 5 {
		return 0
	}
	switch code {
	case "23505":
		return 409
	case "42501":
		return 403
	}
	switch code[:2] {
	case "21", "22", "23", "27", "44", "54", "P0":
		return 422
	case "42", "0A", "26", "34", "3F":
		return 400
	}
	return 0
}

// answer builds an error response {error, code, constraint, detail, ...}.
func answer(status int, msg, code string, pe *pgconn.PgError) *connectors.Response {
	body := map[string]any{"error": msg}
	if code != "" {
		body["code"] = code
	}
	if pe != nil {
		for k, v := range map[string]string{"constraint": pe.ConstraintName, "detail": pe.Detail, "hint": pe.Hint,
			"table": pe.TableName, "column": pe.ColumnName} {
			if v != "" {
				body[k] = v
			}
		}
		if pe.Position > 0 {
			body["position"] = int(pe.Position)
		}
	}
	return &connectors.Response{Status: status, Body: body}
}

// Close closes the pool, waiting for calls in flight to return their
// connections. Calls after Close fail with an error (transient), so a
// message in flight during a conveyor.yaml reload retries on the new pool.
func (c *Client) Close() error {
	c.pool.Close()
	return nil
}

// textResults asks for these result types in text form, which is exact
// and what psql shows: numeric (no float rounding), json and jsonb (decoded
// by mappings/jsonv, keeping every digit), and types without a JSON
// counterpart.
var textResults = pgx.QueryResultFormatsByOID{}

func init() {
	for oid := range textTypes {
		textResults[oid] = pgx.TextFormatCode
	}
}
