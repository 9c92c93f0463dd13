package closure

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestWriteRegistration(t *testing.T) {
	c := &Closure{StoreDir: DefaultStoreDir, Paths: []Path{
		{Path: pA, NarHash: emptyBase32, NarSize: 120, References: []string{pA, pB}},
		{Path: pB, NarHash: emptyBase32, NarSize: 8, References: []string{}},
	}}
	// The format of nixpkgs' closureInfo: path, hash, size, empty deriver,
	// count, references; the last line ends with a newline.
	want := lines(
		pA, emptyBase32, "120", "", "2", pA, pB,
		pB, emptyBase32, "8", "", "0",
	)
	var b bytes.Buffer
	if err := c.WriteRegistration(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteRegistrationErrors(t *testing.T) {
	tests := []struct {
		name string
		c    *Closure
		want string
	}{
		{"hash missing", &Closure{Paths: []Path{{Path: pA, NarHash: emptyBase32, NarSize: 1}, {Path: pB}}},
			pB + ": NAR hash or size unknown: hash the closure first"},
		{"size missing", &Closure{Paths: []Path{{Path: pA, NarHash: emptyBase32}}},
			pA + ": NAR hash or size unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			err := tt.c.WriteRegistration(&b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %q before failing", b.String())
			}
		})
	}
	c := &Closure{Paths: []Path{{Path: pA, NarHash: emptyBase32, NarSize: 1}}}
	if err := c.WriteRegistration(failingWriter{}); err == nil || err.Error() != "writing registration: disk full" {
		t.Errorf("error %v from a failing writer", err)
	}
}
