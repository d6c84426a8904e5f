package sdxs

import (
	"context"

	"github.com/sdxs-go/sdxs/weights/hub"
)

// Option configures Load. Options are applied in order; later ones win.
type Option func(*loadOptions)

// loadOptions collects what the options of Load say. Each feature adds its own fields here and
// its own With… function beside it.
type loadOptions struct {
	cacheBudget *int64 // WithCacheBudget; nil: DefaultCacheBudget
	controlNet  string // WithControlNet
	// loraSets is how many adapter sets keep their merged weights (WithLoRACache).
	loraSets int
	// loraUnfused applies adapters as unfused branches (WithLoRAUnfused).
	loraUnfused bool
	// Models named by a hub repository id (hub.go).
	ctx           context.Context
	hub           *hub.Client
	progress      func(hub.Progress)
	variant       string
	vae           string    // "tiny" or "large" (WithVAE)
	vaeTileBudget int64     // WithVAETileBudget (0: the default)
	precision     Precision // WithPrecision
	precisionSet  bool      // WithPrecision was given
	winoBudget    int64     // WithWinogradBudget (negative: the precision's default)
	winoBudgetSet bool      // WithWinogradBudget was given
}

func applyOptions(opts []Option) *loadOptions {
	o := &loadOptions{}
	for _, fn := range opts {
		if fn != nil {
			fn(o)
		}
	}
	return o
}
