// Package imgserver is the HTTP side of examples/server: an OpenAI-compatible
// POST /v1/images/generations in front of an sdxs pipeline, with a bounded queue and bounded
// concurrency, Prometheus metrics, a health check and a live web page. Tests start it on a
// loopback listener; the command wraps it with flags and signal handling.
package imgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sdxs-go/sdxs"
)

// Generator makes pictures: *sdxs.Pipeline satisfies it.
type Generator interface {
	Generate(ctx context.Context, req sdxs.Request) (*sdxs.Result, error)
	DefaultSize() int
}

// batchGenerator is implemented by pipelines that make n pictures with consecutive seeds in one
// call (sdxs.Pipeline.GenerateBatch); the server uses it when present.
type batchGenerator interface {
	GenerateBatch(ctx context.Context, req sdxs.Request, n int) ([]*sdxs.Result, error)
}

// encoderWarmer is implemented by pipelines that can build their VAE encoder ahead of the first
// image to image request (sdxs.Pipeline.WarmEncoder).
type encoderWarmer interface {
	WarmEncoder(ctx context.Context, width, height int) error
}

// ControlFunc puts a control image and its scale (0: the library's default) into a request. It
// is set when the pipeline has a ControlNet; nil means control images are refused.
type ControlFunc func(req *sdxs.Request, control image.Image, scale float64)

// Config sets the server's limits. Zero values take the defaults given.
type Config struct {
	// Workers is how many pictures are made at once (default 1: one generation already uses
	// every core).
	Workers int
	// QueueSize is how many requests may wait for a worker (default 8); more get 429.
	QueueSize int
	// MaxBodyBytes bounds a request body (default 8 MiB).
	MaxBodyBytes int64
	// Timeout is the deadline of one request, queueing included (default 2 minutes).
	Timeout time.Duration
	// MaxPromptRunes bounds the prompt's length in characters (default 1000, as OpenAI's
	// dall-e-2).
	MaxPromptRunes int
	// MinSide and MaxSide bound the width and height (defaults sdxs.MinSize and 1024).
	MinSide, MaxSide int
	// MaxN bounds n (default 4).
	MaxN int
	// MaxControlSide bounds each side of an uploaded picture, a control image or an edit's
	// init picture (default 4096); checked before the pixels are decoded.
	MaxControlSide int
	// MaxSteps bounds an edit's steps (default 50).
	MaxSteps int
	// WarmSize is the size of the warm-up picture (default: the model's).
	WarmSize int
	// Model names the model in /v1/info and the logs.
	Model string
	// Control, when set, accepts control images (the pipeline has a ControlNet).
	Control ControlFunc
	// Logger receives one line per request (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.MaxPromptRunes == 0 {
		c.MaxPromptRunes = 1000
	}
	if c.MinSide == 0 {
		c.MinSide = sdxs.MinSize
	}
	if c.MaxSide == 0 {
		c.MaxSide = 1024
	}
	if c.MaxN == 0 {
		c.MaxN = 4
	}
	if c.MaxControlSide == 0 {
		c.MaxControlSide = 4096
	}
	if c.MaxSteps == 0 {
		c.MaxSteps = 50
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.Workers < 0 || c.QueueSize < 0:
		return fmt.Errorf("imgserver: workers %d and queue size %d must not be negative", c.Workers, c.QueueSize)
	case c.MaxBodyBytes < 0 || c.Timeout < 0 || c.MaxPromptRunes < 0 || c.MaxN < 0 || c.MaxControlSide < 0 || c.MaxSteps < 0:
		return errors.New("imgserver: limits must not be negative")
	case c.MinSide < sdxs.MinSize || c.MaxSide > sdxs.MaxSize || c.MinSide > c.MaxSide || c.MinSide%8 != 0 || c.MaxSide%8 != 0:
		return fmt.Errorf("imgserver: sides from %d to %d: must be multiples of 8 within %d…%d", c.MinSide, c.MaxSide, sdxs.MinSize, sdxs.MaxSize)
	}
	return nil
}

// Server serves pictures from one Generator. Create it with New, attach the model with Start.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	metrics *metrics

	mu          sync.RWMutex
	gen         Generator
	defaultSize int

	ready    atomic.Bool
	draining atomic.Bool

	admit   chan struct{} // holds a token per admitted request (waiting or running)
	workers chan struct{} // holds a token per running request
	waiting atomic.Int64

	avgNanos atomic.Int64 // moving average of one request's generation time, for Retry-After
}

// New makes a server with the given limits. It answers /healthz with 503 and image requests
// with 503 until Start has attached a model.
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		mux:     http.NewServeMux(),
		metrics: newMetrics(),
		admit:   make(chan struct{}, cfg.Workers+cfg.QueueSize),
		workers: make(chan struct{}, cfg.Workers),
	}
	s.metrics.queueDepth.Set(0)
	s.routes()
	return s, nil
}

// Start attaches the model, makes a warm-up picture (so that the first request does not pay
// for building the graphs; with Config.Control, a second one with a blank control image), builds
// the VAE encoder of /v1/images/edits when gen has WarmEncoder (sdxs.Pipeline does), and marks
// the server ready. Requests may arrive meanwhile: image
// requests then get 503 with Retry-After, /healthz 503.
func (s *Server) Start(ctx context.Context, gen Generator) error {
	size := s.cfg.WarmSize
	if size == 0 {
		size = gen.DefaultSize()
	}
	start := time.Now()
	if _, err := gen.Generate(ctx, sdxs.Request{Prompt: "warm-up", Seed: 0, Width: size, Height: size}); err != nil {
		return fmt.Errorf("imgserver: warm-up picture: %w", err)
	}
	if s.cfg.Control != nil {
		// And the ControlNet's graphs, with a blank sketch.
		blank := image.NewGray(image.Rect(0, 0, size, size))
		for i := range blank.Pix {
			blank.Pix[i] = 255
		}
		req := sdxs.Request{Prompt: "warm-up", Seed: 0, Width: size, Height: size}
		s.cfg.Control(&req, blank, 0)
		if _, err := gen.Generate(ctx, req); err != nil {
			return fmt.Errorf("imgserver: warm-up picture with a control image: %w", err)
		}
	}
	if ew, ok := gen.(encoderWarmer); ok {
		// The VAE encoder of /v1/images/edits; without one, edits fail with 500 and say why.
		if err := ew.WarmEncoder(ctx, size, size); err != nil {
			s.cfg.Logger.Warn("image to image will not work", "error", err)
		}
	}
	s.cfg.Logger.Info("warm-up picture made", "size", fmt.Sprintf("%dx%d", size, size), "seconds", time.Since(start).Seconds())
	s.avgNanos.Store(int64(time.Since(start)))
	s.mu.Lock()
	s.gen = gen
	s.defaultSize = gen.DefaultSize()
	if s.defaultSize > s.cfg.MaxSide {
		s.defaultSize = s.cfg.MaxSide
	}
	s.mu.Unlock()
	s.ready.Store(true)
	return nil
}

// Drain marks the server as shutting down: /healthz answers 503 so that load balancers stop
// sending requests, while requests already in flight finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Ready reports whether Start has finished and Drain has not been called.
func (s *Server) Ready() bool { return s.ready.Load() && !s.draining.Load() }

// Registry returns the server's own Prometheus registry (served at /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Handler returns the HTTP handler: every route, with one log line per request.
func (s *Server) Handler() http.Handler { return s.logged(s.mux) }

func (s *Server) routes() {
	s.mux.HandleFunc("/v1/images/generations", s.handleGenerations)
	s.mux.HandleFunc("/v1/images/edits", s.handleEdits)
	s.mux.HandleFunc("/v1/info", s.handleInfo)
	s.mux.HandleFunc("/healthz", s.handleHealth)
	s.mux.Handle("/metrics", s.metrics.handler())
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{status: http.StatusNotFound, typ: "invalid_request_error",
			message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)}, "")
	})
	s.mux.Handle("/", s.staticHandler())
}

// generator returns the attached model, or nil before Start.
func (s *Server) generator() (Generator, int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen, s.defaultSize
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case s.draining.Load():
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	case !s.ready.Load():
		http.Error(w, "loading the model", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

// Info is what GET /v1/info reports, for the web page and clients.
type Info struct {
	Model       string `json:"model"`
	Ready       bool   `json:"ready"`
	DefaultSize int    `json:"default_size"`
	MinSide     int    `json:"min_side"`
	MaxSide     int    `json:"max_side"`
	MaxN        int    `json:"max_n"`
	MaxPrompt   int    `json:"max_prompt"`
	ControlNet  bool   `json:"controlnet"`
	// ControlScale is the scale of a control image sent without one.
	ControlScale float64 `json:"control_scale,omitempty"`
	// EditStrength and EditSteps are the defaults of /v1/images/edits; MaxSteps bounds steps.
	EditStrength float64 `json:"edit_strength"`
	EditSteps    int     `json:"edit_steps"`
	MaxSteps     int     `json:"max_steps"`
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", message: "use GET"}, "GET, HEAD")
		return
	}
	_, def := s.generator()
	info := Info{
		Model: s.cfg.Model, Ready: s.Ready(), DefaultSize: def, MinSide: s.cfg.MinSide, MaxSide: s.cfg.MaxSide,
		MaxN: s.cfg.MaxN, MaxPrompt: s.cfg.MaxPromptRunes, ControlNet: s.cfg.Control != nil,
		EditStrength: DefaultEditStrength, EditSteps: DefaultEditSteps, MaxSteps: s.cfg.MaxSteps,
	}
	if info.ControlNet {
		info.ControlScale = sdxs.DefaultControlScale
	}
	writeJSON(w, http.StatusOK, info)
}

// ImageData is one picture of a response.
type ImageData struct {
	B64JSON string `json:"b64_json"`
	// Seed is the seed that made the picture (an extension of OpenAI's API).
	Seed uint64 `json:"seed"`
}

// Response is the body of a successful POST /v1/images/generations or /v1/images/edits.
type Response struct {
	Created int64       `json:"created"`
	Data    []ImageData `json:"data"`
	// Timings, an extension, gives the seconds spent waiting in the queue and generating.
	Timings *Timings `json:"timings,omitempty"`
}

// Timings of one request, in seconds.
type Timings struct {
	Queue    float64 `json:"queue"`
	Generate float64 `json:"generate"`
	Encode   float64 `json:"encode"`
}

func (s *Server) handleGenerations(w http.ResponseWriter, r *http.Request) {
	s.handleImages(w, r, false)
}

// handleEdits serves POST /v1/images/edits: image to image from the multipart file field image.
func (s *Server) handleEdits(w http.ResponseWriter, r *http.Request) { s.handleImages(w, r, true) }

// handleImages serves both image routes: text to image, or image to image when edit is set.
func (s *Server) handleImages(w http.ResponseWriter, r *http.Request, edit bool) {
	info := requestInfo(r.Context())
	if r.Method != http.MethodPost {
		s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error", message: "use POST"}, "POST")
		return
	}
	gen, def := s.generator()
	if gen == nil || s.draining.Load() {
		w.Header().Set("Retry-After", "5")
		msg := "the model is loading; try again shortly"
		if s.draining.Load() {
			msg = "the server is shutting down"
		}
		s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, typ: "server_error", message: msg}, "")
		return
	}
	req, err := s.parseRequest(w, r, def, edit)
	if err != nil {
		s.writeError(w, r, err, "")
		return
	}
	if !req.seedSet {
		req.seed = randomSeed()
	}
	if info != nil {
		info.attrs = append(info.attrs, slog.Int("n", req.n), slog.String("size", fmt.Sprintf("%dx%d", req.width, req.height)),
			slog.Uint64("seed", req.seed), slog.Int("prompt_chars", len([]rune(req.prompt))))
		if req.control != nil {
			info.attrs = append(info.attrs, slog.String("control", req.controlFormat))
		}
		if req.init != nil {
			info.attrs = append(info.attrs, slog.String("init", req.initFormat),
				slog.Float64("strength", req.strength), slog.Int("steps", req.steps))
		}
	}

	// Admission: a place in the queue, or 429.
	select {
	case s.admit <- struct{}{}:
	default:
		w.Header().Set("Retry-After", strconv.Itoa(s.retryAfter()))
		s.writeError(w, r, &apiError{status: http.StatusTooManyRequests, typ: "rate_limit_error", code: "queue_full",
			message: fmt.Sprintf("the server is busy (%d requests running or waiting); retry later", cap(s.admit))}, "")
		return
	}
	defer func() { <-s.admit }()

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()

	queued := time.Now()
	s.metrics.queueDepth.Set(float64(s.waiting.Add(1)))
	select {
	case s.workers <- struct{}{}:
		s.metrics.queueDepth.Set(float64(s.waiting.Add(-1)))
	case <-ctx.Done():
		s.metrics.queueDepth.Set(float64(s.waiting.Add(-1)))
		s.writeError(w, r, s.ctxError(r, ctx, "waiting in the queue"), "")
		return
	}
	queueWait := time.Since(queued)
	s.metrics.stage.WithLabelValues("queue").Observe(queueWait.Seconds())
	s.metrics.busy.Inc()
	genStart := time.Now()
	results, err := s.generate(ctx, gen, req)
	genTime := time.Since(genStart)
	s.metrics.busy.Dec()
	<-s.workers
	if err != nil {
		if ctx.Err() != nil {
			s.writeError(w, r, s.ctxError(r, ctx, "generating"), "")
			return
		}
		s.writeError(w, r, &apiError{status: http.StatusInternalServerError, typ: "server_error", message: "generation failed: " + err.Error()}, "")
		return
	}
	s.observeAverage(genTime / time.Duration(req.n))
	s.metrics.stage.WithLabelValues("generate").Observe(genTime.Seconds())
	s.metrics.images.Add(float64(len(results)))

	encStart := time.Now()
	resp := Response{Created: time.Now().Unix(), Data: make([]ImageData, len(results))}
	var buf bytes.Buffer
	for i, res := range results {
		for st, d := range res.Timings {
			s.metrics.stage.WithLabelValues(string(st)).Observe(d.Seconds())
		}
		buf.Reset()
		if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, res.Image); err != nil {
			s.writeError(w, r, &apiError{status: http.StatusInternalServerError, typ: "server_error", message: "encoding the picture: " + err.Error()}, "")
			return
		}
		resp.Data[i] = ImageData{B64JSON: base64.StdEncoding.EncodeToString(buf.Bytes()), Seed: res.Seed}
		results[i] = nil // let the tensors go
	}
	encTime := time.Since(encStart)
	s.metrics.stage.WithLabelValues("encode").Observe(encTime.Seconds())
	resp.Timings = &Timings{Queue: queueWait.Seconds(), Generate: genTime.Seconds(), Encode: encTime.Seconds()}
	if info != nil {
		info.attrs = append(info.attrs, slog.Float64("queue_s", queueWait.Seconds()), slog.Float64("generate_s", genTime.Seconds()))
	}
	writeJSON(w, http.StatusOK, resp)
}

// generate makes req.n pictures with seeds seed, seed+1, …
func (s *Server) generate(ctx context.Context, gen Generator, req *genRequest) ([]*sdxs.Result, error) {
	base := sdxs.Request{Prompt: req.prompt, Seed: req.seed, Width: req.width, Height: req.height}
	if req.init != nil {
		base.Init, base.Strength, base.Steps = req.init, req.strength, req.steps
	}
	if req.control != nil {
		s.cfg.Control(&base, req.control, req.controlScale)
	}
	if bg, ok := gen.(batchGenerator); ok {
		return bg.GenerateBatch(ctx, base, req.n)
	}
	out := make([]*sdxs.Result, 0, req.n)
	for i := 0; i < req.n; i++ {
		r := base
		r.Seed = req.seed + uint64(i)
		res, err := gen.Generate(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// ctxError explains why a request's context ended: the client went away (logged as 499, nothing
// useful can be sent), or its deadline passed (504).
func (s *Server) ctxError(r *http.Request, ctx context.Context, during string) *apiError {
	if r.Context().Err() != nil {
		return &apiError{status: statusClientClosed, typ: "client_closed", message: "the client went away while " + during}
	}
	return &apiError{status: http.StatusGatewayTimeout, typ: "timeout_error",
		message: fmt.Sprintf("the request took longer than the server's limit of %s (while %s)", s.cfg.Timeout, during)}
}

// statusClientClosed is nginx's status for a request whose client went away; it is logged and
// counted, never sent.
const statusClientClosed = 499

// observeAverage folds one picture's generation time into the moving average.
func (s *Server) observeAverage(d time.Duration) {
	old := s.avgNanos.Load()
	if old == 0 {
		s.avgNanos.Store(int64(d))
		return
	}
	s.avgNanos.Store(old + (int64(d)-old)/8)
}

// retryAfter estimates, in whole seconds (at least 1), when a place in the queue frees up.
func (s *Server) retryAfter() int {
	avg := time.Duration(s.avgNanos.Load())
	d := avg * time.Duration(cap(s.admit)) / time.Duration(s.cfg.Workers)
	sec := int(math.Ceil(d.Seconds()))
	return max(1, min(sec, 3600))
}

// randomSeed draws a seed below 2^53, so that JavaScript clients read it exactly.
func randomSeed() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:]) & (1<<53 - 1)
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError answers with an OpenAI-style error body. allow, if set, is the Allow header of a 405.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, allow string) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, typ: "server_error", message: err.Error()}
	}
	if info := requestInfo(r.Context()); info != nil {
		info.status = ae.status
		info.attrs = append(info.attrs, slog.String("error", ae.message))
	}
	if ae.status == statusClientClosed {
		return
	}
	if allow != "" {
		w.Header().Set("Allow", allow)
	}
	body := errorBody{Error: errorDetail{Message: ae.message, Type: ae.typ}}
	if ae.param != "" {
		body.Error.Param = &ae.param
	}
	if ae.code != "" {
		body.Error.Code = &ae.code
	}
	writeJSON(w, ae.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"message":"encoding the response failed","type":"server_error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
