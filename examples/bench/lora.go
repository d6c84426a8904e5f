package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights/lora"
)

var (
	loraRank = flag.Int("lora-rank", 0, "with a preset: also time a random LoRA of this rank on every attention projection, proj_in/out, ff.net.2 and ResNet conv1/conv2, merged and unfused, alternating with the base")
)

// loraTargets are the layers the oracle's adapter (and most SD LoRAs) update.
var loraTargets = []string{".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out", ".ff.net.2", ".conv1", ".conv2"}

// randomAdapter makes an adapter of rank r for every targeted UNet layer the random source
// has made (so after the base graph was built).
func randomAdapter(src *nn.RandomSource, r int, seed uint64) *lora.Adapter {
	rng := rand.New(rand.NewPCG(seed, 7))
	randn := func(n int, s float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(rng.NormFloat64() * s)
		}
		return out
	}
	a := &lora.Adapter{Path: fmt.Sprintf("random rank %d", r), Format: lora.FormatKohya}
	for _, name := range src.Names() {
		mod, ok := strings.CutSuffix(name, ".weight")
		if !ok {
			continue
		}
		hit := false
		for _, t := range loraTargets {
			hit = hit || strings.HasSuffix(mod, t)
		}
		shape := src.Shape(name)
		if !hit || len(shape) < 2 {
			continue
		}
		t := &lora.Target{Component: lora.UNet, Module: mod, Key: mod, Rank: r, Alpha: float64(r), Scale: 1, KH: 1, KW: 1, Out: shape[0]}
		t.In = 1
		for _, d := range shape[1:] {
			t.In *= d
		}
		if len(shape) == 4 {
			t.Conv, t.KH, t.KW = true, shape[2], shape[3]
		}
		t.A, t.B = randn(r*t.In, 0.01), randn(t.Out*r, 0.01)
		a.Targets = append(a.Targets, t)
	}
	return a
}

// benchLoRA times UNet requests without an adapter, with the adapter merged and with it
// unfused, in rotation so that load from other processes falls on all three alike.
func benchLoRA(ctx context.Context, parts sdxs.Parts, src *nn.RandomSource, req sdxs.Request, runs int) error {
	// The pipelines share the models (and so one graph cache, the last one given to them):
	// unbounded, so that no variant's graphs are dropped and rebuilt between the timed runs.
	unbounded := sdxs.WithCacheBudget(0)
	merged, err := sdxs.New(parts, unbounded)
	if err != nil {
		return err
	}
	unfused, err := sdxs.New(parts, unbounded, sdxs.WithLoRAUnfused())
	if err != nil {
		return err
	}
	a := randomAdapter(src, *loraRank, 1)
	b := randomAdapter(src, *loraRank, 2)
	var params int64
	for _, t := range a.Targets {
		params += int64(t.Out) * int64(t.In)
	}
	fmt.Printf("\nLoRA rank %d on %d UNet layers (%.0f M weights targeted); load average %s\n", *loraRank, len(a.Targets), float64(params)/1e6, loadavg())

	// unetTime returns the UNet stage's wall time, and the CPU time of the whole request
	// (less sensitive to other processes on the machine than wall time).
	cpu := map[string][]float64{}
	unetTime := func(p *sdxs.Pipeline, loras []sdxs.LoRA, tag string) (float64, error) {
		r := req
		r.LoRAs = loras
		c0 := cpuSeconds()
		res, err := p.Generate(ctx, r)
		if err != nil {
			return 0, err
		}
		if tag != "" {
			cpu[tag] = append(cpu[tag], cpuSeconds()-c0)
		}
		return res.Timings[sdxs.StageUNet].Seconds(), nil
	}
	// First requests: the merge (and Winograd transform of merged weights) or the branches, and
	// building the graph of the set.
	rss0 := currentRSS()
	for _, c := range []struct {
		name string
		p    *sdxs.Pipeline
	}{{"merged", merged}, {"unfused", unfused}} {
		before := currentRSS()
		first, err := unetTime(c.p, []sdxs.LoRA{{Adapter: a, Scale: 1}}, "first "+c.name)
		if err != nil {
			return err
		}
		fmt.Printf("%-8s first request with a new set: UNet stage %.2f s, request CPU %.2f s; RSS +%.0f MiB\n", c.name, first, cpu["first "+c.name][0], float64(currentRSS()-before)/(1<<20))
	}
	fmt.Printf("RSS after both sets: +%.0f MiB over the base pipeline\n", float64(currentRSS()-rss0)/(1<<20))

	times := map[string][]float64{}
	for i := 0; i < runs; i++ {
		for _, c := range []struct {
			name  string
			p     *sdxs.Pipeline
			loras []sdxs.LoRA
		}{
			{"base", merged, nil},
			{"merged", merged, []sdxs.LoRA{{Adapter: a, Scale: 1}}},
			{"unfused", unfused, []sdxs.LoRA{{Adapter: a, Scale: 1}}},
		} {
			d, err := unetTime(c.p, c.loras, c.name)
			if err != nil {
				return err
			}
			times[c.name] = append(times[c.name], d)
		}
	}
	fmt.Printf("UNet stage, median of %d rotations: base %.3f s, merged %.3f s, unfused %.3f s (load average %s)\n",
		runs, median(times["base"]), median(times["merged"]), median(times["unfused"]), loadavg())
	fmt.Printf("  all: base %.2f\n       merged %.2f\n       unfused %.2f\n", times["base"], times["merged"], times["unfused"])
	fmt.Printf("request CPU time, median: base %.3f s, merged %.3f s, unfused %.3f s\n", median(cpu["base"]), median(cpu["merged"]), median(cpu["unfused"]))
	fmt.Printf("  all: base %.2f\n       merged %.2f\n       unfused %.2f\n", cpu["base"], cpu["merged"], cpu["unfused"])

	// Switching sets on every request (a cache of one set, two adapters alternating).
	sw := map[string][]float64{}
	mergedOne, err := sdxs.New(parts, unbounded, sdxs.WithLoRACache(1))
	if err != nil {
		return err
	}
	unfusedOne, err := sdxs.New(parts, unbounded, sdxs.WithLoRACache(1), sdxs.WithLoRAUnfused())
	if err != nil {
		return err
	}
	for i := 0; i < runs; i++ {
		ad := a
		if i%2 == 1 {
			ad = b
		}
		for _, c := range []struct {
			name string
			p    *sdxs.Pipeline
		}{{"merged", mergedOne}, {"unfused", unfusedOne}} {
			d, err := unetTime(c.p, []sdxs.LoRA{{Adapter: ad, Scale: 1}}, "switch "+c.name)
			if err != nil {
				return err
			}
			sw[c.name] = append(sw[c.name], d)
		}
	}
	fmt.Printf("UNet stage when every request brings another set, median of %d: merged %.3f s, unfused %.3f s (load average %s)\n",
		runs, median(sw["merged"]), median(sw["unfused"]), loadavg())
	fmt.Printf("  all: merged %.2f\n       unfused %.2f\n", sw["merged"], sw["unfused"])
	fmt.Printf("request CPU time when switching, median: merged %.3f s, unfused %.3f s\n", median(cpu["switch merged"]), median(cpu["switch unfused"]))
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// currentRSS returns the process's resident set size (VmRSS), or 0 where /proc is missing.
func currentRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// cpuSeconds returns the CPU time (user + system) the process has used, from /proc/self/stat
// (in clock ticks of 10 ms), or 0 where /proc is missing.
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name (which is in parentheses and may hold spaces).
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
