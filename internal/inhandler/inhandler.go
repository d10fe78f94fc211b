// Package inhandler marks the context of a consumer handler call, so that
// other packages can tell one without importing the consumer.
package inhandler

// Key is the context key whose value is non-nil in a consumer handler's
// context (and in every context derived from it).
type Key struct{}
