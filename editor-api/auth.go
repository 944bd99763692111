package editorapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/conveyor-run/conveyor/dsl"
)

// Role is what a token may do; each role may do everything the roles below
// it may.
type Role int

// The roles, in order.
const (
	Viewer   Role = iota + 1 // read flows, revisions, messages, dead letters, schema, functions
	Operator                 // + enable and disable flows, replay and discard dead letters
	Editor                   // + create, change, delete, validate, test and roll back flows
	Admin                    // + read the audit log
)

var roleNames = []string{"", "viewer", "operator", "editor", "admin"}

// String returns the role's name as conveyor.yaml spells it.
func (r Role) String() string {
	if r > 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "none"
}

// ParseRole reads a role name: viewer, operator, editor or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if i > 0 && n == s {
			return Role(i), nil
		}
	}
	return 0, fmt.Errorf("role %q: one of viewer, operator, editor, admin", s)
}

// Token is one API credential. Only the SHA-256 digest of the secret is
// kept; requests are matched by digest in constant time.
type Token struct {
	Name   string
	Role   Role
	SHA256 [32]byte
}

// NewToken returns the Token for a secret.
func NewToken(name string, role Role, secret string) Token {
	return Token{Name: name, Role: role, SHA256: sha256.Sum256([]byte(secret))}
}

// TokensFromConfig builds the API's tokens from conveyor.yaml's api.tokens:
// a token value is resolved from the environment with getenv (os.LookupEnv
// when nil), a sha256 entry is taken as the hex digest of the token. Every
// problem is reported, naming the entry.
func TokensFromConfig(cfg *dsl.Config, getenv func(string) (string, bool)) ([]Token, error) {
	var out []Token
	var errs []error
	seen := map[[32]byte]string{}
	names := map[string]int{}
	for i, t := range cfg.API.Tokens {
		where := fmt.Sprintf("api.tokens[%d] (%s)", i+1, t.Name)
		// The audit log and the revisions name the token that made a
		// change: a name must tell one token, and the API, from the rest.
		switch name := strings.TrimSpace(t.Name); {
		case name == "":
			errs = append(errs, fmt.Errorf("%s: name is empty; the audit log shows it", where))
			continue
		case name == "file" || name == "anonymous":
			errs = append(errs, fmt.Errorf("%s: name %q is how the audit log names edits on disk or requests without a token; choose another", where, name))
			continue
		case names[name] > 0:
			errs = append(errs, fmt.Errorf("%s: the same name as api.tokens[%d]; the audit log could not tell them apart", where, names[name]))
			continue
		default:
			names[name] = i + 1
		}
		role, err := ParseRole(t.Role)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		tok := Token{Name: t.Name, Role: role}
		switch {
		case t.Token.Raw != "" && t.SHA256 != "":
			errs = append(errs, fmt.Errorf("%s: set token or sha256, not both", where))
			continue
		case t.Token.Raw != "":
			secret, err := t.Token.Resolve(getenv)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: token: %w", where, err))
				continue
			}
			if secret == "" {
				errs = append(errs, fmt.Errorf("%s: token is empty", where))
				continue
			}
			tok.SHA256 = sha256.Sum256([]byte(secret))
		case t.SHA256 != "":
			b, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
			if err != nil || len(b) != sha256.Size {
				errs = append(errs, fmt.Errorf("%s: sha256: want 64 hex digits (sha256sum of the token)", where))
				continue
			}
			copy(tok.SHA256[:], b)
		default:
			errs = append(errs, fmt.Errorf("%s: set token or sha256", where))
			continue
		}
		if other, dup := seen[tok.SHA256]; dup {
			errs = append(errs, fmt.Errorf("%s: the same token as %s", where, other))
			continue
		}
		seen[tok.SHA256] = t.Name
		out = append(out, tok)
	}
	return out, errors.Join(errs...)
}

const tokenKey = "conveyor.token"

// lookup finds the token whose digest matches secret's. Every token is
// compared, in constant time, whatever matches.
func (s *server) lookup(secret string) *Token {
	sum := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].SHA256[:]) == 1 && found == nil {
			found = &s.tokens[i]
		}
	}
	return found
}

// require lets requests through whose bearer token has at least role min:
// 401 without a token or with an unknown one, 403 with too low a role.
func (s *server) require(min Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get("Authorization")
			scheme, secret, _ := strings.Cut(h, " ")
			secret = strings.TrimSpace(secret)
			if !strings.EqualFold(scheme, "Bearer") || secret == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="conveyor"`)
				return apiErr(http.StatusUnauthorized, "unauthorized", "send a token: Authorization: Bearer <token> (tokens are declared in conveyor.yaml api.tokens)")
			}
			t := s.lookup(secret)
			if t == nil {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="conveyor", error="invalid_token"`)
				return apiErr(http.StatusUnauthorized, "unauthorized", "unknown token")
			}
			if t.Role < min {
				return apiErr(http.StatusForbidden, "forbidden", "token %s has role %s; this needs %s", t.Name, t.Role, min)
			}
			c.Set(tokenKey, t)
			return next(c)
		}
	}
}
