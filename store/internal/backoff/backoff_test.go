package backoff

import (
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for failures := 1; failures <= 12; failures++ {
		want := min(p.Min<<(failures-1), p.Max)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(failures)
			if d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", failures, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d) took only %d values in 200 draws: no jitter", failures, len(seen))
		}
	}
}

func TestDelayEdges(t *testing.T) {
	if d := (Policy{}).Delay(1); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("zero policy: %v, want the 1s default with jitter", d)
	}
	if d := (Policy{Min: time.Second, Max: time.Millisecond}).Delay(5); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("Max below Min: %v, want Min with jitter", d)
	}
	if d := (Policy{Min: time.Second, Max: time.Hour}).Delay(1000); d > time.Hour || d < 30*time.Minute {
		t.Errorf("many failures: %v, want capped at Max", d)
	}
}

func TestJitter(t *testing.T) {
	base := 30 * time.Second
	lo, hi := base, base
	for range 500 {
		d := Jitter(base, 0.1)
		if d < 27*time.Second || d > 33*time.Second {
			t.Fatalf("Jitter = %v, want within 10%% of %v", d, base)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < 3*time.Second {
		t.Errorf("500 draws spread over %v only", hi-lo)
	}
	if Jitter(base, 0) != base || Jitter(0, 0.5) != 0 {
		t.Error("no jitter asked for, but the duration moved")
	}
}
