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
	"net"
	"net/http"
	"os"
	"os/signal"
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

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func run() error {
	var (
		model      = flag.String("model", "", "diffusers model folder or Hugging Face repository id (required)")
		controlnet = flag.String("controlnet", "", "ControlNet folder or repository id: enables control images and the sketch canvas")
		addr       = flag.String("addr", "127.0.0.1:8080", "address to listen on (port 0: any free port, logged)")
		workers    = flag.Int("workers", 1, "pictures made at once (one already uses every core)")
		queue      = flag.Int("queue", 8, "requests that may wait for a worker; more get 429")
		timeout    = flag.Duration("timeout", 2*time.Minute, "deadline of one request, queueing included")
		maxBody    = flag.Int64("max-body", 8<<20, "largest request body in bytes")
		maxSide    = flag.Int("max-side", 1024, "largest width or height")
		maxPrompt  = flag.Int("max-prompt", 1000, "longest prompt in characters")
		warmSize   = flag.Int("warm-size", 0, "side of the warm-up picture (default: the model's size)")
		grace      = flag.Duration("shutdown-timeout", 5*time.Minute, "how long SIGTERM waits for requests in flight")
		logFormat  = flag.String("log", "json", "log format: json or text")
		loras      stringList
	)
	flag.Var(&loras, "lora", "LoRA adapter `DIR[:SCALE]` (repeatable)")
	flag.Parse()
	if *model == "" {
		flag.Usage()
		return errors.New("-model is required")
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	var handler slog.Handler
	switch *logFormat {
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, nil)
	case "text":
		handler = slog.NewTextHandler(os.Stderr, nil)
	default:
		return fmt.Errorf("-log %q: want json or text", *logFormat)
	}
	logger := slog.New(handler)

	opts, control, err := featureOptions(*controlnet, loras)
	if err != nil {
		return err
	}
	srv, err := imgserver.New(imgserver.Config{
		Workers: *workers, QueueSize: *queue, Timeout: *timeout, MaxBodyBytes: *maxBody,
		MaxSide: *maxSide, MaxPromptRunes: *maxPrompt, WarmSize: *warmSize,
		Model: *model, Control: control, Logger: logger,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Listen first, so that /healthz answers (503) while the model loads.
	ln, err := net.Listen("tcp", *addr)
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
		p, err := sdxs.Load(*model, opts...)
		if err != nil {
			loaded <- loadResult{err: err}
			return
		}
		logger.Info("model loaded", "model", *model, "seconds", time.Since(start).Seconds())
		loaded <- loadResult{p, srv.Start(ctx, p)}
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
		logger.Info("shutting down: finishing requests in flight", "grace", grace.String())
	}
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
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
