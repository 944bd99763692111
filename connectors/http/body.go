package httpconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/unicode"

	"github.com/conveyor-run/conveyor/connectors"
)

// responseReader is resp's body with its Content-Encoding undone. Go's
// transport decodes gzip only when it asked for it itself; a connection
// whose headers set Accept-Encoding (an API that sends large catalogues
// only compressed) gets the encoded bytes, which are decoded here (see
// connectors.Decompress). Any other encoding is an error naming it.
// decoded says whether the body was decoded, so that the response no
// longer claims its encoding.
func responseReader(resp *http.Response) (r io.Reader, decoded bool, err error) {
	ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if resp.Uncompressed || ce == "" || ce == "identity" {
		return resp.Body, false, nil
	}
	r, err = connectors.Decompress(ce, resp.Body)
	switch {
	case errors.Is(err, connectors.ErrUnsupportedEncoding):
		return nil, false, fmt.Errorf("the response is %q-encoded, which the http connector does not decode: "+
			"ask for gzip or deflate only in the connection's Accept-Encoding header, or remove it", ce)
	case err != nil:
		return nil, false, fmt.Errorf("reading the response: %w", err)
	}
	return r, true, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// toUTF8 is a response body as UTF-8. A byte order mark decides first
// (and is dropped: .NET services put one before their JSON); then the
// charset of the Content-Type, else an XML declaration's encoding (ERPs
// and WMSs answer in ISO-8859-1 or windows-1252). A body that is valid
// UTF-8 stays as it is under a single-byte charset: a server that says
// ISO-8859-1 and sends UTF-8 is commoner than ISO-8859-1 text that
// happens to be valid UTF-8. An unknown charset, or a body that does not
// decode, is kept as it came. Labels are resolved as browsers do
// (WHATWG): ISO-8859-1 and US-ASCII mean windows-1252.
func toUTF8(contentType string, data []byte) []byte {
	if bytes.HasPrefix(data, utf8BOM) {
		return data[len(utf8BOM):]
	}
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		if out, err := unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder().Bytes(data); err == nil {
			return out
		}
		return data
	}
	label := ""
	if strings.Contains(strings.ToLower(contentType), "charset") { // most JSON answers name none
		if _, params, err := mime.ParseMediaType(contentType); err == nil {
			label = params["charset"]
		}
	}
	if label == "" {
		label = xmlEncoding(data)
	}
	if label == "" {
		return data
	}
	enc, err := htmlindex.Get(label)
	if err != nil {
		return data
	}
	name, _ := htmlindex.Name(enc)
	switch {
	case name == "utf-8":
		return data
	case !strings.HasPrefix(name, "utf-16") && utf8.Valid(data):
		return data
	}
	out, err := enc.NewDecoder().Bytes(data)
	if err != nil {
		return data
	}
	return out
}

// xmlEncoding is the encoding an XML declaration at the start of data
// names, or "".
func xmlEncoding(data []byte) string {
	if !bytes.HasPrefix(data, []byte("<?xml")) {
		return ""
	}
	decl, _, ok := bytes.Cut(data[:min(len(data), 256)], []byte("?>"))
	if !ok {
		return ""
	}
	_, rest, ok := bytes.Cut(decl, []byte("encoding"))
	if !ok {
		return ""
	}
	rest = bytes.TrimLeft(rest, " \t\r\n")
	if len(rest) == 0 || rest[0] != '=' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	name, _, ok := bytes.Cut(rest[1:], rest[:1])
	if !ok {
		return ""
	}
	return string(name)
}
