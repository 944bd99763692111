package editorapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/dsl"
)

// TestAuthMatrix calls every route as every caller: no token and an
// unknown token get 401, a role below the route's 403, the others 2xx.
// Each allowed call gets what it needs (a fresh flow to delete, a fresh
// dead letter to replay), so that 2xx is what the route really answers.
func TestAuthMatrix(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	kept := f.deadOrder(1) // read by the viewers, never changed
	var pool []string      // dead letters for replays and discards
	for i := 2; i <= 7; i++ {
		pool = append(pool, f.deadOrder(i))
	}
	take := func() string { id := pool[0]; pool = pool[1:]; return id }
	n := 0
	etag := func() string { return f.req(Admin, "GET", "/flows/echo", nil).header.Get("ETag") }
	type call struct {
		path    string
		body    any
		headers []string
	}
	rows := []struct {
		method, path string
		role         Role // per DESIGN.md's table
		call         func(allowed bool) call
	}{
		{"GET", "/openapi.yaml", 0, nil},
		{"GET", "/flows", Viewer, nil},
		{"POST", "/flows", Editor, func(bool) call {
			n++
			id := fmt.Sprintf("m%d", n)
			return call{"/flows", map[string]any{"id": id, "source": strings.Replace(echoFlow(n), "/echo", "/"+id, 1)}, nil}
		}},
		{"GET", "/flows/:id", Viewer, func(bool) call { return call{path: "/flows/echo"} }},
		{"PUT", "/flows/:id", Editor, func(allowed bool) call {
			n++
			tag := "*"
			if allowed {
				tag = etag()
			}
			return call{"/flows/echo", echoFlow(n), []string{"Content-Type", yamlCT, "If-Match", tag}}
		}},
		{"DELETE", "/flows/:id", Editor, func(allowed bool) call {
			n++
			id := fmt.Sprintf("d%d", n)
			if allowed {
				_, err := f.e.CreateFlow(ctx, id, []byte(strings.Replace(echoFlow(n), "/echo", "/"+id, 1)), "test")
				must(t, err)
			}
			return call{path: "/flows/" + id}
		}},
		{"POST", "/flows/:id/enable", Operator, func(bool) call { return call{path: "/flows/echo/enable"} }},
		{"POST", "/flows/:id/disable", Operator, func(bool) call { return call{path: "/flows/orders/disable"} }},
		{"POST", "/flows/:id/test", Editor, func(bool) call {
			return call{"/flows/echo/test", map[string]any{"input": map[string]any{"body": map[string]any{}}}, nil}
		}},
		{"POST", "/validate", Editor, func(bool) call { return call{"/validate", echoFlow(1), []string{"Content-Type", yamlCT}} }},
		{"GET", "/flows/:id/revisions", Viewer, func(bool) call { return call{path: "/flows/echo/revisions"} }},
		{"GET", "/flows/:id/revisions/:rev", Viewer, func(bool) call { return call{path: "/flows/echo/revisions/1"} }},
		{"GET", "/flows/:id/diff", Viewer, func(bool) call { return call{path: "/flows/echo/diff"} }},
		{"POST", "/flows/:id/rollback", Editor, func(bool) call { return call{"/flows/echo/rollback", map[string]any{"revision": 1}, nil} }},
		{"GET", "/messages", Viewer, func(bool) call { return call{path: "/messages?key=1"} }},
		{"GET", "/messages/:id", Viewer, func(bool) call { return call{path: "/messages/" + kept} }},
		{"GET", "/dead-letters", Viewer, func(bool) call { return call{path: "/dead-letters?flow=orders"} }},
		{"GET", "/dead-letters/:id", Viewer, func(bool) call { return call{path: "/dead-letters/" + kept} }},
		{"POST", "/dead-letters/:id/replay", Operator, func(allowed bool) call {
			id := kept
			if allowed {
				id = take()
			}
			return call{path: "/dead-letters/" + id + "/replay"}
		}},
		{"POST", "/dead-letters/replay", Operator, func(bool) call {
			return call{"/dead-letters/replay", map[string]any{"filter": map[string]any{"flow": "no-such-flow"}}, nil}
		}},
		{"DELETE", "/dead-letters/:id", Operator, func(allowed bool) call {
			id := kept
			if allowed {
				id = take()
			}
			return call{"/dead-letters/" + id, map[string]any{"reason": "matrix"}, nil}
		}},
		{"GET", "/schema", Viewer, nil},
		{"GET", "/functions", Viewer, nil},
		{"GET", "/audit", Admin, nil},
	}

	// The matrix covers exactly the registered routes, with their roles.
	var want, have []string
	for _, r := range routes() {
		want = append(want, fmt.Sprintf("%s %s %s", r.method, r.path, r.role))
	}
	for _, r := range rows {
		have = append(have, fmt.Sprintf("%s %s %s", r.method, r.path, r.role))
	}
	sort.Strings(want)
	sort.Strings(have)
	if strings.Join(want, "\n") != strings.Join(have, "\n") {
		t.Fatalf("the matrix does not match the routes:\nroutes:\n%s\nmatrix:\n%s", strings.Join(want, "\n"), strings.Join(have, "\n"))
	}

	callers := []Role{0, -1, Viewer, Operator, Editor, Admin}
	for _, row := range rows {
		for _, who := range callers {
			allowed := row.role == 0 || who >= row.role
			c := call{path: row.path}
			if row.call != nil {
				c = row.call(allowed)
			}
			r := f.req(who, row.method, c.path, c.body, c.headers...)
			label := fmt.Sprintf("%s %s as %s", row.method, c.path, callerName(who))
			switch {
			case allowed && (r.status < 200 || r.status > 299):
				t.Errorf("%s: %s, want 2xx", label, r)
			case !allowed && who <= 0 && r.status != 401:
				t.Errorf("%s: %s, want 401", label, r)
			case !allowed && who > 0 && r.status != 403:
				t.Errorf("%s: %s, want 403", label, r)
			}
			if !allowed {
				errCode(t, r)
			}
			if !allowed && who <= 0 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", label)
			}
		}
	}
}

func callerName(r Role) string {
	switch {
	case r == 0:
		return "no token"
	case r < 0:
		return "unknown token"
	}
	return r.String()
}

func TestTokensFromConfig(t *testing.T) {
	sum := sha256.Sum256([]byte("ci-secret"))
	env := map[string]string{"ADMIN_TOKEN": "admin-secret", "EMPTY": ""}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cs := func(s string) dsl.ConfigString { return dsl.ConfigString{Raw: s} }
	cfg := &dsl.Config{API: dsl.APIConfig{Tokens: []dsl.APIToken{
		{Name: "ops-admin", Role: "admin", Token: cs("${env:ADMIN_TOKEN}")},
		{Name: "ci-deploy", Role: "editor", SHA256: strings.ToUpper(hex.EncodeToString(sum[:]))},
	}}}
	toks, err := TokensFromConfig(cfg, getenv)
	must(t, err)
	if len(toks) != 2 || toks[0] != NewToken("ops-admin", Admin, "admin-secret") || toks[1] != NewToken("ci-deploy", Editor, "ci-secret") {
		t.Errorf("tokens: %+v", toks)
	}
	s := &server{tokens: toks}
	if tk := s.lookup("ci-secret"); tk == nil || tk.Name != "ci-deploy" {
		t.Errorf("lookup: %+v", tk)
	}
	if s.lookup("ci-secre") != nil || s.lookup("") != nil {
		t.Error("a wrong secret matched")
	}

	bad := &dsl.Config{API: dsl.APIConfig{Tokens: []dsl.APIToken{
		{Name: "a", Role: "root", Token: cs("x")},
		{Name: "b", Role: "viewer", Token: cs("${env:UNSET}")},
		{Name: "c", Role: "viewer", Token: cs("${env:EMPTY}")},
		{Name: "d", Role: "viewer", SHA256: "abc"},
		{Name: "e", Role: "viewer"},
		{Name: "f", Role: "viewer", Token: cs("same")},
		{Name: "g", Role: "admin", Token: cs("same")},
		// The audit log names the token: two of one name, or one named
		// as edits on disk are, would leave "who did it" unanswerable.
		{Name: "ci-deploy", Role: "editor", Token: cs("ci-1")},
		{Name: "ci-deploy", Role: "admin", Token: cs("ci-2")},
		{Name: "file", Role: "editor", Token: cs("looks-like-disk")},
		{Name: " ", Role: "viewer", Token: cs("nameless")},
	}}}
	_, err = TokensFromConfig(bad, getenv)
	for _, want := range []string{`api.tokens[1] (a): role "root"`, "api.tokens[2] (b): token: environment variable UNSET is not set",
		"api.tokens[3] (c): token is empty", "api.tokens[4] (d): sha256: want 64 hex digits", "api.tokens[5] (e): set token or sha256",
		"api.tokens[7] (g): the same token as f", "api.tokens[9] (ci-deploy): the same name as api.tokens[8]",
		`api.tokens[10] (file): name "file" is how the audit log names edits on disk`, "api.tokens[11] ( ): name is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
