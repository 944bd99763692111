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
		// Columns count characters, as editors do, not bytes: "Größe" is
		// five columns (seven bytes), a tab is one.
		{
			name: "umlauts before a yaml finding",
			bug:  "a column counted in bytes points two columns right after Größe",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - log: {message: '\"Größe\"', levl: warn}\n",
			want: `f.yaml:3:31: step 1 (log): unknown field "levl" (did you mean "level"?)`,
		},
		{
			name: "umlauts before a yaml syntax error",
			bug:  "a column counted in bytes points two columns right after größe",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - map: {größe: [1, 2}\n",
			want: `f.yaml:3:23: yaml: ',' or ']' must be specified`,
		},
		{
			name: "umlaut key before an expression",
			bug:  "a column counted in bytes points two columns right after größe",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - map: {größe: 'bdy.x'}\n",
			want: `f.yaml:3:19: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "umlauts inside an expression",
			bug:  "expr's offsets count runes: Src offsets counted in bytes would point two columns right",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: 'body.x == \"Größe\" && bdy.x'\n",
			want: `f.yaml:3:35: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "umlauts and escapes in a double-quoted scalar",
			bug:  "an escaped quote and an umlaut before the error each move it",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: \"\\\"Größe\\\" == bdy.x\"\n",
			want: `f.yaml:3:27: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "umlauts in a block",
			bug:  "a column counted in bytes points two columns right after Größe",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: |\n      \"Größe\" == bdy.x\n",
			want: `f.yaml:4:18: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "umlauts in a template",
			bug:  "a column counted in bytes points two columns right after größe",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - call: {connection: erp, path: '/größe/{{ bdy.x }}'}\n",
			want: `f.yaml:3:46: unknown name "bdy" (did you mean "body"?)`,
		},
		{
			name: "a tab is one column",
			bug:  "editors show a tab as several columns but count it as one",
			src:  "trigger: {event: {topic: a}}\nsteps:\n  - filter: 'body.x ==\tbdy.x'\n",
			want: `f.yaml:3:24: unknown name "bdy" (did you mean "body"?)`,
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

// TestStoreNames: the name a call or split step stores its result under
// (as:) is what later expressions read as vars.<as>. A name they cannot
// read, one that overwrites another step's result or the watermark, and a
// read of a name nothing stores were all accepted, and read nil at run
// time.
func TestStoreNames(t *testing.T) {
	env := testFlowEnv(t)
	const head = "trigger: {event: {topic: a}}\nsteps:\n"
	tests := []struct {
		name string
		src  string
		want string
	}{
		{
			name: "empty",
			src:  head + "  - call: {connection: erp, path: /a, as: }\n",
			want: `f.yaml:3:39: step 1 (call): as: needs a name (the response lands in vars.<as>: write a name such as as: erp, or leave as: out)`,
		},
		{
			name: "empty in block style",
			src:  head + "  - call:\n      connection: erp\n      as:\n      path: /a\n",
			want: `f.yaml:5:7: step 1 (call): as: needs a name (the response lands in vars.<as>: write a name such as as: erp, or leave as: out)`,
		},
		{
			name: "not a name",
			src:  head + "  - call: {connection: erp, path: /a, as: erp-order}\n  - log: vars.erp-order\n",
			want: `f.yaml:3:43: step 1 (call): as: "erp-order" is not a name an expression can read as vars.erp-order (use letters, digits and _: such as erp_order)`,
		},
		{
			name: "dotted",
			src:  head + "  - split: {items: body.lines, steps: [{log: item}], as: lines.done}\n",
			want: `f.yaml:3:58: step 1 (split): as: "lines.done" is not a name an expression can read as vars.lines.done (use letters, digits and _: such as lines_done)`,
		},
		{
			name: "the watermark",
			src:  "trigger: {schedule: {cron: '@every 1m'}}\nwatermark: {initial: '\"\"', next: 'vars.page.body.last'}\nsteps:\n  - call: {connection: erp, path: /a, as: page}\n  - call: {connection: erp, path: /b, as: watermark}\n",
			want: `f.yaml:5:43: step 2 (call): as: "watermark" would overwrite the flow's watermark, vars.watermark (give the response another name)`,
		},
		{
			name: "used twice on one path",
			src:  head + "  - call: {connection: erp, path: /a, as: erp}\n  - call: {connection: wms, path: /b, as: erp}\n  - log: vars.erp.body\n",
			want: `f.yaml:4:43: step 2 (call): as: "erp" is already where step 1 (call) stores its result: this step would overwrite vars.erp (give each step a name of its own; steps in different branches of a choice may share one)`,
		},
		{
			name: "after a choice that stores it",
			src:  head + "  - choice:\n      - when: body.x\n        steps: [{call: {connection: erp, path: /a, as: erp}}]\n  - call: {connection: wms, path: /b, as: erp}\n",
			want: `f.yaml:6:43: step 2 (call): as: "erp" is already where step 1 (choice): branch 1: step 1 (call) stores its result: this step would overwrite vars.erp (give each step a name of its own; steps in different branches of a choice may share one)`,
		},
		{
			name: "a split collecting into a call's name",
			src:  head + "  - call: {connection: erp, path: /a, as: lines}\n  - split: {items: vars.lines.body, steps: [{log: item}], as: lines}\n",
			want: `f.yaml:4:63: step 2 (split): as: "lines" is already where step 1 (call) stores its result: this step would overwrite vars.lines (give each step a name of its own; steps in different branches of a choice may share one)`,
		},
		{
			name: "one name in different branches",
			src:  head + "  - choice:\n      - when: body.x\n        steps: [{call: {connection: erp, path: /a, as: order}}]\n      - otherwise: [{call: {connection: wms, path: /b, as: order}}]\n  - log: vars.order.body\n",
			want: "",
		},
		{
			name: "a call in a split stores per item",
			src:  head + "  - split: {items: body.lines, steps: [{call: {connection: erp, path: /a, as: erp}}, {map: {qty: vars.erp.body.qty}}], as: done}\n  - log: vars.done\n",
			want: "",
		},
		{
			name: "misspelt read",
			src:  head + "  - call: {connection: erp, path: /a, as: erp}\n  - log: 'vars.epr.body.id'\n",
			want: `f.yaml:4:16: vars.epr is never set in this flow (did you mean vars.erp?)`,
		},
		{
			name: "read of a name nothing stores",
			src:  head + "  - set: {vars.total: body.total}\n  - call: {connection: erp, path: /a, as: erp}\n  - log: 'vars.customer'\n",
			want: `f.yaml:5:16: vars.customer is never set in this flow (vars holds what steps store: as: of a call or split, set: vars.<name>, and the watermark; this flow stores vars.erp, vars.total)`,
		},
		{
			name: "read of vars in a flow that stores none",
			src:  head + "  - log: 'vars[\"erp\"]'\n",
			want: `f.yaml:3:16: vars.erp is never set in this flow (vars holds what steps store: as: of a call or split, set: vars.<name>, and the watermark; this flow stores none)`,
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
