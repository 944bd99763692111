package dsl

import "time"

// The types below are the vocabulary of flow, mapping, test and workspace
// files. Their struct tags are the single source for strict decoding, the
// JSON Schema and the reference docs:
//
//	yaml:"name"      the key in the file ("-": not in the file)
//	desc:"..."       the documentation of the field
//	required:"true"  the key must be present
//	enum:"a,b"       the value must be one of these words
//	default:"x"      documented default (applied by the compiler)
//	kind:"true"      on a union (see union): one of the mutually exclusive keys

// Flow is one flows/*.yaml file: a trigger and the steps a message runs through.
type Flow struct {
	Flow        string     `yaml:"flow" desc:"Flow id; optional, must equal the file name without .yaml"`
	Description string     `yaml:"description" desc:"What the flow does, shown in the API and console"`
	Trigger     *Trigger   `yaml:"trigger" required:"true" desc:"What starts the flow: exactly one of http, schedule, file, event, redis_stream, nats"`
	Dedup       *Dedup     `yaml:"dedup" desc:"Drop duplicate deliveries by a business key"`
	RateLimit   *RateLimit `yaml:"rate_limit" desc:"Inbound rate limit: excess requests get 429 with Retry-After"`
	Retry       *Retry     `yaml:"retry" desc:"Default retry policy of call steps. A sync run does not wait to retry: a transient failure answers 503 with Retry-After, and the sender's retry resumes the run (calls that succeeded are not made again)"`
	Concurrency int        `yaml:"concurrency" desc:"Messages of this flow processed at once" default:"4"`
	Watermark   *Watermark `yaml:"watermark" desc:"A value kept between runs (vars.watermark), such as the last updated_at polled"`
	Steps       []Step     `yaml:"steps" required:"true" desc:"The steps every message runs through, in order"`
	Tests       []TestCase `yaml:"tests" desc:"Inline flow tests run by conveyor test"`

	ID string `yaml:"-"` // the file name without extension
	// Vars are the names the flow's steps store in vars (as:, set:
	// vars.<name>, the watermark), sorted; set by ParseFlow.
	Vars []string `yaml:"-"`
	File string   `yaml:"-"` // the path diagnostics are reported against
	At   Pos      `yaml:"-"`
}

// Trigger starts a flow. Exactly one kind is set.
type Trigger struct {
	HTTP        *HTTPTrigger     `yaml:"http" kind:"true" desc:"An HTTP endpoint on the trigger listener"`
	Schedule    *ScheduleTrigger `yaml:"schedule" kind:"true" desc:"A cron schedule"`
	File        *FileTrigger     `yaml:"file" kind:"true" desc:"Files dropped into a directory"`
	Event       *EventTrigger    `yaml:"event" kind:"true" desc:"An internal event topic other flows publish to"`
	RedisStream *StreamTrigger   `yaml:"redis_stream" kind:"true" desc:"An external Redis Stream, read with a consumer group"`
	NATS        *StreamTrigger   `yaml:"nats" kind:"true" desc:"An external NATS JetStream subject, read with a durable consumer"`
	At          Pos              `yaml:"-"`
}

func (Trigger) union() string { return "trigger" }

// Kind returns the name of the trigger kind that is set.
func (t *Trigger) Kind() string {
	switch {
	case t.HTTP != nil:
		return "http"
	case t.Schedule != nil:
		return "schedule"
	case t.File != nil:
		return "file"
	case t.Event != nil:
		return "event"
	case t.RedisStream != nil:
		return "redis_stream"
	case t.NATS != nil:
		return "nats"
	}
	return ""
}

// HTTPTrigger accepts messages on an HTTP path.
type HTTPTrigger struct {
	Path    string    `yaml:"path" required:"true" desc:"Request path; {name} segments become params.name" pattern:"^/"`
	Method  string    `yaml:"method" enum:"POST,PUT,PATCH,GET,DELETE" default:"POST" desc:"HTTP method"`
	Mode    string    `yaml:"mode" enum:"async,sync" default:"async" desc:"async: 202 and a message id once stored; sync: run inline and answer what respond sets"`
	Auth    *Auth     `yaml:"auth" desc:"How callers authenticate"`
	MaxBody ByteSize  `yaml:"max_body" default:"1MiB" desc:"Largest accepted body, as sent and once decompressed (Content-Encoding gzip or deflate); 413 above"`
	Timeout *Duration `yaml:"timeout" default:"30s" desc:"sync mode: longest time the flow may run before 504"`
	At      Pos       `yaml:"-"`
}

// Auth authenticates inbound requests. Exactly one kind is set.
type Auth struct {
	HMAC   *HMACAuth   `yaml:"hmac" kind:"true" desc:"HMAC signature over the raw body bytes"`
	Bearer *BearerAuth `yaml:"bearer" kind:"true" desc:"Authorization: Bearer token"`
	APIKey *APIKeyAuth `yaml:"api_key" kind:"true" desc:"A key in a request header"`
	At     Pos         `yaml:"-"`
}

func (Auth) union() string { return "auth" }

// HMACAuth checks a signature header computed over the raw request body.
type HMACAuth struct {
	Preset    string         `yaml:"preset" enum:"shopify,woocommerce,github" desc:"Sets header, encoding and prefix as the platform signs its webhooks"`
	Header    string         `yaml:"header" desc:"Header carrying the signature (required without a preset)"`
	Secret    ConfigString   `yaml:"secret" required:"true" desc:"Shared secret, usually ${env:NAME}"`
	Secrets   []ConfigString `yaml:"secrets" desc:"Further accepted secrets, for rotation"`
	Encoding  string         `yaml:"encoding" enum:"base64,hex" default:"base64" desc:"Encoding of the signature"`
	Prefix    string         `yaml:"prefix" desc:"Text before the signature, such as sha256="`
	Algorithm string         `yaml:"algorithm" enum:"sha256,sha1,sha512" default:"sha256" desc:"Hash function"`
	At        Pos            `yaml:"-"`
}

// BearerAuth accepts requests carrying one of the tokens.
type BearerAuth struct {
	Token ConfigString `yaml:"token" required:"true" desc:"Accepted token, usually ${env:NAME}"`
	At    Pos          `yaml:"-"`
}

// APIKeyAuth accepts requests whose header holds the key.
type APIKeyAuth struct {
	Header string       `yaml:"header" default:"X-API-Key" desc:"Header carrying the key"`
	Key    ConfigString `yaml:"key" required:"true" desc:"Accepted key, usually ${env:NAME}"`
	At     Pos          `yaml:"-"`
}

// ScheduleTrigger starts a run on a cron schedule.
type ScheduleTrigger struct {
	Cron       string    `yaml:"cron" required:"true" desc:"Five-field cron spec (minute hour day month weekday) or @every 5m (at fixed multiples of 5m, the same for every replica), @hourly, @daily"`
	Timezone   string    `yaml:"timezone" default:"UTC" desc:"IANA time zone the cron spec is read in, e.g. Europe/Amsterdam"`
	CatchUp    *Duration `yaml:"catch_up" default:"24h" desc:"A run that fell due while no process ran the flow (a restart, an outage) fires once at start, if it fell due at most this long ago; only the latest such run fires. 0s: never"`
	At         Pos       `yaml:"-"`
	CronAt     Pos       `yaml:"-"`
	TimezoneAt Pos       `yaml:"-"`
}

// FileTrigger starts a run for each file dropped into a directory.
type FileTrigger struct {
	Dir       string     `yaml:"dir" required:"true" desc:"Inbox directory, relative to the workspace"`
	Pattern   string     `yaml:"pattern" default:"*" desc:"Glob of the file names to take"`
	Format    string     `yaml:"format" enum:"json,jsonl,csv,x12" default:"json" desc:"How the file is parsed"`
	Per       string     `yaml:"per" enum:"file,record" default:"file" desc:"One message per file, or per record (CSV row, JSON line, X12 transaction)"`
	Complete  string     `yaml:"complete" enum:"stable,marker" default:"stable" desc:"When a file is complete: its size is stable for stable_for and not zero (an empty file waits for content), or a marker file <name><marker> exists"`
	StableFor *Duration  `yaml:"stable_for" default:"1s" desc:"How long the size must stay the same"`
	Marker    string     `yaml:"marker" default:".done" desc:"Suffix of the marker file (complete: marker)"`
	DoneDir   string     `yaml:"done_dir" default:"<dir>/done" desc:"Where processed files are moved"`
	ErrorDir  string     `yaml:"error_dir" default:"<dir>/error" desc:"Where files that cannot be read are moved, with a .reason file beside them"`
	CSV       *CSVFormat `yaml:"csv" desc:"CSV settings"`
	At        Pos        `yaml:"-"`
}

// CSVFormat describes a CSV file.
type CSVFormat struct {
	Delimiter string `yaml:"delimiter" default:"," desc:"Field separator, one character"`
	Header    *bool  `yaml:"header" default:"true" desc:"The first row names the columns (records become objects); false: records are lists"`
	At        Pos    `yaml:"-"`
}

// StreamTrigger consumes an external stream. A message is acknowledged
// only after the flow has stored it.
type StreamTrigger struct {
	URL     ConfigString `yaml:"url" required:"true" desc:"redis:// or nats:// URL, usually ${env:NAME}"`
	Stream  string       `yaml:"stream" required:"true" desc:"Redis: the stream key; NATS: the JetStream stream name"`
	Subject string       `yaml:"subject" desc:"NATS: the subject filter"`
	Group   string       `yaml:"group" desc:"Redis consumer group / NATS durable consumer name; defaults to the flow id"`
	At      Pos          `yaml:"-"`
}

// EventTrigger receives every message published to a topic.
type EventTrigger struct {
	Topic string `yaml:"topic" required:"true" desc:"Topic name, e.g. order.accepted"`
	At    Pos    `yaml:"-"`
}

// Dedup drops a message whose key was seen within TTL.
type Dedup struct {
	Key Expr     `yaml:"key" required:"true" desc:"Expression giving the business key, e.g. '\"shopify:\" + string(body.id)'"`
	TTL Duration `yaml:"ttl" default:"24h" desc:"How long a key is remembered"`
	At  Pos      `yaml:"-"`
}

// RateLimit is a token bucket per key: Limit tokens refill every Per, and
// up to Burst (default Limit) may be taken at once.
type RateLimit struct {
	Key   Expr     `yaml:"key" desc:"Expression giving the bucket key; one bucket when absent"`
	Limit int      `yaml:"limit" required:"true" min:"1" desc:"Tokens per period"`
	Per   Duration `yaml:"per" required:"true" desc:"The period, e.g. 1s"`
	Burst int      `yaml:"burst" desc:"Most tokens taken at once; defaults to limit"`
	At    Pos      `yaml:"-"`
}

// Retry is the retry policy of outbound calls.
type Retry struct {
	Attempts int      `yaml:"attempts" default:"5" min:"1" desc:"Attempts in all, the first included"`
	Backoff  string   `yaml:"backoff" enum:"exponential,fixed" default:"exponential" desc:"How the wait grows"`
	Initial  Duration `yaml:"initial" default:"1s" desc:"First wait"`
	Max      Duration `yaml:"max" default:"2m" desc:"Longest wait"`
	At       Pos      `yaml:"-"`
}

// Step is one step of a flow. Exactly one kind is set.
type Step struct {
	Name      string     `yaml:"name" desc:"Optional label shown in traces"`
	Validate  []Rule     `yaml:"validate" kind:"true" desc:"Rules the message must satisfy; every failing rule is reported"`
	Map       *MapTree   `yaml:"map" kind:"true" desc:"Builds a new body: nested maps build objects, scalars are expressions; use: names a mapping file"`
	Set       *SetSpec   `yaml:"set" kind:"true" desc:"Assigns expressions to paths such as body.status or vars.total"`
	Choice    []Branch   `yaml:"choice" kind:"true" desc:"The first branch whose when holds runs its steps; otherwise runs when none does"`
	Filter    *Expr      `yaml:"filter" kind:"true" desc:"Expression; a message for which it is false stops here as filtered"`
	Split     *Split     `yaml:"split" kind:"true" desc:"Runs steps once for every item of a list"`
	Call      *Call      `yaml:"call" kind:"true" desc:"Calls a connection defined in conveyor.yaml"`
	Publish   *Publish   `yaml:"publish" kind:"true" desc:"Publishes to an internal topic; every flow with that event trigger gets its own copy"`
	Respond   *Respond   `yaml:"respond" kind:"true" desc:"Sets the answer of a sync http trigger"`
	Log       *LogStep   `yaml:"log" kind:"true" desc:"Writes a log line"`
	Aggregate *Aggregate `yaml:"aggregate" kind:"true" desc:"Collects messages by key into one batch message, published when size is reached or within has passed"`
	At        Pos        `yaml:"-"`
}

func (Step) union() string { return "step" }

// Kind returns the name of the step kind that is set.
func (s *Step) Kind() string {
	switch {
	case s.Validate != nil:
		return "validate"
	case s.Map != nil:
		return "map"
	case s.Set != nil:
		return "set"
	case s.Choice != nil:
		return "choice"
	case s.Filter != nil:
		return "filter"
	case s.Split != nil:
		return "split"
	case s.Call != nil:
		return "call"
	case s.Publish != nil:
		return "publish"
	case s.Respond != nil:
		return "respond"
	case s.Log != nil:
		return "log"
	case s.Aggregate != nil:
		return "aggregate"
	}
	return ""
}

// Aggregate collects messages into batches.
type Aggregate struct {
	Key    *Expr    `yaml:"key" desc:"Expression giving the batch key; one batch when absent"`
	Item   *Expr    `yaml:"item" desc:"Expression giving what is collected; defaults to body"`
	Size   int      `yaml:"size" min:"1" desc:"Publish when this many items are collected"`
	Within Duration `yaml:"within" desc:"Publish at most this long after the first item"`
	Topic  string   `yaml:"topic" required:"true" desc:"Internal topic the batch {key, count, items} is published to"`
	At     Pos      `yaml:"-"`
}

// Watermark keeps a value between runs of a polling flow ("updated
// since"), so that a restart neither misses nor repeats.
type Watermark struct {
	Initial Expr `yaml:"initial" required:"true" desc:"Expression giving the first value"`
	Next    Expr `yaml:"next" required:"true" desc:"Expression evaluated after a run completed, giving the value the next run sees; a retried or replayed run whose window later runs have passed keeps the newer value"`
	At      Pos  `yaml:"-"`
}

// Rule is one validation rule.
type Rule struct {
	Rule    Expr   `yaml:"rule" required:"true" desc:"Expression that must be true"`
	Message string `yaml:"message" desc:"What the sender is told when the rule fails; defaults to the rule"`
	At      Pos    `yaml:"-"`
}

// Branch is one branch of a choice: when + steps, or otherwise.
type Branch struct {
	When      *Expr  `yaml:"when" desc:"Expression selecting this branch"`
	Steps     []Step `yaml:"steps" desc:"Steps run when the branch is selected"`
	Otherwise []Step `yaml:"otherwise" desc:"Steps run when no branch matched; must be the last branch"`
	At        Pos    `yaml:"-"`
}

// Split runs Steps for every element of Items, with item bound to it.
type Split struct {
	Items Expr   `yaml:"items" required:"true" desc:"Expression giving the list"`
	Steps []Step `yaml:"steps" required:"true" desc:"Steps run for each item; item is the element, body the body at the split"`
	As    string `yaml:"as" pattern:"^[A-Za-z_][A-Za-z0-9_]*$" desc:"Collects the body each item ends with into vars.<as>"`
	AsAt  Pos    `yaml:"-"`
	At    Pos    `yaml:"-"`
}

// Call sends a request over a connection.
type Call struct {
	Connection   string     `yaml:"connection" required:"true" desc:"Connection name from conveyor.yaml"`
	ConnectionAt Pos        `yaml:"-"`
	Method       string     `yaml:"method" enum:"GET,POST,PUT,PATCH,DELETE" default:"POST" desc:"HTTP method"`
	Path         Template   `yaml:"path" desc:"Path under the connection's base URL; {{ expr }} inserts an escaped value"`
	Query        ExprMap    `yaml:"query" desc:"Query parameters: name -> expression"`
	Headers      ExprMap    `yaml:"headers" desc:"Extra headers: name -> expression"`
	Body         *Expr      `yaml:"body" desc:"Expression giving the request body; defaults to body (none for GET and DELETE)"`
	As           string     `yaml:"as" pattern:"^[A-Za-z_][A-Za-z0-9_]*$" desc:"Stores the response (status, headers, body) in vars.<as>"`
	AsAt         Pos        `yaml:"-"`
	RateLimit    *RateLimit `yaml:"rate_limit" desc:"Outbound rate limit: the call waits for a token"`
	Retry        *Retry     `yaml:"retry" desc:"Retry policy; defaults to the flow's"`
	Timeout      *Duration  `yaml:"timeout" desc:"Per attempt; defaults to the connection's"`
	Accept       []int      `yaml:"accept" desc:"Error statuses that do not fail the step (e.g. [404]); the response lands in vars.<as> for a choice to handle"`
	SQL          string     `yaml:"sql" desc:"postgres connections: the statement, with $1, $2 ... for params; a query's rows become the response body"`
	Params       []Expr     `yaml:"params" desc:"postgres connections: expressions giving $1, $2 ..."`
	At           Pos        `yaml:"-"`
}

// Publish sends a message to an internal topic.
type Publish struct {
	Topic      string `yaml:"topic" required:"true" desc:"Topic name (internal), or stream / subject on the connection"`
	Body       *Expr  `yaml:"body" desc:"Expression giving the published body; defaults to body"`
	Connection string `yaml:"connection" desc:"Publish to an external stream connection (redis_stream, nats) instead of an internal topic"`
	At         Pos    `yaml:"-"`
}

// Respond sets the answer of a sync trigger.
type Respond struct {
	Status  *Expr   `yaml:"status" desc:"Expression giving the status code" default:"200"`
	Body    *Expr   `yaml:"body" desc:"Expression giving the response body; defaults to body"`
	Headers ExprMap `yaml:"headers" desc:"Response headers: name -> expression"`
	At      Pos     `yaml:"-"`
}

// TestCase is one flow test: an input, mocked calls and expectations.
type TestCase struct {
	Name   string          `yaml:"name" required:"true" desc:"What the test shows"`
	Input  TestInput       `yaml:"input" desc:"The message"`
	Mocks  map[string]Mock `yaml:"mocks" desc:"Responses per connection name; a list answers successive calls"`
	Expect TestExpect      `yaml:"expect" desc:"What must hold afterwards"`
	At     Pos             `yaml:"-"`
}

// TestInput is the message a test sends.
type TestInput struct {
	Body    Value             `yaml:"body" desc:"Payload"`
	Headers map[string]string `yaml:"headers" desc:"Request headers"`
	Query   map[string]string `yaml:"query" desc:"Query parameters"`
	Params  map[string]string `yaml:"params" desc:"Path parameters"`
	At      Pos               `yaml:"-"`
}

// MockResponse is one mocked answer of a connection.
type MockResponse struct {
	Status  int               `yaml:"status" default:"200" desc:"Status code"`
	Body    Value             `yaml:"body" desc:"Response body"`
	Headers map[string]string `yaml:"headers" desc:"Response headers"`
	Error   string            `yaml:"error" desc:"Fail the call with this transport error instead"`
	At      Pos               `yaml:"-"`
}

// TestExpect holds a test's expectations; absent fields are not checked.
type TestExpect struct {
	Outcome   string            `yaml:"outcome" enum:"completed,filtered,rejected,failed" desc:"How the run ends"`
	Body      Value             `yaml:"body" desc:"Subset the final body must contain"`
	Status    int               `yaml:"status" desc:"Status set by respond"`
	Response  Value             `yaml:"response" desc:"Subset the respond body must contain"`
	Errors    []string          `yaml:"errors" desc:"Validation messages expected, in order"`
	Calls     []ExpectCall      `yaml:"calls" desc:"Calls expected, in order"`
	Published []ExpectPublished `yaml:"published" desc:"Publications expected, in order"`
	Vars      Value             `yaml:"vars" desc:"Subset vars must contain"`
	At        Pos               `yaml:"-"`
}

// ExpectCall is one expected outbound call.
type ExpectCall struct {
	Connection string `yaml:"connection" required:"true" desc:"Connection name"`
	Method     string `yaml:"method" desc:"HTTP method"`
	Path       string `yaml:"path" desc:"Path with query"`
	Body       Value  `yaml:"body" desc:"Subset the request body must contain"`
	At         Pos    `yaml:"-"`
}

// ExpectPublished is one expected publication.
type ExpectPublished struct {
	Topic string `yaml:"topic" required:"true" desc:"Topic name"`
	Body  Value  `yaml:"body" desc:"Subset the published body must contain"`
	At    Pos    `yaml:"-"`
}

// TestFile is a tests/*.yaml file: tests of one flow.
type TestFile struct {
	Flow  string     `yaml:"flow" required:"true" desc:"Id of the flow under test"`
	Tests []TestCase `yaml:"tests" required:"true" desc:"The tests"`
	File  string     `yaml:"-"`
	At    Pos        `yaml:"-"`
}

// MappingFile is a mappings/*.yaml file: a reusable mapping named by its file.
type MappingFile struct {
	Description string  `yaml:"description" desc:"What the mapping builds"`
	Map         MapTree `yaml:"map" required:"true" desc:"The mapping, as in a map step"`
	ID          string  `yaml:"-"`
	File        string  `yaml:"-"`
	At          Pos     `yaml:"-"`
}

// Config is the workspace's conveyor.yaml.
type Config struct {
	Listen      string                `yaml:"listen" default:"127.0.0.1:8080" desc:"Address of the trigger listener"`
	AdminListen string                `yaml:"admin_listen" default:"127.0.0.1:8081" desc:"Address of the editor API, metrics and health"`
	Store       StoreConfig           `yaml:"store" desc:"Where queues, dedup keys and journals live"`
	Connections map[string]Connection `yaml:"connections" desc:"Systems flows call, by name"`
	API         APIConfig             `yaml:"api" desc:"Editor API settings"`
	File        string                `yaml:"-"`
	At          Pos                   `yaml:"-"`
}

// StoreConfig selects the store backend.
type StoreConfig struct {
	Backend string       `yaml:"backend" enum:"embedded,redis" default:"embedded" desc:"embedded: a bbolt file, one process; redis: several replicas"`
	Path    string       `yaml:"path" default:"data" desc:"embedded: data directory, relative to the workspace"`
	URL     ConfigString `yaml:"url" desc:"redis: redis:// URL"`
	// FailOpen says what a Redis out of reach means for the checks that
	// are not the message itself (which is never accepted unstored).
	FailOpen *FailOpen `yaml:"fail_open" desc:"redis: whether rate limits and sync dedup let traffic through while Redis is out of reach"`
	// Retention bounds the message journal.
	Retention *Duration `yaml:"retention" default:"7d" desc:"How long finished messages (completed, filtered, failed, discarded) stay in the journal, by receive time; dead letters and pending messages stay until handled, and a message stays while its dedup key lives"`
	At        Pos       `yaml:"-"`
}

// FailOpen chooses, per check, between letting traffic through unchecked
// (open) and refusing it (closed) while Redis is out of reach.
type FailOpen struct {
	RateLimit *bool `yaml:"rate_limit" default:"true" desc:"true: limits are not enforced during an outage; false: a trigger answers 503 with Retry-After and a call waits and retries"`
	Dedup     *bool `yaml:"dedup" default:"false" desc:"sync triggers (an async message is stored with its key, or not at all): false: 503 with Retry-After; true: the request runs unchecked, so a duplicate sent during the outage runs again"`
	At        Pos   `yaml:"-"`
}

// Connection is a named target system. Exactly one kind is set.
type Connection struct {
	HTTP        *HTTPConnection     `yaml:"http" kind:"true" desc:"An HTTP API"`
	Postgres    *PostgresConnection `yaml:"postgres" kind:"true" desc:"A PostgreSQL database; call it with sql:"`
	File        *FileConnection     `yaml:"file" kind:"true" desc:"An outbox directory; a call writes one file atomically"`
	RedisStream *StreamConnection   `yaml:"redis_stream" kind:"true" desc:"A Redis server to publish to streams on"`
	NATS        *StreamConnection   `yaml:"nats" kind:"true" desc:"A NATS JetStream server to publish to subjects on"`
	At          Pos                 `yaml:"-"`
}

// PostgresConnection is a PostgreSQL database.
type PostgresConnection struct {
	URL      ConfigString `yaml:"url" required:"true" desc:"postgres:// URL, usually ${env:NAME}"`
	MaxConns int          `yaml:"max_conns" default:"4" desc:"Most connections open at once"`
	At       Pos          `yaml:"-"`
}

// StreamConnection is an external stream server publish steps write to.
type StreamConnection struct {
	URL ConfigString `yaml:"url" required:"true" desc:"redis:// or nats:// URL, usually ${env:NAME}"`
	At  Pos          `yaml:"-"`
}

// FileConnection writes files into an outbox directory.
type FileConnection struct {
	Dir    string        `yaml:"dir" required:"true" desc:"Outbox directory, relative to the workspace"`
	Format string        `yaml:"format" enum:"json,jsonl,csv,x12" default:"json" desc:"How the call's body is written"`
	CSV    *CSVOutFormat `yaml:"csv" desc:"CSV settings"`
	At     Pos           `yaml:"-"`
}

// CSVOutFormat describes a CSV file an outbox writes: a trigger's
// CSVFormat and what only makes sense when writing.
type CSVOutFormat struct {
	Delimiter      string `yaml:"delimiter" default:"," desc:"Field separator, one character"`
	Header         *bool  `yaml:"header" default:"true" desc:"Write a first row naming the columns"`
	EscapeFormulas bool   `yaml:"escape_formulas" desc:"Off by default. Put a ' before a text starting with =, +, -, @, a tab or a CR, so a spreadsheet opening the file shows it instead of running it as a formula (CSV injection); every other reader sees the ' too"`
	At             Pos    `yaml:"-"`
}

func (Connection) union() string { return "connection" }

// HTTPConnection is an HTTP API with a base URL.
type HTTPConnection struct {
	BaseURL ConfigString            `yaml:"base_url" required:"true" desc:"Base URL, e.g. ${env:ERP_URL:-http://127.0.0.1:9101}"`
	Headers map[string]ConfigString `yaml:"headers" desc:"Headers sent with every request"`
	Timeout Duration                `yaml:"timeout" default:"10s" desc:"Per attempt"`
	Auth    *ConnAuth               `yaml:"auth" desc:"How Conveyor authenticates to the API"`
	TLS     *TLSConfig              `yaml:"tls" desc:"CA and client certificate (mTLS)"`
	At      Pos                     `yaml:"-"`
}

// ConnAuth is how Conveyor authenticates to a connection. Exactly one
// kind is set.
type ConnAuth struct {
	OAuth2 *OAuth2Auth   `yaml:"oauth2" kind:"true" desc:"OAuth2 client credentials; the token is cached and refreshed"`
	Bearer *ConfigString `yaml:"bearer" kind:"true" desc:"Authorization: Bearer <token>"`
	Basic  *BasicAuth    `yaml:"basic" kind:"true" desc:"HTTP basic authentication"`
	APIKey *APIKeyOut    `yaml:"api_key" kind:"true" desc:"A key sent in a header"`
	At     Pos           `yaml:"-"`
}

func (ConnAuth) union() string { return "auth" }

// OAuth2Auth is the OAuth2 client-credentials grant.
type OAuth2Auth struct {
	TokenURL     ConfigString `yaml:"token_url" required:"true" desc:"Token endpoint"`
	ClientID     ConfigString `yaml:"client_id" required:"true" desc:"Client id"`
	ClientSecret ConfigString `yaml:"client_secret" required:"true" desc:"Client secret, usually ${env:NAME}"`
	Scopes       []string     `yaml:"scopes" desc:"Scopes asked for"`
	At           Pos          `yaml:"-"`
}

// TLSConfig configures TLS to a connection: a CA to trust and, for mTLS, a
// client certificate.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file" desc:"PEM file of the CA to trust, in place of the system roots (its OAuth2 token endpoint trusts both)"`
	CertFile string `yaml:"cert_file" desc:"PEM client certificate (mTLS)"`
	KeyFile  string `yaml:"key_file" desc:"PEM client key (mTLS)"`
	At       Pos    `yaml:"-"`
}

// BasicAuth is a user name and password.
type BasicAuth struct {
	Username ConfigString `yaml:"username" required:"true" desc:"User name"`
	Password ConfigString `yaml:"password" required:"true" desc:"Password, usually ${env:NAME}"`
	At       Pos          `yaml:"-"`
}

// APIKeyOut sends a key in a header.
type APIKeyOut struct {
	Header string       `yaml:"header" default:"X-API-Key" desc:"Header name"`
	Value  ConfigString `yaml:"value" required:"true" desc:"The key, usually ${env:NAME}"`
	At     Pos          `yaml:"-"`
}

// APIConfig configures the editor API.
type APIConfig struct {
	Tokens []APIToken `yaml:"tokens" desc:"Bearer tokens and their roles"`
	At     Pos        `yaml:"-"`
}

// APIToken is one API credential: the token itself (from the environment)
// or its SHA-256 digest.
type APIToken struct {
	Name   string       `yaml:"name" required:"true" desc:"Shown in the audit log"`
	Role   string       `yaml:"role" required:"true" enum:"viewer,operator,editor,admin" desc:"What the token may do"`
	Token  ConfigString `yaml:"token" desc:"The token, usually ${env:NAME}"`
	SHA256 string       `yaml:"sha256" desc:"Hex SHA-256 of the token, instead of token"`
	At     Pos          `yaml:"-"`
}

// Duration is a YAML duration such as 500ms, 1s, 2m, 72h or 3d.
type Duration struct {
	D   time.Duration
	At  Pos
	Set bool
}

// ByteSize is a size such as 512KiB, 1MiB or 1048576.
type ByteSize struct {
	N   int64
	At  Pos
	Set bool
}
