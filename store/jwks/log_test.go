package jwks

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestURLFailureLogNamesTheURLOnce: the warning of a failed fetch carries
// the URL in its location attribute; its error does not repeat it.
func TestURLFailureLogNamesTheURLOnce(t *testing.T) {
	s := newJWKSServer(t, jwksOf(t, key(t, "k1")))
	var buf syncBuffer
	u := newTestURL(t, s, URLOptions{RefreshInterval: 30 * time.Millisecond, MinRefreshInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s.serve(http.StatusServiceUnavailable, []byte("down"))
	eventually(t, "a logged failure", func() bool { return u.Failures() >= 1 && strings.Contains(buf.String(), "error=") })
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(line, s.url()); n != 1 {
			t.Errorf("log line names the URL %d times, want once: %s", n, line)
		}
	}
}
