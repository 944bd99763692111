package editorapi

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/conveyor-run/conveyor/dsl"
	"github.com/conveyor-run/conveyor/flows/flowtest"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
	"github.com/conveyor-run/conveyor/runtime"
)

// flowView is a flow as the API shows it; source and etag only for one.
type flowView struct {
	ID          string             `json:"id"`
	File        string             `json:"file"`
	Description string             `json:"description"`
	Trigger     string             `json:"trigger"`
	Revision    int                `json:"revision"`
	Status      runtime.FlowStatus `json:"status"`
	Diagnostics dsl.Diagnostics    `json:"diagnostics"`
	Stats       runtime.FlowStats  `json:"stats"`
	Source      *string            `json:"source,omitempty"`
	ETag        string             `json:"etag,omitempty"`
}

func (s *server) view(ctx context.Context, fi runtime.FlowInfo) flowView {
	return flowView{ID: fi.ID, File: s.rel(fi.File), Description: fi.Description, Trigger: fi.Trigger, Revision: fi.Revision,
		Status: fi.Status, Diagnostics: s.relDiagnostics(fi.Diagnostics), Stats: s.e.Stats(ctx, fi.ID)}
}

// rel shows a workspace file relative to the workspace, as analysts know it.
func (s *server) rel(path string) string {
	if r, err := filepath.Rel(s.e.WorkspaceDir(), path); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return filepath.ToSlash(path)
}

func quoteETag(tag string) string { return `"` + tag + `"` }

// ifMatch reads an If-Match header: "" when there is none, "*", or the
// one entity tag it names. Anything else is refused rather than read as
// "no condition": an empty tag ("", W/"") used to skip the check and
// overwrite someone else's edit.
func ifMatch(c echo.Context) (string, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return h, nil
	}
	tag := strings.TrimPrefix(h, "W/")
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' || strings.ContainsAny(tag[1:len(tag)-1], `",`) {
		return "", apiErr(http.StatusBadRequest, "bad_request", "If-Match: send the one ETag of the version you edited, in quotes, or *")
	}
	return tag[1 : len(tag)-1], nil
}

func (s *server) listFlows(c echo.Context) error {
	infos := s.e.Flows()
	out := make([]flowView, len(infos))
	for i, fi := range infos {
		out[i] = s.view(c.Request().Context(), fi)
	}
	return c.JSON(http.StatusOK, map[string]any{"flows": out})
}

// writeFlow answers with the flow, its source and its ETag.
func (s *server) writeFlow(c echo.Context, status int, id string) error {
	fi, ok := s.e.Flow(id)
	if !ok {
		return apiErr(http.StatusNotFound, "not_found", "flow %s does not exist", id)
	}
	src, etag, err := s.e.FlowSource(id)
	if err != nil {
		return err
	}
	v := s.view(c.Request().Context(), fi)
	text := string(src)
	v.Source, v.ETag = &text, etag
	c.Response().Header().Set("ETag", quoteETag(etag))
	return c.JSON(status, v)
}

// written answers a flow write: status with the flow once its new
// revision is live; 202 when the revision is written but was not live in
// time (a slow reload: the flow's status shows when it is, and its ETag
// is already the new one); the error otherwise.
func (s *server) written(c echo.Context, status int, id string, err error) error {
	switch {
	case errors.Is(err, runtime.ErrNotLive):
		if _, ok := s.e.Flow(id); !ok { // created, not loaded yet
			_, etag, serr := s.e.FlowSource(id)
			if serr == nil {
				c.Response().Header().Set("ETag", quoteETag(etag))
			}
			return c.JSON(http.StatusAccepted, map[string]any{"id": id, "status": "pending", "message": err.Error()})
		}
		status = http.StatusAccepted
	case err != nil:
		return err
	}
	return s.writeFlow(c, status, id)
}

func (s *server) getFlow(c echo.Context) error { return s.writeFlow(c, http.StatusOK, c.Param("id")) }

// writeCtx bounds a flow write by the configured timeout.
func (s *server) writeCtx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), s.writeTimeout)
}

func (s *server) createFlow(c echo.Context) error {
	var req struct {
		ID     string `json:"id"`
		Source string `json:"source"`
	}
	if err := s.decodeJSON(c, &req, false); err != nil {
		return err
	}
	if req.ID == "" || req.Source == "" {
		return apiErr(http.StatusBadRequest, "bad_request", "id and source are required")
	}
	ctx, cancel := s.writeCtx(c)
	defer cancel()
	_, err := s.e.CreateFlow(ctx, req.ID, []byte(req.Source), who(c))
	if err == nil || errors.Is(err, runtime.ErrNotLive) {
		c.Response().Header().Set("Location", Prefix+"/flows/"+req.ID)
	}
	return s.written(c, http.StatusCreated, req.ID, err)
}

func isYAML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return true
	}
	return false
}

func (s *server) putFlow(c echo.Context) error {
	id := c.Param("id")
	if !isYAML(c.Request().Header.Get("Content-Type")) {
		return apiErr(http.StatusUnsupportedMediaType, "unsupported_media_type", "send the flow file as Content-Type: application/yaml")
	}
	tag, err := ifMatch(c)
	if err != nil {
		return err
	}
	if tag == "" {
		return apiErr(http.StatusPreconditionRequired, "precondition_required",
			"send If-Match with the ETag of the version you edited (GET /api/v1/flows/%s), or * to overwrite", id)
	}
	src, err := s.readBody(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.writeCtx(c)
	defer cancel()
	_, err = s.e.PutFlow(ctx, id, src, who(c), tag)
	return s.written(c, http.StatusOK, id, err)
}

func (s *server) deleteFlow(c echo.Context) error {
	tag, err := ifMatch(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.writeCtx(c)
	defer cancel()
	id := c.Param("id")
	err = s.e.DeleteFlow(ctx, id, who(c), tag)
	switch {
	case errors.Is(err, runtime.ErrNotLive):
		// The file is gone and the flow stops by itself: as for a write
		// not live in time, 202 rather than a 500 for a change made.
		return c.JSON(http.StatusAccepted, map[string]any{"id": id, "status": "stopping", "message": err.Error()})
	case err != nil:
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) enableFlow(c echo.Context) error  { return s.setEnabled(c, true) }
func (s *server) disableFlow(c echo.Context) error { return s.setEnabled(c, false) }

func (s *server) setEnabled(c echo.Context, on bool) error {
	fi, err := s.e.SetEnabled(c.Request().Context(), c.Param("id"), on, who(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.view(c.Request().Context(), fi))
}

// mockJSON is one mocked response; a connection takes one or a list.
type mockJSON struct {
	Status  int               `json:"status"`
	Body    json.RawMessage   `json:"body"`
	Headers map[string]string `json:"headers"`
	Error   string            `json:"error"`
}

// payload decodes JSON as flows see it: numbers exact (jsonv).
func payload(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	return jsonv.Decode(raw)
}

func (s *server) testFlow(c echo.Context) error {
	var req struct {
		Input struct {
			Body    json.RawMessage   `json:"body"`
			Headers map[string]string `json:"headers"`
			Query   map[string]string `json:"query"`
			Params  map[string]string `json:"params"`
		} `json:"input"`
		Mocks  map[string]json.RawMessage `json:"mocks"`
		Source *string                    `json:"source"`
	}
	if err := s.decodeJSON(c, &req, false); err != nil {
		return err
	}
	body, err := payload(req.Input.Body)
	if err != nil {
		return apiErr(http.StatusBadRequest, "invalid_json", "input.body: %v", err)
	}
	in := flowtest.Input{Body: body, Headers: orEmpty(req.Input.Headers), Query: orEmpty(req.Input.Query), Params: orEmpty(req.Input.Params)}
	mocks := flowtest.Mocks{}
	for conn, raw := range req.Mocks {
		var list []mockJSON
		if t := strings.TrimSpace(string(raw)); strings.HasPrefix(t, "[") {
			err = strictJSON(raw, &list)
		} else {
			list = make([]mockJSON, 1)
			err = strictJSON(raw, &list[0])
		}
		if err != nil {
			return apiErr(http.StatusBadRequest, "invalid_json", "mocks.%s: %v", conn, err)
		}
		for i, m := range list {
			v, err := payload(m.Body)
			if err != nil {
				return apiErr(http.StatusBadRequest, "invalid_json", "mocks.%s[%d].body: %v", conn, i, err)
			}
			mocks[conn] = append(mocks[conn], dsl.MockResponse{Status: m.Status, Headers: m.Headers, Error: m.Error, Body: dsl.Value{V: v, Set: m.Body != nil}})
		}
	}
	var src []byte
	if req.Source != nil {
		src = []byte(*req.Source)
	}
	rep, ds, err := s.e.TestFlow(c.Request().Context(), c.Param("id"), src, in, mocks)
	if err != nil {
		return err
	}
	if len(ds) > 0 {
		return &runtime.DiagnosticsError{Diagnostics: ds}
	}
	return c.JSON(http.StatusOK, rep)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *server) validate(c echo.Context) error {
	src, err := s.readBody(c)
	if err != nil {
		return err
	}
	ds := s.e.ValidateSource(c.QueryParam("id"), src)
	if ds == nil {
		ds = dsl.Diagnostics{}
	}
	return c.JSON(http.StatusOK, map[string]any{"valid": len(ds) == 0, "diagnostics": ds})
}

// revisionInfo is a revision without its source, for lists.
type revisionInfo struct {
	Number int    `json:"revision"`
	Hash   string `json:"hash"`
	Author string `json:"author"`
	At     string `json:"at"`
}

func (s *server) listRevisions(c echo.Context) error {
	id := c.Param("id")
	revs, err := s.e.Revisions(c.Request().Context(), id)
	if err != nil {
		return err
	}
	out := make([]revisionInfo, len(revs))
	for i, r := range revs {
		out[i] = revisionInfo{r.Number, r.Hash, r.Author, r.At.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	}
	return c.JSON(http.StatusOK, map[string]any{"flow": id, "revisions": out})
}

func intParam(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, apiErr(http.StatusBadRequest, "bad_request", "%s: %q is not a revision number", name, v)
	}
	return n, nil
}

func (s *server) getRevision(c echo.Context) error {
	n, err := intParam("rev", c.Param("rev"))
	if err != nil {
		return err
	}
	r, err := s.e.Revision(c.Request().Context(), c.Param("id"), n)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}

// diff compares two revisions: to defaults to the newest, from to the one
// before to.
func (s *server) diff(c echo.Context) error {
	id, ctx := c.Param("id"), c.Request().Context()
	revs, err := s.e.Revisions(ctx, id)
	if err != nil {
		return err
	}
	if len(revs) == 0 {
		return apiErr(http.StatusNotFound, "not_found", "flow %s has no revisions", id)
	}
	to, from := revs[len(revs)-1].Number, 0
	if v := c.QueryParam("to"); v != "" {
		if to, err = intParam("to", v); err != nil {
			return err
		}
	}
	if v := c.QueryParam("from"); v != "" {
		if from, err = intParam("from", v); err != nil {
			return err
		}
	} else {
		for _, r := range revs {
			if r.Number < to {
				from = r.Number
			}
		}
		if from == 0 {
			from = to
		}
	}
	d, err := s.e.DiffRevisions(ctx, id, from, to)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"flow": id, "from": from, "to": to, "diff": d})
}

func (s *server) rollback(c echo.Context) error {
	var req struct {
		Revision int `json:"revision"`
	}
	if err := s.decodeJSON(c, &req, false); err != nil {
		return err
	}
	if req.Revision < 1 {
		return apiErr(http.StatusBadRequest, "bad_request", "revision: a revision number is required")
	}
	id := c.Param("id")
	ctx, cancel := s.writeCtx(c)
	defer cancel()
	_, err := s.e.Rollback(ctx, id, req.Revision, who(c))
	return s.written(c, http.StatusOK, id, err)
}
