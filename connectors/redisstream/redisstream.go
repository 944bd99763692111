// Package redisstream is the "redis_stream" connector: publish steps append
// their body to a Redis Stream (XADD). Consuming a stream is the
// redis_stream trigger, which the runtime runs.
//
// An entry has two fields: "body", the published body as JSON (encoded
// with mappings/jsonv, so no number loses a digit), and "idempotency_key",
// the step's key (flow:message:step). The redis_stream trigger decodes the
// body field back into the message body.
//
// A retried publish step must not append twice, and XADD cannot do that by
// itself: entry ids must grow, so an id derived from the idempotency key
// is not possible. Instead one Lua script, atomic on the server, looks the
// key up in a marker string conveyor:publish:{<stream>}:<key>, and either
// returns the entry id the first publish stored there, or XADDs and stores
// the new id with a TTL (the dedup window, 24h by default). The marker
// shares the stream's hash slot, so the script also runs on a cluster.
// The window should outlast the longest retry of a publish step.
//
// The connection URL is a go-redis URL (redis:// or rediss://, with its
// options) that may also carry Conveyor's own settings, which are taken
// out before the Redis client sees it:
//
//	dedup_window  how long a publish is remembered, e.g. 24h (default)
//	maxlen        trim the stream to about this many entries on every XADD
//
// The redis_stream trigger's settings (consumer, claim_idle) are ignored,
// so one URL can serve both.
//
// Errors name the server by host and port, never with the URL's password.
package redisstream

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

func init() {
	connectors.MustRegister(connectors.Spec{
		Name: "redis_stream",
		Description: "A Redis server whose streams publish steps append to: url (redis:// or rediss://, " +
			"optionally with ?dedup_window=24h and ?maxlen=N). An entry holds the body as JSON in the field body and " +
			"the step's idempotency_key; a retried publish within the dedup window appends nothing new.",
	}, New)
}

// DefaultTimeout is the per-call timeout when neither the connection nor
// the request sets one.
const DefaultTimeout = 5 * time.Second

// DefaultDedupWindow is how long a publish is remembered by its
// idempotency key when the URL does not say.
const DefaultDedupWindow = 24 * time.Hour

var _ connectors.Caller = (*Client)(nil)

// Client is a connectors.Caller for one redis_stream connection. It is safe
// for concurrent use; the Redis client connects lazily and reconnects by
// itself.
type Client struct {
	name    string
	where   string // host:port, for errors
	rdb     *redis.Client
	timeout time.Duration
	window  time.Duration
	maxLen  int64
}

// New builds a Client from cfg.Values["url"]. Nothing is dialled yet, so a
// workspace loads while the server is down.
func New(cfg connectors.Config) (connectors.Caller, error) { return NewClient(cfg) }

// NewClient is New returning the concrete type.
func NewClient(cfg connectors.Config) (*Client, error) {
	if err := connectors.CheckFields("", cfg.Values, "url"); err != nil {
		return nil, err
	}
	raw, _ := cfg.Values["url"].(string)
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("url is required")
	}
	params, rest, err := takeParams(raw, "dedup_window", "maxlen", "consumer", "claim_idle")
	if err != nil {
		return nil, err
	}
	c := &Client{name: cfg.Name, timeout: cfg.Timeout, window: DefaultDedupWindow}
	if v := params["dedup_window"]; v != "" {
		if c.window, err = time.ParseDuration(v); err != nil || c.window <= 0 {
			return nil, fmt.Errorf("url: dedup_window %q is not a duration like 24h", v)
		}
	}
	if v := params["maxlen"]; v != "" {
		if c.maxLen, err = strconv.ParseInt(v, 10, 64); err != nil || c.maxLen <= 0 {
			return nil, fmt.Errorf("url: maxlen %q is not a positive number", v)
		}
	}
	opts, err := parseURL(rest)
	if err != nil {
		return nil, err
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.where, c.rdb = opts.Addr, redis.NewClient(opts)
	return c, nil
}

// takeParams removes the named query parameters from a URL and returns
// their values and the URL without them.
func takeParams(raw string, names ...string) (map[string]string, string, error) {
	base, query, _ := strings.Cut(raw, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, "", fmt.Errorf("url: invalid query: %v", cleanError(err))
	}
	out := map[string]string{}
	for _, n := range names {
		out[n] = q.Get(n)
		q.Del(n)
	}
	if len(q) > 0 {
		base += "?" + q.Encode()
	}
	return out, base, nil
}

// parseURL parses a redis:// or rediss:// URL into go-redis options with
// a 5s dial timeout unless the URL sets one. Its errors never repeat the
// URL, which may hold a password.
func parseURL(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url is not a valid redis:// URL: %v", cleanError(err))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("url must be a redis:// or rediss:// URL (got scheme %q)", u.Scheme)
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("url: %v", cleanError(err))
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	// A call's deadline (the step's timeout) bounds its command too, not
	// only the client's own read and write timeouts.
	opts.ContextTimeoutEnabled = true
	return opts, nil
}

// cleanError strips a *url.Error, which repeats the whole URL.
func cleanError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// publishScript: KEYS[1] stream, KEYS[2] marker; ARGV[1] body, ARGV[2]
// idempotency key, ARGV[3] window ms, ARGV[4] maxlen (0: no trim).
// Returns {entry id, 1 when it was published before}.
var publishScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[2])
if prev then return {prev, 1} end
local id
if tonumber(ARGV[4]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'body', ARGV[1], 'idempotency_key', ARGV[2])
else
  id = redis.call('XADD', KEYS[1], '*', 'body', ARGV[1], 'idempotency_key', ARGV[2])
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
return {id, 0}
`)

// markerKey is the key remembering the entry a publish with idempotency
// key idem appended to stream: in the stream's hash slot.
func markerKey(stream, idem string) string {
	tag := stream
	if i := strings.IndexByte(stream, '{'); i >= 0 {
		if j := strings.IndexByte(stream[i+1:], '}'); j > 0 {
			tag = stream[i+1 : i+1+j]
		}
	}
	return "conveyor:publish:{" + tag + "}:" + idem
}

// Call publishes req.Body to the stream req.Path (MethodPublish only). The
// answer is 201 {"id", "stream", "duplicate": false}, or 200 with the first
// entry's id and "duplicate": true when the idempotency key was published
// within the dedup window. A request the connection cannot serve is a 400
// answer and an error reply a retry will not change (WRONGTYPE: the key is
// no stream) a 422, so the step fails for good; an unreachable or busy
// server is an error, which the step retries.
func (c *Client) Call(ctx context.Context, req connectors.Request) (*connectors.Response, error) {
	if req.Method != connectors.MethodPublish {
		return badRequest("redis_stream connections only publish; use a publish step with connection: " + c.name), nil
	}
	if strings.TrimSpace(req.Path) == "" {
		return badRequest("the stream key (topic) is empty"), nil
	}
	body, err := jsonv.Marshal(req.Body)
	if err != nil {
		return nil, connectors.Invalid(fmt.Errorf("encoding the body: %w", err))
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var id string
	dup := false
	if req.IdempotencyKey == "" {
		args := &redis.XAddArgs{Stream: req.Path, Values: []any{"body", string(body)}}
		if c.maxLen > 0 {
			args.MaxLen, args.Approx = c.maxLen, true
		}
		id, err = c.rdb.XAdd(ctx, args).Result()
	} else {
		var res []any
		res, err = publishScript.Run(ctx, c.rdb, []string{req.Path, markerKey(req.Path, req.IdempotencyKey)},
			string(body), req.IdempotencyKey, c.window.Milliseconds(), c.maxLen).Slice()
		if err == nil && len(res) == 2 {
			id, _ = res[0].(string)
			n, _ := res[1].(int64)
			dup = n == 1
		}
	}
	if err != nil {
		err = fmt.Errorf("redis %s: XADD %s: %w", c.where, req.Path, cleanError(err))
		if permanent(err) {
			return &connectors.Response{Status: 422, Body: map[string]any{"error": err.Error()}}, nil
		}
		return nil, err
	}
	status := 201
	if dup {
		status = 200
	}
	return &connectors.Response{Status: status, Body: map[string]any{"id": id, "stream": req.Path, "duplicate": dup}}, nil
}

// permanent reports whether err is an error reply of the server that a
// retry will not change: a key that is no stream (WRONGTYPE), a user not
// allowed to write it (NOPERM), or a request the server cannot parse.
// Every other reply may pass (MISCONF while Redis cannot persist, the
// client limit, NOAUTH while credentials rotate, LOADING, READONLY ...):
// the call is retried rather than dead-lettered. Redis 6 wraps the refusal
// of a write in the publish script, "ERR Error running script (call to
// f_…): @user_script:7: @user_script: 7: -READONLY You can't write …", and
// such a reply is taken by the one it wraps.
func permanent(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) || errors.Is(err, redis.Nil) {
		return false
	}
	msg := re.Error()
	if i := strings.LastIndex(msg, ": -"); i >= 0 && strings.HasPrefix(msg, "ERR Error running script") {
		msg = msg[i+len(": -"):]
	}
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "WRONGTYPE", "NOPERM":
		return true
	case "ERR":
		for _, bad := range []string{"ERR syntax error", "ERR wrong number of arguments", "ERR Error running script",
			"ERR value is not", "ERR The ID specified in XADD", "ERR Invalid stream ID"} {
			if strings.HasPrefix(msg, bad) {
				return true
			}
		}
	}
	return false
}

func badRequest(msg string) *connectors.Response {
	return &connectors.Response{Status: 400, Body: map[string]any{"error": msg}}
}

// Close closes the connection pool.
func (c *Client) Close() error { return c.rdb.Close() }
