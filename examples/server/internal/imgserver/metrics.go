package imgserver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one server's Prometheus collectors, on a registry of its own (no global state).
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	stage      *prometheus.HistogramVec
	queueDepth prometheus.Gauge
	busy       prometheus.Gauge
	images     prometheus.Counter
}

// stageBuckets span a few milliseconds (a tiny model, a text encoder) to minutes (a large
// picture on a slow machine).
var stageBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sdxs_http_requests_total",
			Help: "HTTP requests by route and status code (499: the client went away).",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sdxs_http_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer, by route.",
			Buckets: stageBuckets,
		}, []string{"route"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sdxs_stage_duration_seconds",
			Help: "Time per stage of an image request: queue (waiting for a worker), generate (all n pictures), " +
				"the pipeline's stages per picture (tokenize, text_encoder, noise, unet, vae_decoder) and encode (PNG and base64).",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdxs_queue_depth",
			Help: "Image requests waiting for a worker.",
		}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sdxs_busy_workers",
			Help: "Workers generating pictures now.",
		}),
		images: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sdxs_images_generated_total",
			Help: "Pictures generated.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.stage, m.queueDepth, m.busy, m.images,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
