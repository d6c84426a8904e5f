package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/examples/server/internal/imgserver"
	"github.com/sdxs-go/sdxs/weights/hub"
)

// load opens the model (a folder or a hub repository id, downloaded into the cache with its
// progress logged), with the ControlNet and the LoRA adapters of the flags, and returns the
// generator the server uses: the pipeline, with the adapters applied to every request.
func load(ctx context.Context, o *options, logger *slog.Logger) (*sdxs.Pipeline, imgserver.Generator, error) {
	opts := []sdxs.Option{sdxs.WithContext(ctx), sdxs.WithProgress(progressLogger(logger)), sdxs.WithPrecision(o.precision)}
	if o.controlnet != "" {
		opts = append(opts, sdxs.WithControlNet(o.controlnet))
	}
	if o.cacheBudget != 0 {
		opts = append(opts, sdxs.WithCacheBudget(o.cacheBudget))
	}
	if o.vae != "tiny" {
		opts = append(opts, sdxs.WithVAE(o.vae))
	}
	if o.variant != "" {
		opts = append(opts, sdxs.WithVariant(o.variant))
	}
	p, err := sdxs.Load(o.model, opts...)
	if err != nil {
		return nil, nil, err
	}
	if len(o.loras) == 0 {
		return p, p, nil
	}
	loras := make([]sdxs.LoRA, 0, len(o.loras))
	for _, spec := range o.loras {
		path, err := sdxs.Resolve(ctx, spec.path, sdxs.KindLoRA, opts...)
		if err == nil {
			var l sdxs.LoRA
			if l.Adapter, err = p.LoadLoRA(path); err == nil {
				l.Scale = spec.scale
				loras = append(loras, l)
				logger.Info("lora loaded", "lora", spec.path, "scale", spec.scale)
				continue
			}
		}
		p.Close()
		return nil, nil, fmt.Errorf("-lora %s: %w", spec.path, err)
	}
	return p, imgserver.WithLoRAs(p, loras), nil
}

// progressLogger logs hub downloads: each file when it starts and completes, and every ten
// seconds in between.
func progressLogger(logger *slog.Logger) func(hub.Progress) {
	var (
		mu   sync.Mutex
		last time.Time
		file string
	)
	return func(pr hub.Progress) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if pr.File == file && !pr.Done && now.Sub(last) < 10*time.Second {
			return
		}
		file, last = pr.File, now
		logger.Info("download", "repo", pr.Repo, "file", pr.File, "bytes", pr.Downloaded, "size", pr.Size,
			"file_index", pr.Index, "files", pr.Files, "done", pr.Done)
	}
}
