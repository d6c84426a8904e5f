// Command loadtest measures the image server's throughput and latency at several numbers of
// concurrent clients, over loopback only, bounded in requests and in time per level.
//
//	go run ./examples/server/loadtest -model sdxs-dreamshaper -clients 1,2,8 -requests 24 -duration 2m
//
// With -model it starts the server in this process on 127.0.0.1 (the same handler as
// examples/server); with -url it loads a server already running on this machine (a loopback
// address only). It prints a Markdown table: per level, the requests answered, the pictures per
// second, and the latency percentiles of the successful requests.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/examples/server/internal/imgserver"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	model, target, size, prompt string
	clients                     []int
	requests, n, workers        int
	duration                    time.Duration
}

// level is the measurement at one number of clients.
type level struct {
	Clients    int
	OK         int
	Rejected   int
	Failed     int
	Wall       time.Duration
	Throughput float64
	P50        time.Duration
	P90        time.Duration
	P99        time.Duration
	Max        time.Duration
}

func parse(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&c.model, "model", "", "model folder: serve it in this process on 127.0.0.1")
	fs.StringVar(&c.target, "url", "", "base URL of a server already running on a loopback address (instead of -model)")
	clients := fs.String("clients", "1,2,8", "numbers of concurrent clients, one level each")
	fs.IntVar(&c.requests, "requests", 24, "most requests per level")
	fs.DurationVar(&c.duration, "duration", 2*time.Minute, "most time per level (no new request after it)")
	fs.StringVar(&c.size, "size", "512x512", "picture size WIDTHxHEIGHT")
	fs.IntVar(&c.n, "n", 1, "pictures per request")
	fs.StringVar(&c.prompt, "prompt", "a lighthouse at dusk, oil painting", "prompt")
	fs.IntVar(&c.workers, "workers", 1, "workers of the in-process server")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if (c.model == "") == (c.target == "") {
		return nil, errors.New("give either -model or -url")
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("-clients %q: want numbers from 1 to 64", *clients)
		}
		c.clients = append(c.clients, n)
	}
	if c.requests < 1 || c.requests > 10000 || c.duration <= 0 || c.duration > time.Hour {
		return nil, errors.New("-requests must be 1…10000 and -duration at most an hour")
	}
	return c, nil
}

// checkLoopback refuses any target that is not this machine.
func checkLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	host := u.Hostname()
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Errorf("%s: %w", host, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address: this load test only runs against this machine", host)
		}
	}
	return nil
}

func run(args []string, out io.Writer) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	target := c.target
	if c.model != "" {
		p, err := sdxs.Load(c.model)
		if err != nil {
			return err
		}
		defer p.Close()
		maxClients := slices.Max(c.clients)
		srv, err := imgserver.New(imgserver.Config{
			Workers: c.workers, QueueSize: maxClients, MaxSide: sdxs.MaxSize, Timeout: time.Hour,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			return err
		}
		if err := srv.Start(context.Background(), p); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: srv.Handler()}
		go hs.Serve(ln)
		defer hs.Close()
		target = "http://" + ln.Addr().String()
	}
	if err := checkLoopback(target); err != nil {
		return err
	}
	target = strings.TrimSuffix(target, "/")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// One request first, so that every level finds the graphs of this size built.
	if _, err := request(client, target, c, 0); err != nil {
		return fmt.Errorf("warm-up request: %w", err)
	}
	fmt.Fprintf(out, "load test of %s: %s, n=%d, at most %d requests or %s per level\n", target, c.size, c.n, c.requests, c.duration)
	fmt.Fprintf(out, "%s/%s, %d CPUs (GOMAXPROCS %d), %s, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), cpuModel(), time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintln(out, "| clients | requests ok | 429 | failed | pictures/s | p50 | p90 | p99 | max |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	var levels []level
	for _, n := range c.clients {
		l := measure(client, target, c, n)
		levels = append(levels, l)
		fmt.Fprintf(out, "| %d | %d | %d | %d | %.2f | %s | %s | %s | %s |\n", l.Clients, l.OK, l.Rejected, l.Failed, l.Throughput,
			sec(l.P50), sec(l.P90), sec(l.P99), sec(l.Max))
	}
	for _, l := range levels {
		if l.OK == 0 {
			return fmt.Errorf("%d clients: no request succeeded", l.Clients)
		}
	}
	return nil
}

func sec(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// measure runs clients concurrent clients until c.requests requests are sent or c.duration
// has passed.
func measure(client *http.Client, target string, c *config, clients int) level {
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		l         = level{Clients: clients}
		wg        sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(c.duration)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				k := next.Add(1)
				if k > int64(c.requests) {
					return
				}
				t0 := time.Now()
				status, err := request(client, target, c, uint64(k))
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err == nil:
					l.OK++
					latencies = append(latencies, d)
				case status == http.StatusTooManyRequests:
					l.Rejected++
				default:
					l.Failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	l.Wall = time.Since(start)
	l.Throughput = float64(l.OK*c.n) / l.Wall.Seconds()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p*float64(len(latencies))+0.999999) - 1 // nearest rank
		return latencies[max(0, min(i, len(latencies)-1))]
	}
	l.P50, l.P90, l.P99, l.Max = pct(0.5), pct(0.9), pct(0.99), pct(1)
	return l
}

// request sends one generation and checks the answer holds c.n pictures.
func request(client *http.Client, target string, c *config, seed uint64) (int, error) {
	body := fmt.Sprintf(`{"prompt": %q, "size": %q, "n": %d, "seed": %d}`, c.prompt, c.size, c.n, seed)
	res, err := client.Post(target+"/v1/images/generations", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var r imgserver.Response
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return res.StatusCode, fmt.Errorf("status %d: %w", res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK || len(r.Data) != c.n {
		return res.StatusCode, fmt.Errorf("status %d with %d pictures", res.StatusCode, len(r.Data))
	}
	return res.StatusCode, nil
}

// cpuModel reads the processor's name on Linux.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
