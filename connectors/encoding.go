package connectors

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrUnsupportedEncoding is a Content-Encoding Decompress cannot undo.
var ErrUnsupportedEncoding = errors.New("unsupported content encoding")

// Decompress undoes the HTTP Content-Encoding encoding of r: gzip
// (x-gzip) and deflate (zlib as RFC 9110 has it, or raw deflate as some
// servers send it); "" and identity are r as it is. Any other encoding is
// ErrUnsupportedEncoding. An empty r decodes to nothing (a 204 that still
// names its encoding). The caller bounds what it reads: a few kilobytes
// can decompress to gigabytes.
func Decompress(encoding string, r io.Reader) (io.Reader, error) {
	ce := strings.ToLower(strings.TrimSpace(encoding))
	switch ce {
	case "", "identity":
		return r, nil
	case "gzip", "x-gzip", "deflate":
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedEncoding, encoding)
	}
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if len(head) == 0 && errors.Is(err, io.EOF) {
		return br, nil
	}
	var zr io.Reader
	switch {
	case ce != "deflate":
		zr, err = gzip.NewReader(br)
	case len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0:
		zr, err = zlib.NewReader(br)
	default:
		zr = flate.NewReader(br)
	}
	if err != nil {
		return nil, fmt.Errorf("not valid %s: %w", ce, err)
	}
	return zr, nil
}
