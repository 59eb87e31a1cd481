package envoy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
)

// TestDenyCache checks the deny cache itself: one response per deny, a
// bound per (route, code) slot, and a cache per policy.
func TestDenyCache(t *testing.T) {
	pol := decisiontest.TranslatorPolicy(t)
	other := decisiontest.TranslatorPolicy(t)
	write := decisiontest.Route(t, pol, "items-write")
	r := NewResponder(ResponderOptions{})

	d := decision.Decision{Code: decision.InsufficientScope, Detail: "lacks", Route: write, Policy: pol}
	first := r.Response(&d)
	if again := r.Response(&d); again != first {
		t.Error("same deny was built twice, want the cached response")
	}
	d2 := d
	d2.Detail = "another message"
	if got := r.Response(&d2); got == first || got.GetDeniedResponse().GetBody() == first.GetDeniedResponse().GetBody() {
		t.Error("a deny with another message reused the cached response")
	}
	// Many distinct messages: past the per-slot bound each is still right.
	for i := range 3 * maxDetailsPerSlot {
		di := d
		di.Detail = fmt.Sprintf("message %d", i)
		if body := r.Response(&di).GetDeniedResponse().GetBody(); !strings.Contains(body, di.Detail) {
			t.Fatalf("message %d: body %s", i, body)
		}
	}
	// Another policy gets its own cache.
	od := decision.Decision{Code: decision.InsufficientScope, Detail: "lacks", Route: decisiontest.Route(t, other, "items-write"), Policy: other}
	if got := r.Response(&od); got == first {
		t.Error("a deny under another policy reused the first policy's response")
	}
	if r.cache.Load().pol != other {
		t.Error("the cache was not switched to the policy in use")
	}
}
