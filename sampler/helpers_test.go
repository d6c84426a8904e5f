package sampler

import "math"

// maxRelDiff returns max |a−b| / max(|b|, floor); NaN or different lengths give +Inf.
func maxRelDiff(a, b []float32, floor float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i])-float64(b[i])) / max(math.Abs(float64(b[i])), floor)
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}

// countBitDiffs counts the positions where a and b are not the same float32 bit pattern.
func countBitDiffs(a, b []float32) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			n++
		}
	}
	return n
}
