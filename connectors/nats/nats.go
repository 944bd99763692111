// Package natsconn is the "nats" connector: publish steps publish their
// body to a NATS JetStream subject and wait for the stream's
// acknowledgement. Consuming a stream is the nats trigger, which the
// runtime runs.
//
// The message data is the body as JSON (encoded with mappings/jsonv, so no
// number loses a digit), with the header Content-Type: application/json.
// A retried publish step is not stored twice: the step's idempotency key
// (flow:message:step) is sent as Nats-Msg-Id, and JetStream drops a
// message whose id it has seen within the stream's duplicate window
// (duplicate_window on the stream, 2 minutes by default; make it outlast
// the longest retry of a publish step). A subject must be bound to a
// stream: a publish no stream answers fails and is retried.
//
// The connection URL is a NATS URL (nats://, tls://, ws:// or wss://, or
// several separated by commas) and may carry user:password or a token.
// Errors name the servers by host and port only.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

func init() {
	connectors.MustRegister(connectors.Spec{
		Name: "nats",
		Description: "A NATS server with JetStream whose subjects publish steps publish to: url (nats://, tls://, ws:// or wss://). " +
			"The body is sent as JSON with Nats-Msg-Id set to the step's idempotency key, so the stream's duplicate " +
			"window drops a retried publish; the answer carries the stream, seq and duplicate.",
	}, New)
}

// DefaultTimeout is the per-call timeout (connecting included) when
// neither the connection nor the request sets one.
const DefaultTimeout = 5 * time.Second

var _ connectors.Caller = (*Client)(nil)

// Client is a connectors.Caller for one nats connection. It is safe for
// concurrent use. It connects on the first call, so a workspace loads
// while the server is down, and once connected it reconnects by itself.
type Client struct {
	name    string
	url     string
	where   string // the servers as host:port, for errors and logs
	timeout time.Duration

	mu         sync.Mutex // guards the fields below
	nc         *nats.Conn
	js         jetstream.JetStream
	closed     bool
	connecting chan struct{} // closed when the connect under way ends
	connErr    error         // of the last connect that failed
}

// New builds a Client from cfg.Values["url"].
func New(cfg connectors.Config) (connectors.Caller, error) { return NewClient(cfg) }

// NewClient is New returning the concrete type.
func NewClient(cfg connectors.Config) (*Client, error) {
	if err := connectors.CheckFields("", cfg.Values, "url"); err != nil {
		return nil, err
	}
	raw, _ := cfg.Values["url"].(string)
	where, err := servers(raw)
	if err != nil {
		return nil, err
	}
	c := &Client{name: cfg.Name, url: strings.TrimSpace(raw), where: where, timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// servers checks a NATS URL list and returns its servers as host:port,
// without user info: what errors and logs may show of it.
func servers(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", errors.New("url is required")
	}
	var hosts []string
	for s := range strings.SplitSeq(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // it repeats the URL, which may hold a password
			}
			return "", fmt.Errorf("url is not a valid nats:// URL: %v", err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return "", fmt.Errorf("url must be a nats://, tls://, ws:// or wss:// URL (got scheme %q)", u.Scheme)
		}
		if u.Host == "" {
			return "", errors.New("url has no host")
		}
		hosts = append(hosts, u.Host)
	}
	return strings.Join(hosts, ","), nil
}

// connect opens a connection to the servers of url that reconnects for
// ever, waiting at most timeout per attempt. name is shown in the
// server's connection list.
func connect(url, name string, timeout time.Duration) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name(name), nats.Timeout(timeout), nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second), nats.NoCallbacksAfterClientClose())
}

// jetStream returns the JetStream context, connecting first if needed.
// One connect serves every caller, and each waits for it no longer than
// its own ctx: connecting under the lock made the k-th of concurrent
// calls wait k connect timeouts, far past its own deadline.
func (c *Client) jetStream(ctx context.Context) (jetstream.JetStream, error) {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return nil, errors.New("the connection is closed")
	case c.js != nil:
		js := c.js
		c.mu.Unlock()
		return js, nil
	case c.connecting == nil:
		c.connecting = make(chan struct{})
		go c.dial(c.connecting)
	}
	done := c.connecting
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("connecting: %w", ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.js != nil {
		return c.js, nil
	}
	return nil, fmt.Errorf("connecting: %w", c.connErr)
}

// dial makes the connection jetStream waits for, and closes done.
func (c *Client) dial(done chan struct{}) {
	defer close(done)
	nc, err := connect(c.url, "conveyor "+c.name, c.timeout)
	var js jetstream.JetStream
	if err == nil {
		if js, err = jetstream.New(nc); err != nil {
			nc.Close()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connecting = nil
	switch {
	case err != nil:
		c.connErr = err
	case c.closed: // closed meanwhile
		nc.Close()
		c.connErr = errors.New("the connection is closed")
	default:
		c.nc, c.js = nc, js
	}
}

// Call publishes req.Body to the subject req.Path (MethodPublish only) and
// waits for the stream's acknowledgement. The answer is 201 {"stream",
// "seq", "duplicate": false}, or 200 with "duplicate": true when the stream
// had the idempotency key within its duplicate window. A request the
// connection cannot serve is a 400 answer; a JetStream error carries its
// own status (400 permanent, 503 retried); a server that cannot be
// reached, or a subject no stream answers, is an error (retried).
func (c *Client) Call(ctx context.Context, req connectors.Request) (*connectors.Response, error) {
	if req.Method != connectors.MethodPublish {
		return badRequest("nats connections only publish; use a publish step with connection: " + c.name), nil
	}
	if !validSubject(req.Path) {
		return badRequest(fmt.Sprintf("%q is not a subject to publish to (tokens separated by dots, no spaces or wildcards)", req.Path)), nil
	}
	data, err := jsonv.Marshal(req.Body)
	if err != nil {
		return nil, connectors.Invalid(fmt.Errorf("encoding the body: %w", err))
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	js, err := c.jetStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", c.where, err)
	}
	msg := nats.NewMsg(req.Path)
	msg.Data = data
	msg.Header.Set("Content-Type", "application/json")
	var opts []jetstream.PublishOpt
	if req.IdempotencyKey != "" {
		opts = append(opts, jetstream.WithMsgID(req.IdempotencyKey))
	}
	ack, err := js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		err = fmt.Errorf("nats %s: publish to %s: %w", c.where, req.Path, err)
		var ae *jetstream.APIError
		if errors.As(err, &ae) && ae.Code >= 400 && ae.Code < 600 {
			return &connectors.Response{Status: ae.Code, Body: map[string]any{"error": err.Error(), "err_code": int(ae.ErrorCode)}}, nil
		}
		return nil, err
	}
	status := 201
	if ack.Duplicate {
		status = 200
	}
	return &connectors.Response{Status: status, Body: map[string]any{"stream": ack.Stream, "seq": int64(ack.Sequence), "duplicate": ack.Duplicate}}, nil
}

// validSubject reports whether s can be published to: non-empty tokens
// separated by dots, without whitespace or the wildcards * and >.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

func badRequest(msg string) *connectors.Response {
	return &connectors.Response{Status: 400, Body: map[string]any{"error": msg}}
}

// Close closes the connection, if one was opened.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.nc != nil {
		c.nc.Close()
	}
	return nil
}
