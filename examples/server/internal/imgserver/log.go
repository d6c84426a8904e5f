package imgserver

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type ctxKey struct{}

// reqInfo collects what the handlers know about a request, for its one log line.
type reqInfo struct {
	status int
	attrs  []slog.Attr
}

func requestInfo(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(ctxKey{}).(*reqInfo)
	return i
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route names a path for metrics (a fixed set, so that odd paths do not make new series).
func route(path string) string {
	switch {
	case path == "/v1/images/generations", path == "/v1/images/edits", path == "/v1/info", path == "/healthz", path == "/metrics":
		return path
	case path == "/" || !strings.HasPrefix(path, "/v1/"):
		return "/"
	}
	return "other"
}

// logged writes one structured log line per request and counts it in the metrics.
func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &reqInfo{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
		status := info.status
		if status == 0 {
			status = sw.status
		}
		if status == 0 {
			status = http.StatusOK
		}
		d := time.Since(start)
		rt := route(r.URL.Path)
		// Probes and scrapes every few seconds would drown the log: only their failures are logged.
		if (rt != "/metrics" && rt != "/healthz") || status >= 400 {
			attrs := append([]slog.Attr{
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
				slog.Float64("seconds", d.Seconds()), slog.Int64("bytes", sw.bytes), slog.String("remote", r.RemoteAddr),
			}, info.attrs...)
			level := slog.LevelInfo
			if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusGatewayTimeout {
				level = slog.LevelError
			}
			s.cfg.Logger.LogAttrs(r.Context(), level, "request", attrs...)
		}
		// Counted after the log line is written, so that a request counted is a request logged.
		s.metrics.requests.WithLabelValues(rt, strconv.Itoa(status)).Inc()
		s.metrics.latency.WithLabelValues(rt).Observe(d.Seconds())
	})
}
