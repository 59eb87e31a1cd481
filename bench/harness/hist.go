package harness

import (
	"math"
	"math/bits"
	"time"
)

// histSubBits sets the histogram's precision: each power of two is split
// into 2^histSubBits buckets, so a recorded value is known within
// 1/2^histSubBits (under 0.8%).
const histSubBits = 7

// histBuckets covers every int64.
const histBuckets = (64 - histSubBits + 1) << histSubBits

// Histogram records latencies in log-linear buckets, as HdrHistogram does:
// exact below 128 ns, then 128 buckets per power of two. Recording is a
// few instructions and allocates nothing, so each load worker keeps its
// own and they are merged after the run. The zero value is not usable:
// use NewHistogram.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histBuckets), min: math.MaxInt64}
}

// bucketOf returns the bucket of v >= 0.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < 1<<histSubBits {
		return int(u)
	}
	e := bits.Len64(u) - histSubBits - 1
	return e<<histSubBits + int(u>>uint(e))
}

// bucketHigh returns the largest value of bucket i.
func bucketHigh(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	e := i>>histSubBits - 1
	top := uint64(i - e<<histSubBits)
	hi := (top+1)<<uint(e) - 1
	if hi > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(hi)
}

// Record adds one latency. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Mean returns the mean, 0 for an empty histogram.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest value recorded, 0 for an empty histogram.
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Quantile returns the value at quantile q (0.99 for p99): the upper bound
// of the bucket holding the ceil(q*n)-th smallest value, capped at the
// largest value recorded. It is never below the true quantile, and above
// it by less than the bucket width.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}
