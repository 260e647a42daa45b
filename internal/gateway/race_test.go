//go:build race

package gateway

// raceEnabled: the race detector drops a quarter of sync.Pool puts and
// inflates allocations, so allocation budgets are not checked under it.
const raceEnabled = true
