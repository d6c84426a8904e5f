package oracle

import (
	"math"
	"testing"
)

// MaxAbs returns the largest |a[i] - b[i]|. A NaN in either slice, or slices of different
// lengths, give +Inf, so the result never passes a bound.
func MaxAbs(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		if d > m {
			m = d
		}
	}
	return m
}

// RelL2 returns the relative L2 error ‖a − b‖ / ‖b‖ (b is the reference), accumulated in
// float64. A NaN anywhere, different lengths, or a nonzero difference from an all-zero
// reference give +Inf; two all-zero slices give 0.
func RelL2(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.Inf(1)
		}
		num += (x - y) * (x - y)
		den += y * y
	}
	switch {
	case math.IsNaN(num) || math.IsInf(num, 0) || math.IsInf(den, 0):
		return math.Inf(1)
	case num == 0:
		return 0
	case den == 0:
		return math.Inf(1)
	}
	return math.Sqrt(num) / math.Sqrt(den)
}

// worst returns the index of the largest absolute difference (the first NaN if any).
func worst(got, want []float32) int {
	idx, m := 0, -1.0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return i
		}
		if d > m {
			idx, m = i, d
		}
	}
	return idx
}

// AssertMaxAbs checks that got and want have the same length and that their max abs error is
// at most bound, reporting the error, the bound and the worst element otherwise. It returns
// whether the check passed, and logs the measured error either way.
func AssertMaxAbs(tb testing.TB, name string, got, want []float32, bound float64) bool {
	tb.Helper()
	if len(got) != len(want) {
		tb.Errorf("%s: length %d, want %d", name, len(got), len(want))
		return false
	}
	e := MaxAbs(got, want)
	if !(e <= bound) {
		i := worst(got, want)
		tb.Errorf("%s: max abs error %.3g exceeds %.3g (worst at index %d of %d: got %v, want %v)", name, e, bound, i, len(got), got[i], want[i])
		return false
	}
	tb.Logf("%s: max abs error %.3g (bound %.3g)", name, e, bound)
	return true
}

// AssertRelL2 checks that got and want have the same length and that the relative L2 error
// ‖got − want‖/‖want‖ is at most bound, reporting the error, the bound, the max abs error and
// the worst element otherwise. It returns whether the check passed.
func AssertRelL2(tb testing.TB, name string, got, want []float32, bound float64) bool {
	tb.Helper()
	if len(got) != len(want) {
		tb.Errorf("%s: length %d, want %d", name, len(got), len(want))
		return false
	}
	e := RelL2(got, want)
	if !(e <= bound) {
		i := worst(got, want)
		tb.Errorf("%s: relative L2 error %.3g exceeds %.3g (max abs error %.3g; worst at index %d of %d: got %v, want %v)", name, e, bound, MaxAbs(got, want), i, len(got), got[i], want[i])
		return false
	}
	tb.Logf("%s: relative L2 error %.3g (bound %.3g)", name, e, bound)
	return true
}
