package oracle

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestMaxAbs(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	cases := []struct {
		a, b []float32
		want float64
	}{
		{nil, nil, 0},
		{[]float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{[]float32{1, 2, 3}, []float32{1, 2.5, 2}, 1},
		{[]float32{-1}, []float32{1}, 2},
		{[]float32{1, nan}, []float32{1, 2}, math.Inf(1)},
		{[]float32{1, 2}, []float32{nan, 2}, math.Inf(1)},
		{[]float32{inf}, []float32{inf}, math.Inf(1)},
		{[]float32{1}, []float32{1, 2}, math.Inf(1)},
	}
	for i, c := range cases {
		if got := MaxAbs(c.a, c.b); got != c.want {
			t.Errorf("case %d: MaxAbs = %v, want %v", i, got, c.want)
		}
	}
}

func TestRelL2(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		a, b []float32
		want float64
	}{
		{nil, nil, 0},
		{[]float32{0, 0}, []float32{0, 0}, 0},
		{[]float32{3, 4}, []float32{3, 4}, 0},
		{[]float32{3, 4}, []float32{0, 0}, math.Inf(1)},
		{[]float32{0, 0}, []float32{3, 4}, 1},
		{[]float32{3, 4.5}, []float32{3, 4}, 0.1},
		{[]float32{nan, 4}, []float32{3, 4}, math.Inf(1)},
		{[]float32{3, 4}, []float32{3, nan}, math.Inf(1)},
		{[]float32{1}, []float32{1, 1}, math.Inf(1)},
		{[]float32{float32(math.Inf(1))}, []float32{1}, math.Inf(1)},
	}
	for i, c := range cases {
		if got := RelL2(c.a, c.b); math.Abs(got-c.want) > 1e-12 && got != c.want {
			t.Errorf("case %d: RelL2 = %v, want %v", i, got, c.want)
		}
	}
}

// recorder captures what the assertion helpers report.
type recorder struct {
	testing.TB
	errors, logs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func TestAssertHelpers(t *testing.T) {
	nan := float32(math.NaN())
	want := []float32{1, 2, 3, 4}
	cases := []struct {
		name   string
		check  func(tb testing.TB) bool
		pass   bool
		substr string
	}{
		{"maxabs pass", func(tb testing.TB) bool { return AssertMaxAbs(tb, "x", []float32{1, 2, 3, 4.00001}, want, 1e-4) }, true, "max abs error"},
		{"maxabs fail", func(tb testing.TB) bool { return AssertMaxAbs(tb, "x", []float32{1, 2, 3.5, 4}, want, 1e-4) }, false, "x: max abs error 0.5 exceeds 0.0001 (worst at index 2 of 4: got 3.5, want 3)"},
		{"maxabs nan", func(tb testing.TB) bool { return AssertMaxAbs(tb, "x", []float32{1, nan, 3, 4}, want, 1e9) }, false, "index 1"},
		{"maxabs length", func(tb testing.TB) bool { return AssertMaxAbs(tb, "x", []float32{1}, want, 1) }, false, "x: length 1, want 4"},
		{"rel pass", func(tb testing.TB) bool { return AssertRelL2(tb, "y", []float32{1, 2, 3, 4.0001}, want, 1e-4) }, true, "relative L2 error"},
		{"rel fail", func(tb testing.TB) bool { return AssertRelL2(tb, "y", []float32{1, 2, 3, 5}, want, 1e-4) }, false, "y: relative L2 error 0.183 exceeds 0.0001"},
		{"rel nan", func(tb testing.TB) bool { return AssertRelL2(tb, "y", []float32{1, 2, 3, nan}, want, math.MaxFloat64) }, false, "relative L2 error +Inf"},
		{"rel length", func(tb testing.TB) bool { return AssertRelL2(tb, "y", want, []float32{1}, 1) }, false, "y: length 4, want 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			if got := c.check(r); got != c.pass {
				t.Fatalf("returned %v, want %v (errors %q)", got, c.pass, r.errors)
			}
			if c.pass != (len(r.errors) == 0) {
				t.Fatalf("errors %q", r.errors)
			}
			all := strings.Join(append(r.errors, r.logs...), "\n")
			if !strings.Contains(all, c.substr) {
				t.Fatalf("report %q does not contain %q", all, c.substr)
			}
		})
	}
}
