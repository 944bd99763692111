package httpconn

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/conveyor-run/conveyor/connectors"
	"github.com/conveyor-run/conveyor/mappings/jsonv"
)

// A Content-Type among the connection's headers is the type of every
// body, as a call's own Content-Type is: an XML or EDI API declares it
// once, and a string body then goes as is. It used to be JSON-encoded
// (quoted, with its quotes escaped) and sent under the XML type.
func TestConnectionContentTypeSendsTextBody(t *testing.T) {
	srv, s := recorder(t, 200, "", "")
	c := client(t, map[string]any{"base_url": srv.URL, "headers": map[string]any{"content-type": "text/xml; charset=utf-8"}}, 0)
	const doc = `<order id="1"><sku>A-1</sku></order>`
	for _, req := range []connectors.Request{
		{Method: "POST", Path: "/soap", Body: doc},
		{Method: "POST", Path: "/soap", RawJSON: []byte(`"<order id=\"1\"><sku>A-1</sku></order>"`)}, // a deferred body
	} {
		if _, err := c.Call(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if got := s.get(); string(got.body) != doc || got.headers.Get("Content-Type") != "text/xml; charset=utf-8" {
			t.Errorf("sent %q as %q; want the document as is", got.body, got.headers.Get("Content-Type"))
		}
	}
	// A JSON type on the connection (a vendor's +json) keeps JSON bodies.
	srv2, s2 := recorder(t, 200, "", "")
	c2 := client(t, map[string]any{"base_url": srv2.URL, "headers": map[string]any{"Content-Type": "application/vnd.api+json"}}, 0)
	if _, err := c2.Call(context.Background(), connectors.Request{Method: "POST", Path: "/o", Body: "text"}); err != nil {
		t.Fatal(err)
	}
	if got := s2.get(); string(got.body) != `"text"` || got.headers.Get("Content-Type") != "application/vnd.api+json" {
		t.Errorf("sent %q as %q; want a JSON string", got.body, got.headers.Get("Content-Type"))
	}
}

// Response bodies are text in UTF-8 whatever the target sent: a charset
// other than UTF-8 (ERPs and WMSs answer in ISO-8859-1 or windows-1252,
// in the Content-Type or the XML declaration) is decoded, and a byte
// order mark (.NET services put one before their JSON) is dropped, so
// the JSON is still decoded. Before, the text kept bytes that are not
// UTF-8 (each later became U+FFFD, the letter lost) and a JSON body
// behind a BOM stayed a string.
func TestResponseCharsets(t *testing.T) {
	utf16le := func(s string) string {
		b := []byte{0xFF, 0xFE}
		for _, r := range s {
			b = append(b, byte(r), byte(r>>8))
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, ct, body string
		want           any
	}{
		{"latin1 text", "text/plain; charset=ISO-8859-1", "Caf\xe9 M\xfcller", "Café Müller"},
		{"windows-1252 euro", "text/csv; charset=windows-1252", "price;\x8012", "price;€12"},
		{"latin1 json", "application/json; charset=iso-8859-1", "{\"name\":\"Gr\xfcn\"}", map[string]any{"name": "Grün"}},
		{"xml declaration", "application/xml", "<?xml version='1.0' encoding='ISO-8859-1'?><a>Gen\xe8ve</a>", "<?xml version='1.0' encoding='ISO-8859-1'?><a>Genève</a>"},
		{"utf-8 labelled latin1 stays", "text/plain; charset=iso-8859-1", "Café", "Café"},
		{"utf-8 bom json", "application/json; charset=utf-8", "\xef\xbb\xbf{\"status\":\"held\"}", map[string]any{"status": "held"}},
		{"utf-8 bom text", "text/plain", "\xef\xbb\xbfok", "ok"},
		{"utf-16 bom json", "application/json", utf16le(`{"qty":2}`), map[string]any{"qty": 2}},
		{"unknown charset kept", "text/plain; charset=x-nonsense", "ok", "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantBody(t, tc.ct, tc.body, tc.want) })
	}
}

// A connection whose headers ask for gzip (Accept-Encoding: an API that
// sends large catalogues compressed) gets the body decoded: Go's
// transport decodes only what it asked for itself, so the body used to
// arrive as gzip bytes in a string. The 10 MiB bound holds for the
// decoded body, and an encoding the connector cannot decode is an error
// that says so.
func TestCompressedResponseWithAcceptEncoding(t *testing.T) {
	const doc = `{"items":[{"sku":"A-1"}]}`
	encode := func(enc string, data []byte) []byte {
		var b bytes.Buffer
		var w io.WriteCloser
		switch enc {
		case "gzip":
			w = gzip.NewWriter(&b)
		case "deflate":
			w = zlib.NewWriter(&b)
		case "raw deflate":
			w, _ = flate.NewWriter(&b, flate.DefaultCompression)
		default:
			return data
		}
		w.Write(data)
		w.Close()
		return b.Bytes()
	}
	serve := func(enc string, data []byte) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", strings.TrimPrefix(enc, "raw "))
			w.Write(encode(enc, data))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	for _, enc := range []string{"gzip", "deflate", "raw deflate"} {
		srv := serve(enc, []byte(doc))
		c := client(t, map[string]any{"base_url": srv.URL, "headers": map[string]any{"Accept-Encoding": "gzip, deflate"}}, 0)
		resp, err := c.Call(context.Background(), connectors.Request{Path: "/items"})
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if got, _ := jsonv.Marshal(resp.Body); string(got) != doc {
			t.Errorf("%s: body %q, want %s", enc, got, doc)
		}
		if ce := resp.Headers["Content-Encoding"]; ce != "" {
			t.Errorf("%s: the decoded response still says Content-Encoding %q", enc, ce)
		}
	}

	// 20 MiB of zeros is a few KiB of gzip: the decoded size counts.
	bomb := serve("gzip", make([]byte, 20<<20))
	c := client(t, map[string]any{"base_url": bomb.URL, "headers": map[string]any{"Accept-Encoding": "gzip"}}, 0)
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/x"}); err == nil || !strings.Contains(err.Error(), "larger than 10 MiB") {
		t.Errorf("error %v; want the 10 MiB bound", err)
	}

	br := serve("br", []byte("\x0b\x02\x80ok\x03"))
	c = client(t, map[string]any{"base_url": br.URL, "headers": map[string]any{"Accept-Encoding": "br"}}, 0)
	if _, err := c.Call(context.Background(), connectors.Request{Path: "/x"}); err == nil || !strings.Contains(err.Error(), "Accept-Encoding") {
		t.Errorf("error %v; want one naming the encoding and Accept-Encoding", err)
	}
}
