package dsl_test

import "testing"

// TestPositions holds findings whose line:col (or whose very presence)
// was once wrong; each case states the right answer.
func TestPositions(t *testing.T) {
	env := testFlowEnv(t)
	tests := []struct {
		name string
		bug  string
		src  string
		want string
	}{
		{
			name: "cron",
			bug:  "dsl/load.go checker.trigger reports a bad cron at the schedule mapping, not at the cron value",
			src:  "trigger:\n  schedule:\n    timezone: UTC\n    cron: \"0 25 * * *\"\nsteps:\n  - log: '\"x\"'\n",
			want: `f.yaml:4:11: trigger.schedule.cron: "0 25 * * *": end of range (25) above maximum (23): 25 (five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *")`,
		},
		{
			name: "cron that never fires",
			bug:  "a cron no date matches (February 30th) was accepted; the scheduler then fired it at once, dated year 1, and spun",
			src:  "trigger:\n  schedule:\n    cron: \"0 0 30 2 *\"\nsteps:\n  - log: '\"x\"'\n",
			want: `f.yaml:3:11: trigger.schedule.cron: "0 0 30 2 *" never fires: no date matches it (check the day of the month against the month: 0 0 30 2 * asks for February 30th)`,
		},
		{
			name: "timezone",
			bug:  "dsl/load.go checker.trigger reports an unknown time zone at the schedule mapping (the cron line), not at the timezone value",
			src:  "trigger:\n  schedule:\n    cron: \"0 2 * * *\"\n    timezone: Europe/Amsterdm\nsteps:\n  - log: '\"x\"'\n",
			want: `f.yaml:4:15: trigger.schedule.timezone: unknown time zone "Europe/Amsterdm" (an IANA name such as Europe/Amsterdam)`,
		},
		{
			name: "connection",
			bug:  "flows/compile.go call reports an unknown connection at the call mapping (its first key), not at the connection value",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - call:\n      path: /orders\n      connection: erpp\n",
			want: `f.yaml:5:19: step 1 (call): unknown connection "erpp" (did you mean "erp"?)`,
		},
		{
			name: "missing env var reported twice",
			bug:  "flows/auth.go auth adds \"the secret is empty\" after resolve already reported the missing variable",
			src:  "trigger:\n  http:\n    path: /orders\n    auth: {hmac: {header: X-Sig, secret: \"${env:ORDERS_SECRET}\"}}\nsteps:\n  - log: '\"x\"'\n",
			want: `f.yaml:4:42: trigger.http.auth.hmac.secret: environment variable ORDERS_SECRET is not set (export it, or give a default: ${env:NAME:-value})`,
		},
		{
			name: "empty filter",
			bug:  "dsl/decode.go decode: a step kind with no value (filter:, map:, log:) leaves the kind's pointer nil, so the step has no kind and is silently a no-op",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter:\n",
			want: `f.yaml:3:5: step 1 (filter): filter needs a value`,
		},
		{
			name: "empty map",
			bug:  "dsl/decode.go decode: map: with no value is silently a step without a kind",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - map:\n  - log: '\"x\"'\n",
			want: `f.yaml:3:5: step 1 (map): map needs a value`,
		},
		{
			name: "unknown alias",
			bug:  "dsl/decode.go resolve returns nil for an unknown alias and decodeStruct then also reports the union as empty",
			src:  "trigger: *t\nsteps:\n  - log: '\"x\"'\n",
			want: `f.yaml:1:10: trigger: unknown alias *t (define the anchor &t before using it)`,
		},
		{
			name: "yaml null as an expression",
			bug:  "dsl/values.go exprOf hands a YAML null (~, null, Null, NULL) to expr as its text: \"unknown name \"null\" (did you mean \"all\"?)\"; it is nil",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - set: {vars.a: ~, vars.b: null, vars.c: NULL}\n",
			want: "",
		},
		{
			name: "%YAML directive",
			bug:  "dsl/decode.go decodeFile counts the directive of a file that starts with %YAML 1.2 as a document of its own",
			src:  "%YAML 1.2\n---\ntrigger: {event: {topic: a}}\nsteps:\n  - log: '\"x\"'\n",
			want: "",
		},
		{
			name: "folded block",
			bug:  "dsl/values.go Expr.PosOf maps lines of a folded (>) block as if they were lines of Src",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: >\n      body.x == 1 &&\n      bdy.y == 2\n",
			want: `f.yaml:5:7: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "escapes in a double-quoted scalar",
			bug:  "dsl/values.go Expr.PosOf counts columns of the unescaped Src, not of the file",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: \"body.x == \\\"a\\\" && bdy.y\"\n",
			want: `f.yaml:3:33: unknown name "bdy" (did you mean "body"?)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lint("f.yaml", []byte(tt.src), env).Error(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
