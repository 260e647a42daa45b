// Package e2e holds labgate's multi-host end-to-end tests: the labgate binary,
// built once per run, as `labgate relay` and `labgate serve` on hosts of their
// own (network namespaces made by internal/testnet), between a client host
// and a backend host. It has no code outside its tests.
//
// The tests need root (for the namespaces); without it they skip, and under
// CI=true they fail.
package e2e
