// Command server serves pictures over HTTP: an OpenAI-compatible POST /v1/images/generations, a
// live web page at /, /healthz and Prometheus /metrics.
//
//	go run ./examples/server -model sdxs-dreamshaper -addr 127.0.0.1:8080
//
// Requests wait in a bounded queue (429 with Retry-After when it is full) for one of a bounded
// number of workers; each has a deadline, and a client that goes away cancels its work. SIGTERM
// (or SIGINT) stops accepting connections, finishes the requests in flight, and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/examples/server/internal/imgserver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	model, controlnet, addr, logFormat           string
	variant, vae                                 string
	workers, queue, maxSide, maxPrompt, maxSteps int
	warmSize                                     int
	maxBody, cacheBudget                         int64
	timeout, grace                               time.Duration
	loras                                        []loraSpec
	precision                                    sdxs.Precision
}

// loraSpec is one -lora flag: an adapter and its scale.
type loraSpec struct {
	path  string
	scale float64
}

// parseLoRA reads PATH[:SCALE] (SCALE defaults to 1).
func parseLoRA(v string) (loraSpec, error) {
	spec := loraSpec{path: v, scale: 1}
	if i := strings.LastIndex(v, ":"); i > 0 {
		if f, err := strconv.ParseFloat(v[i+1:], 64); err == nil {
			spec = loraSpec{path: v[:i], scale: f}
		}
	}
	switch {
	case spec.path == "":
		return spec, fmt.Errorf("-lora %q: no adapter", v)
	case math.IsNaN(spec.scale) || math.IsInf(spec.scale, 0):
		return spec, fmt.Errorf("-lora %q: the scale must be a number", v)
	case spec.scale == 0:
		return spec, fmt.Errorf("-lora %q: a scale of 0 turns the adapter off; leave it out", v)
	}
	return spec, nil
}

// parseFlags parses the command line (without the program name).
func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&o.model, "model", "", "diffusers model folder or Hugging Face repository id (required)")
	fs.StringVar(&o.controlnet, "controlnet", "", "ControlNet folder or repository id: enables control images and the sketch canvas")
	fs.Func("lora", "LoRA adapter `PATH[:SCALE]`: a PEFT folder, a kohya / diffusers .safetensors file or a repository id, applied to every request with SCALE (default 1); repeatable", func(v string) error {
		spec, err := parseLoRA(v)
		if err == nil {
			o.loras = append(o.loras, spec)
		}
		return err
	})
	fs.StringVar(&o.variant, "variant", "", "weights variant to fetch from the hub (fp16)")
	fs.StringVar(&o.vae, "vae", "tiny", "decoder: tiny (TAESD, vae/) or large (the KL VAE, vae_large/)")
	fs.Int64Var(&o.cacheBudget, "cache-budget", 0, "bytes of compiled graphs kept across picture sizes (0: the library's default, 1 GiB)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (port 0: any free port, logged)")
	fs.IntVar(&o.workers, "workers", 1, "pictures made at once (one already uses every core)")
	fs.IntVar(&o.queue, "queue", 8, "requests that may wait for a worker; more get 429")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of one request, queueing included")
	fs.Int64Var(&o.maxBody, "max-body", 8<<20, "largest request body in bytes")
	fs.IntVar(&o.maxSide, "max-side", 1024, "largest width or height")
	fs.IntVar(&o.maxSteps, "max-steps", 50, "most steps of an image to image request (/v1/images/edits)")
	fs.IntVar(&o.maxPrompt, "max-prompt", 1000, "longest prompt in characters")
	fs.IntVar(&o.warmSize, "warm-size", 0, "side of the warm-up picture (default: the model's size)")
	fs.DurationVar(&o.grace, "shutdown-timeout", 5*time.Minute, "how long SIGTERM waits for requests in flight")
	fs.StringVar(&o.logFormat, "log", "json", "log format: json or text")
	fs.Func("precision", `UNet and text encoder arithmetic: "fp32" (default) or "bf16" (bfloat16 weights and products, float32 accumulation)`, func(v string) error {
		var err error
		o.precision, err = sdxs.ParsePrecision(v)
		return err
	})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.model == "" {
		fs.Usage()
		return nil, errors.New("-model is required")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.vae != "tiny" && o.vae != "large" {
		return nil, fmt.Errorf("-vae %q: want tiny or large", o.vae)
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		return nil, fmt.Errorf("-log %q: want json or text", o.logFormat)
	}
	return o, nil
}

func run() error {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	var handler slog.Handler
	switch o.logFormat {
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, nil)
	case "text":
		handler = slog.NewTextHandler(os.Stderr, nil)
	}
	logger := slog.New(handler)

	var control imgserver.ControlFunc
	if o.controlnet != "" {
		control = imgserver.PipelineControl
	}
	srv, err := imgserver.New(imgserver.Config{
		Workers: o.workers, QueueSize: o.queue, Timeout: o.timeout, MaxBodyBytes: o.maxBody,
		MaxSide: o.maxSide, MaxPromptRunes: o.maxPrompt, WarmSize: o.warmSize,
		MaxSteps: o.maxSteps, Model: o.model, Control: control, Logger: logger,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Listen first, so that /healthz answers (503) while the model loads.
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/")

	type loadResult struct {
		p   *sdxs.Pipeline
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		start := time.Now()
		p, gen, err := load(ctx, o, logger)
		if err != nil {
			loaded <- loadResult{err: err}
			return
		}
		logger.Info("model loaded", "model", o.model, "controlnet", o.controlnet, "loras", len(o.loras), "precision", o.precision.String(), "seconds", time.Since(start).Seconds())
		loaded <- loadResult{p, srv.Start(ctx, gen)}
	}()

	var runErr error
	var pipe *sdxs.Pipeline
	select {
	case lr := <-loaded:
		pipe = lr.p
		if lr.err != nil && ctx.Err() == nil {
			runErr = lr.err
			break
		}
		if lr.err == nil {
			logger.Info("ready")
		}
		select {
		case <-ctx.Done():
		case err := <-serveErr:
			runErr = err
		}
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = err
	}

	// Shut down: fail the health check, stop accepting, finish the requests in flight.
	srv.Drain()
	if runErr == nil {
		logger.Info("shutting down: finishing requests in flight", "grace", o.grace.String())
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && runErr == nil {
		runErr = fmt.Errorf("shutdown: %w", err)
	}
	if pipe != nil {
		pipe.Close()
	}
	if runErr == nil {
		logger.Info("stopped")
	}
	return runErr
}
