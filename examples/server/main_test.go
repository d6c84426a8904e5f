package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/internal/testmodel"
	"github.com/sdxs-go/sdxs/weights"
)

// logLines collects the server's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
	addr  chan string
}

func (l *logLines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rec map[string]any
		line := sc.Bytes()
		l.mu.Lock()
		l.raw.Write(line)
		l.raw.WriteByte('\n')
		if json.Unmarshal(line, &rec) == nil {
			l.lines = append(l.lines, rec)
			if rec["msg"] == "listening" {
				l.addr <- rec["addr"].(string)
			}
		}
		l.mu.Unlock()
	}
}

// index returns the position of the first line for which match holds, or -1.
func (l *logLines) index(match func(map[string]any) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, rec := range l.lines {
		if match(rec) {
			return i
		}
	}
	return -1
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

func getStatus(url string) int {
	res, err := http.Get(url)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

func metricLine(t *testing.T, base, want string) bool {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if line == want {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startBinary builds the command, starts it with args on a free loopback port, and waits until
// /healthz answers 200. It returns the base URL, the log and the process.
func startBinary(t *testing.T, args ...string) (string, *logLines, *exec.Cmd, <-chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logLines{addr: make(chan string, 1)}
	readDone := make(chan struct{})
	go func() { logs.read(stderr); close(readDone) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var addr string
	select {
	case addr = <-logs.addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line:\n%s", logs)
	}
	base := "http://" + addr
	waitFor(t, "/healthz 200", func() bool { return getStatus(base+"/healthz") == http.StatusOK })
	return base, logs, cmd, readDone
}

// TestSIGTERMFinishesRequestsInFlight builds the command, starts it on the tiny model, sends a
// running and a queued request, sends SIGTERM, and checks that both requests are answered in
// full, that no new connection is accepted, and that the process exits 0.
func TestSIGTERMFinishesRequestsInFlight(t *testing.T) {
	model := filepath.Join(t.TempDir(), "model")
	if err := testmodel.WriteTiny(model, weights.F32); err != nil {
		t.Fatal(err)
	}
	base, logs, cmd, readDone := startBinary(t, "-model", model, "-workers", "1", "-queue", "4", "-warm-size", "64")
	addr := strings.TrimPrefix(base, "http://")
	exited := make(chan error, 1)

	type answer struct {
		status int
		n      int
		err    error
	}
	send := func(seed, n int) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			body := fmt.Sprintf(`{"prompt": "shutdown", "size": "1024x1024", "n": %d, "seed": %d}`, n, seed)
			res, err := http.Post(base+"/v1/images/generations", "application/json", strings.NewReader(body))
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer res.Body.Close()
			var r struct {
				Data []struct {
					B64JSON string `json:"b64_json"`
				} `json:"data"`
			}
			err = json.NewDecoder(res.Body).Decode(&r)
			ch <- answer{status: res.StatusCode, n: len(r.Data), err: err}
		}()
		return ch
	}
	running := send(1, 4)
	waitFor(t, "a busy worker", func() bool { return metricLine(t, base, "sdxs_busy_workers 1") })
	queued := send(100, 2)
	waitFor(t, "a queued request", func() bool { return metricLine(t, base, "sdxs_queue_depth 1") })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the shutdown log line", func() bool {
		return logs.index(func(r map[string]any) bool { return strings.HasPrefix(fmt.Sprint(r["msg"]), "shutting down") }) >= 0
	})
	// New connections are refused while the requests in flight finish. The log line comes just
	// before the listener closes, so allow the server a moment to close it.
	refused := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
	}
	if !refused {
		t.Error("new connections were still accepted 5 s after SIGTERM")
	}
	for name, ch := range map[string]<-chan answer{"running": running, "queued": queued} {
		a := <-ch
		want := map[string]int{"running": 4, "queued": 2}[name]
		if a.err != nil || a.status != http.StatusOK || a.n != want {
			t.Errorf("%s request: status %d, %d pictures, error %v; want 200 with %d", name, a.status, a.n, a.err, want)
		}
	}
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v, want status 0\n%s", err, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not exit after SIGTERM\n%s", logs)
	}
	<-readDone
	// The queued request finished after the shutdown began: it was in flight, not done early.
	shutdown := logs.index(func(r map[string]any) bool { return strings.HasPrefix(fmt.Sprint(r["msg"]), "shutting down") })
	queuedDone := logs.index(func(r map[string]any) bool { return r["msg"] == "request" && r["seed"] == 100.0 })
	if queuedDone < shutdown {
		t.Errorf("the queued request's log line (%d) comes before the shutdown's (%d)\n%s", queuedDone, shutdown, logs)
	}
	if logs.index(func(r map[string]any) bool { return r["msg"] == "stopped" }) < 0 {
		t.Errorf("no stopped line\n%s", logs)
	}
}

// TestControlNetAndLoRAFlags starts the command with the oracle's model, ControlNet and LoRA:
// /v1/info reports the ControlNet, a request with a control image is answered, and the log
// names the adapter.
func TestControlNetAndLoRAFlags(t *testing.T) {
	tiny := oracle.Path(t, "sdxs-dreamshaper-tiny")
	base, logs, _, _ := startBinary(t, "-model", filepath.Join(tiny, "model"), "-controlnet", filepath.Join(tiny, "controlnet"),
		"-lora", filepath.Join(tiny, "lora", "peft")+":0.5", "-vae", "large", "-warm-size", "64")
	res, err := http.Get(base + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ControlNet bool `json:"controlnet"`
	}
	json.NewDecoder(res.Body).Decode(&info)
	res.Body.Close()
	if !info.ControlNet {
		t.Error("/v1/info: no ControlNet")
	}
	control, err := os.ReadFile(filepath.Join(tiny, "case5_control.png"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"prompt": "a house by the lake", "size": "128x128", "seed": 3, "control_image": "data:image/png;base64,%s"}`, base64.StdEncoding.EncodeToString(control))
	res, err = http.Post(base+"/v1/images/generations", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	var answer struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil || len(answer.Data) != 1 {
		t.Fatalf("answer %.200s: %v", raw, err)
	}
	pngData, err := base64.StdEncoding.DecodeString(answer.Data[0].B64JSON)
	if err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatal(err)
	}
	// The same picture from a pipeline loaded in this process with what the flags say.
	p, err := sdxs.Load(filepath.Join(tiny, "model"), sdxs.WithControlNet(filepath.Join(tiny, "controlnet")), sdxs.WithVAE("large"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, err := p.LoadLoRA(filepath.Join(tiny, "lora", "peft"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := imageproc.Decode(bytes.NewReader(control))
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Generate(context.Background(), sdxs.Request{Prompt: "a house by the lake", Seed: 3, Width: 128, Height: 128,
		Control: img, LoRAs: []sdxs.LoRA{{Adapter: a, Scale: 0.5}}})
	if err != nil {
		t.Fatal(err)
	}
	gotRGBA := image.NewRGBA(got.Bounds())
	draw.Draw(gotRGBA, got.Bounds(), got, got.Bounds().Min, draw.Src)
	if !bytes.Equal(gotRGBA.Pix, want.Image.Pix) {
		t.Error("the server's picture differs from the pipeline's with the same model, ControlNet, LoRA, VAE and request")
	}
	if logs.index(func(r map[string]any) bool { return r["msg"] == "lora loaded" && r["scale"] == 0.5 }) < 0 {
		t.Errorf("no lora loaded line\n%s", logs)
	}
	// The request's log line follows its answer.
	waitFor(t, "the request's log line", func() bool {
		return logs.index(func(r map[string]any) bool {
			return r["msg"] == "request" && r["control"] == "png" && r["status"] == 200.0
		}) >= 0
	})
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"-model", "m", "-addr", ":0", "-lora", "a:0.5", "-lora", "org/name@v2", "-lora", `C:\x`, "-cache-budget", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	want := []loraSpec{{"a", 0.5}, {"org/name@v2", 1}, {`C:\x`, 1}}
	if o.model != "m" || o.addr != ":0" || o.workers != 1 || o.queue != 8 || o.cacheBudget != 1000 || fmt.Sprint(o.loras) != fmt.Sprint(want) {
		t.Errorf("parsed %+v", o)
	}
	if o.precision != sdxs.PrecisionFP32 {
		t.Errorf("default precision %v", o.precision)
	}
	if o, err := parseFlags([]string{"-model", "m", "-precision", "bf16"}); err != nil || o.precision != sdxs.PrecisionBF16 {
		t.Errorf("-precision bf16: %v, %v", o, err)
	}
	for _, bad := range [][]string{{}, {"-model", "m", "-precision", "fp16"}, {"-model", "m", "extra"}, {"-model", "m", "-log", "xml"}, {"-model", "m", "-workers", "x"},
		{"-model", "m", "-vae", "medium"}, {"-model", "m", "-lora", "a:0"}, {"-model", "m", "-lora", "a:NaN"}, {"-model", "m", "-lora", ""}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDeployManifests parses deploy/k8s.yaml and the Dockerfile: the kinds are there, the
// probes ask /healthz on the container's port, the Service and the autoscaler point at the
// Deployment, and every argument given to the server is one of its flags.
func TestDeployManifests(t *testing.T) {
	data, err := os.ReadFile("../../deploy/k8s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []struct {
						Args  []string `yaml:"args"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						ReadinessProbe *probe `yaml:"readinessProbe"`
						LivenessProbe  *probe `yaml:"livenessProbe"`
						StartupProbe   *probe `yaml:"startupProbe"`
						Env            []struct {
							Name, Value string
						} `yaml:"env"`
						VolumeMounts []struct {
							Name      string `yaml:"name"`
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
			// Service
			Ports []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
			// HorizontalPodAutoscaler
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			MaxReplicas int `yaml:"maxReplicas"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	docs := map[string]doc{}
	var raw []map[string]any
	for {
		var d doc
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/k8s.yaml: %v", err)
		}
		if err := node.Decode(&d); err != nil {
			t.Fatalf("deploy/k8s.yaml: %v", err)
		}
		var m map[string]any
		node.Decode(&m)
		raw = append(raw, m)
		docs[d.Kind] = d
	}
	dep, ok := docs["Deployment"]
	if !ok || docs["Service"].Kind == "" || docs["HorizontalPodAutoscaler"].Kind == "" {
		t.Fatalf("deploy/k8s.yaml has %d documents; want a Deployment, a Service and a HorizontalPodAutoscaler", len(docs))
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pods' labels", k, v)
		}
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("container ports %+v, want http 8080", c.Ports)
	}
	for name, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != "http" {
			t.Errorf("%s probe %+v, want GET /healthz on port http", name, p)
		}
	}
	o, err := parseFlags(c.Args)
	if err != nil {
		t.Fatalf("the Deployment's args %q: %v", c.Args, err)
	}
	if o.addr != "0.0.0.0:8080" {
		t.Errorf("the server listens on %s, want 0.0.0.0:8080 (the container port)", o.addr)
	}
	hf := ""
	for _, e := range c.Env {
		if e.Name == "HF_HOME" {
			hf = e.Value
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (hf != "" && strings.HasPrefix(hf, m.MountPath))
	}
	if !mounted {
		t.Errorf("HF_HOME %q is not on a mounted volume", hf)
	}
	svc := raw[1]["spec"].(map[string]any)
	for k, v := range svc["selector"].(map[string]any) {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Service's selector %s=%v does not match the pods' labels", k, v)
		}
	}
	if p := docs["Service"].Spec.Ports; len(p) != 1 || p[0].TargetPort != "http" {
		t.Errorf("Service ports %+v, want targetPort http", p)
	}
	hpa := docs["HorizontalPodAutoscaler"].Spec
	if hpa.ScaleTargetRef.Kind != "Deployment" || hpa.ScaleTargetRef.Name != dep.Metadata.Name || hpa.MinReplicas < 1 || hpa.MaxReplicas < hpa.MinReplicas {
		t.Errorf("HPA %+v does not scale the Deployment %s", hpa, dep.Metadata.Name)
	}

	// The Dockerfile: a static build of this command on distroless, its arguments our flags.
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(df), "\n") {
		for _, kw := range []string{"ENTRYPOINT ", "CMD "} {
			if rest, ok := strings.CutPrefix(line, kw); ok {
				var a []string
				if err := json.Unmarshal([]byte(rest), &a); err != nil {
					t.Fatalf("Dockerfile %s: %v", line, err)
				}
				args = append(args, a...)
			}
		}
	}
	if len(args) < 2 || args[0] != "/sdxs-server" {
		t.Fatalf("Dockerfile runs %q", args)
	}
	if _, err := parseFlags(args[1:]); err != nil {
		t.Errorf("Dockerfile arguments %q: %v", args[1:], err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./examples/server", "gcr.io/distroless/static", "HF_HOME=/cache", "VOLUME"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
}
